"""The loader's identity check: one face detection per photo, used for the crop, the report and the embedding.

Before anything is captioned or paid, the report names the photos whose face does not match the others (a
friend in the set), photos with no face or several faces, and pairs that show the same face almost exactly
(beyond the perceptual-hash duplicate check). Embeddings are made from the prepared 1024 px photo and cached
under its sha256, so the score node's reference for the same set later embeds nothing.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import InputError
from ..identity import (Backend, EmbeddingCache, Face, FacePhoto, PhotoFace, check_one_person, detect_faces,
                        load_backend)
from ..identity.reference import face_of_one_person
from ..progress import Interrupted, Progress

log = logging.getLogger("likeness")


@dataclass
class LoaderIdentity:
    """What one loader run uses to find faces and, when `backend` is set, to embed and compare them."""
    backend: Backend | None
    cache: EmbeddingCache | None
    detector: bool = True            # find faces (face crop, or the check itself)
    note: str = ""                   # why the check did not run, for the report

    def faces(self, img: Image.Image) -> list[Face]:
        return detect_faces(img) if self.detector else []

    def chip(self, sha256: str, image: Image.Image, faces: Sequence[Face] | None) -> np.ndarray | None:
        """The chip of the prepared photo's one face, cut by the worker that made the photo; None when the
        check is off, the photo has no face or several, or its embedding is cached."""
        if self.backend is None or self.cache is None or not faces or self.cache.has(sha256):
            return None
        face, _ = face_of_one_person(faces)
        return self.backend.chip(image, face) if face is not None else None

    def photo_faces(self, photos: Sequence[FacePhoto], progress: Progress) -> list[PhotoFace | None]:
        """The prepared photos' embeddings: from the cache, from their chips, or read from their files."""
        if self.backend is None or self.cache is None:
            return [None] * len(photos)
        if progress.interrupted():
            raise Interrupted("Stopped before the identity check; the prepared set was left as it was")
        new = sum(p.chip is not None for p in photos)
        progress.update(0, len(photos), f"identity check: embedding {new} face{'s' if new != 1 else ''}")
        found = self.cache.photo_faces(photos, self.backend, progress, label="identity check")
        progress.update(len(photos), len(photos), f"identity check: {len(photos)} of {len(photos)} faces")
        return list(found)

    def warnings(self, photo_faces: Sequence[PhotoFace | None], faceless_reported: Collection[str],
                 duplicate_pairs: Collection[tuple[str, str]]) -> tuple[str, list[str]]:
        """(summary line, warnings) for the report."""
        if self.backend is None or self.cache is None:
            return (f"Identity check skipped: {self.note}" if self.note else "", [])
        self.cache.save()
        found = [p for p in photo_faces if p is not None]
        check = check_one_person(found, self.backend)
        compared = sum(p.embedding is not None for p in found)
        problems = len(check.outliers)
        summary = (f"Identity check ({self.backend.name}, {compared} face{'s' if compared != 1 else ''}): "
                   + (f"{problems} photo{'s' if problems != 1 else ''} may show someone else" if problems
                      else "one person" if compared >= 3 else "too few faces to compare")
                   + f"; embedded {self.cache.embedded}, reused {self.cache.reused}.")
        return summary, check.warnings(faceless_reported, duplicate_pairs)


def identity_check(enabled: bool, crop: str, models_dir: str | os.PathLike | None,
                   cache_dir: str | os.PathLike | None) -> LoaderIdentity:
    """The check for one run. Without dlib, face crop is refused with what to install; the other crops go on
    without the check, and the report says so."""
    if not enabled:
        return LoaderIdentity(None, None, detector=crop == "face")
    try:
        backend = load_backend("auto", models_dir)
    except InputError as exc:
        if crop == "face":
            raise InputError(f"{exc}; or choose crop 'center'") from None
        log.warning("likeness: identity check skipped: %s", exc)
        return LoaderIdentity(None, None, detector=False, note=str(exc))
    return LoaderIdentity(backend, EmbeddingCache(cache_dir, backend.name))


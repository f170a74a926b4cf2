"""The person a training set shows: every photo's face embedding, their centroid and spread, cached on disk.

`reference_from_photos` embeds each photo once per backend: embeddings are kept in `cache_dir` under the
photo file's sha256, so a second run over the same set (or a set that shares photos with it) embeds nothing
and says so in `ReferenceIdentity.embedded`. A `ReferenceIdentity` turns into a small JSON-safe dict (the
embeddings as base64 float32), so it can travel inside a LoRA's metadata without the photos.
"""
from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..photo_files import UnreadablePhoto, open_upright
from ..errors import InputError
from ..progress import Interrupted, Progress, SilentProgress
from ..storage import atomic_write_json, read_json, sha256_file
from .backends import Backend
from .faces import Face, detect_faces, usable_cores

PHOTO_TYPES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CACHE_FOLDER = "identity"    # the embedding cache's folder inside the pack's user folder
CACHE_VERSION = 1            # bump when the way a photo is embedded changes: cached embeddings are re-made


@dataclass(frozen=True)
class PhotoFace:
    """What one photo gave: its face embedding, or why it has none ("no face", "several faces (3)")."""
    name: str
    sha256: str
    embedding: np.ndarray | None
    faces: int
    reason: str = ""


@dataclass
class ReferenceIdentity:
    """The reference a score compares against (one backend's embeddings of one set of photos)."""
    backend: str
    names: list[str]                        # photos that gave an embedding, in `embeddings` order
    embeddings: np.ndarray                  # (n, d) float32
    content_hash: str                       # of the photos' bytes and the backend: the cache key of the set
    spread: float                           # mean distance between two of its photos (how alike they are)
    skipped: dict[str, str] = field(default_factory=dict)   # photo → why it gave no embedding
    embedded: int = 0                       # photos embedded by this call (0 when all came from the cache)
    reused: int = 0                         # photos whose embedding came from the cache

    @property
    def centroid(self) -> np.ndarray:
        return self.embeddings.mean(axis=0)

    def to_dict(self) -> dict:
        """Small and JSON-safe (about 0.7 KB per photo for dlib); `from_dict` reads it back exactly."""
        return {"version": 1, "backend": self.backend, "names": list(self.names),
                "dim": int(self.embeddings.shape[1]), "spread": round(self.spread, 6),
                "content_hash": self.content_hash,
                "embeddings": base64.b64encode(self.embeddings.astype("<f4").tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict) -> ReferenceIdentity:
        try:
            raw = base64.b64decode(data["embeddings"])
            embeddings = np.frombuffer(raw, "<f4").reshape(len(data["names"]), int(data["dim"])).astype(np.float32)
            return cls(backend=str(data["backend"]), names=list(data["names"]), embeddings=embeddings,
                       content_hash=str(data["content_hash"]), spread=float(data["spread"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"The stored reference identity is damaged ({exc}): make it again from the "
                             "training photos") from None


def reference_from_photos(photos: str | os.PathLike | Iterable[str | os.PathLike] | object, backend: Backend,
                          cache_dir: str | os.PathLike | None = None,
                          progress: Progress | None = None) -> ReferenceIdentity:
    """The reference identity of `photos`: a folder, a list of image files, or a prepared dataset (anything with
    `folder` and `items` whose entries have `image`, like LIKENESS_DATASET)."""
    paths = photo_paths(photos)
    cache = EmbeddingCache(cache_dir, backend.name)
    results = cache.photo_faces([FacePhoto(path) for path in paths], backend, progress, label="reference")
    cache.save()
    usable = [r for r in results if r.embedding is not None]
    if not usable:
        listed = "; ".join(f"{r.name}: {r.reason}" for r in results)
        raise InputError(f"None of the {len(results)} reference photos shows one clear face ({listed}): use photos "
                         "where the person's face is visible")
    embeddings = np.stack([r.embedding for r in usable]).astype(np.float32)
    digest = hashlib.sha256(f"{backend.name}\0{CACHE_VERSION}".encode())
    for r in sorted(results, key=lambda r: r.sha256):
        digest.update(r.sha256.encode())
    return ReferenceIdentity(backend=backend.name, names=[r.name for r in usable], embeddings=embeddings,
                             content_hash=digest.hexdigest(), spread=spread(embeddings, backend),
                             skipped={r.name: r.reason for r in results if r.embedding is None},
                             embedded=cache.embedded, reused=cache.reused)


def photo_paths(photos) -> list[Path]:
    """The image files `photos` names (see reference_from_photos), in a stable order."""
    if hasattr(photos, "folder") and hasattr(photos, "items"):
        return [Path(photos.folder) / item.image for item in photos.items]
    if isinstance(photos, (str, os.PathLike)):
        folder = Path(photos)
        if not folder.is_dir():
            raise InputError(f"Reference folder not found: {folder}. Give the folder of the person's photos or "
                             "connect the prepared dataset")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_TYPES and p.is_file())
        if not paths:
            raise InputError(f"No photos in {folder} ({', '.join(PHOTO_TYPES)}): put the person's photos there")
        return paths
    return [Path(p) for p in photos]


def spread(embeddings: np.ndarray, backend: Backend) -> float:
    """Mean distance between two different photos of the set (0 for a single photo)."""
    n = len(embeddings)
    pairs = [backend.distance(embeddings[i], embeddings[j]) for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(pairs)) if pairs else 0.0


def face_of_one_person(faces: Sequence[Face]) -> tuple[Face | None, str]:
    """The face to embed, or why there is none: no face, or several faces of about the same size."""
    if not faces:
        return None, "no face"
    if len(faces) > 1:
        return None, f"several faces ({len(faces)})"
    return faces[0], ""


@dataclass
class FacePhoto:
    """A photo to embed, with what is already known of it: its bytes' sha256, its pixels, the faces found in
    them, the chip made from its one face (each found from the previous when missing)."""
    path: Path
    sha256: str | None = None
    image: Image.Image | np.ndarray | None = None
    faces: Sequence[Face] | None = None
    chip: np.ndarray | None = None


class EmbeddingCache:
    """Per-photo embeddings of one backend, keyed by the photo file's sha256, in `cache_dir` (None: no cache)."""

    def __init__(self, cache_dir: str | os.PathLike | None, backend_name: str):
        self.path = Path(cache_dir) / f"embeddings-{backend_name}.json" if cache_dir else None
        stored = read_json(self.path, default={}) if self.path else {}
        fresh = isinstance(stored, dict) and stored.get("version") == CACHE_VERSION
        self.entries: dict[str, dict] = dict(stored.get("photos", {})) if fresh else {}
        self.embedded = self.reused = 0
        self._dirty = False
        self._lock = threading.Lock()

    def photo_face(self, path: Path, backend: Backend, image: Image.Image | np.ndarray | None = None,
                   faces: Sequence[Face] | None = None, sha256: str | None = None) -> PhotoFace:
        """The photo's face embedding: from the cache, or detected (unless `faces` are given) and embedded."""
        return self.photo_faces([FacePhoto(path, sha256, image, faces)], backend)[0]

    def has(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self.entries

    def photo_faces(self, photos: Sequence[FacePhoto], backend: Backend, progress: Progress | None = None,
                    label: str = "faces") -> list[PhotoFace]:
        """Each photo's face embedding, in order: from the cache, or read, detected and cut into a chip (on
        several threads: decoding and detection let go of the GIL), then embedded as one batch."""
        progress = progress or SilentProgress()
        results: list[PhotoFace | None] = [None] * len(photos)
        todo = []
        for i, photo in enumerate(photos):
            sha = photo.sha256 or sha256_file(photo.path)
            results[i] = self._cached(photo.path, sha)
            if results[i] is None:
                todo.append((i, FacePhoto(photo.path, sha, photo.image, photo.faces, photo.chip)))
        ready = self._with_chips([p for _, p in todo], backend, progress, label)
        if todo and progress.interrupted():
            raise Interrupted(f"Stopped before embedding {len(todo)} face{'s' if len(todo) != 1 else ''}")
        chips = [p.chip for p in ready if p.chip is not None]
        vectors = iter(backend.embed_chips(chips) if chips else ())
        for (i, _), photo in zip(todo, ready):
            results[i] = self._store(photo, next(vectors) if photo.chip is not None else None)
        return results  # type: ignore[return-value]

    def save(self) -> None:
        with self._lock:
            if self.path is not None and self._dirty:
                atomic_write_json(self.path, {"version": CACHE_VERSION, "photos": self.entries})
                self._dirty = False

    def _cached(self, path: Path, sha: str) -> PhotoFace | None:
        with self._lock:
            entry = self.entries.get(sha)
            if entry is None:
                return None
            self.reused += 1
        vector = np.frombuffer(base64.b64decode(entry["embedding"]), "<f4") if entry.get("embedding") else None
        return PhotoFace(path.name, sha, vector, int(entry.get("faces", 0)), entry.get("reason", ""))

    def _with_chips(self, photos: list[FacePhoto], backend: Backend, progress: Progress,
                    label: str) -> list[FacePhoto]:
        """`photos` with their faces found and the chip of their one face cut (None when none or several)."""
        def complete(photo: FacePhoto) -> FacePhoto:
            if photo.chip is not None:
                return photo
            image = photo.image
            if image is None:      # upright, as the loader reads photos: a sideways phone photo has a face too
                try:
                    image, _ = open_upright(photo.path)
                except UnreadablePhoto as exc:
                    raise InputError(f"{Path(photo.path).name} cannot be used as a photo ({exc}): "
                                     "replace or remove it, then queue again") from None
            faces = list(detect_faces(image) if photo.faces is None else photo.faces)
            face, _ = face_of_one_person(faces)
            return FacePhoto(photo.path, photo.sha256, None, faces, backend.chip(image, face) if face else None)

        if all(p.chip is not None for p in photos):
            return photos
        done = []
        with ThreadPoolExecutor(max_workers=min(usable_cores(), len(photos)), thread_name_prefix="likeness-faces") as pool:
            for photo in pool.map(complete, photos):
                if progress.interrupted():
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise Interrupted(f"Stopped reading {label} after {len(done)} of {len(photos)} photos")
                done.append(photo)
                progress.update(len(done), len(photos), f"{label}: {len(done)} of {len(photos)} photos "
                                                        f"({photo.path.name})")
        return done

    def _store(self, photo: FacePhoto, vector: np.ndarray | None) -> PhotoFace:
        faces = len(photo.faces) if photo.faces is not None else 0
        reason = face_of_one_person(photo.faces or [])[1]
        with self._lock:
            self.embedded += vector is not None
            self.entries[photo.sha256] = {  # type: ignore[index]
                "faces": faces, "reason": reason,
                "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                if vector is not None else ""}
            self._dirty = True
        return PhotoFace(photo.path.name, photo.sha256, vector, faces, reason)  # type: ignore[arg-type]

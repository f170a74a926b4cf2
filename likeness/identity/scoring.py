"""Likeness: how much the face in an image looks like the reference person, as one number from 0 to 100.

The backend measures the distance d between the image's face and each reference photo's face; the mean of
those is the image's distance (the average verdict of every training photo), and

    likeness = 100 × (1 − d / (2 × threshold)), clipped to 0–100

where `threshold` is the backend's same-person distance (dlib 0.6, ArcFace 0.68 in 1 − cosine; sources in
backends.py). So **50 is the backend's same-person line**: above it the backend would call the face the
reference person, 100 is the reference face itself, and two different people usually land at 15–35. On the
real faces the tests use, two photos of the same person (dlib) score 64–81 and different people 26–42.

An image with no face, or with several faces of about the same size, gets no number but its reason.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import InputError
from ..progress import Interrupted, Progress, SilentProgress
from .backends import Backend
from .faces import Face, detect_faces, usable_cores
from .reference import ReferenceIdentity, face_of_one_person

SCORE_BATCH = 16             # images found, cut and embedded together: a batch for the network, progress between


@dataclass(frozen=True)
class ImageScore:
    likeness: float | None           # 0–100, 50 = the backend's same-person threshold; None: see `reason`
    reason: str                      # "" when scored; "no face", "several faces (3)"
    distance: float | None           # the backend's mean distance to the reference photos
    backend: str
    same_person: bool | None         # distance below the backend's same-person threshold
    faces: int = 0
    face: Face | None = None         # the face that was scored

    def label(self) -> str:
        return f"{self.likeness:.0f}" if self.likeness is not None else self.reason


def likeness_from_distance(distance: float, same_person_below: float) -> float:
    """The 0–100 number for a distance: 100 at 0, 50 at the same-person threshold, 0 at twice it."""
    return float(np.clip(100.0 * (1.0 - distance / (2.0 * same_person_below)), 0.0, 100.0))


def score_images(images: Sequence[Image.Image | np.ndarray], reference: ReferenceIdentity, backend: Backend,
                 progress: Progress | None = None) -> list[ImageScore]:
    """Each image's likeness to `reference` (made with the same backend), in the images' order."""
    if reference.backend != backend.name:
        raise InputError(f"The reference was made with the {reference.backend} backend and cannot be compared "
                         f"with {backend.name} embeddings: make the reference again with {backend.name}")
    progress = progress or SilentProgress()
    scores: list[ImageScore] = []
    # a few images at a time: their faces found and cut on every core (dlib's detector lets go of the GIL),
    # then embedded as one batch
    workers = min(usable_cores(), len(images))          # one image (a sampler's, the sweep's) runs right here
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="likeness-faces") as pool:
        find = pool.map if workers > 1 else map
        for start in range(0, len(images), SCORE_BATCH):
            if progress.interrupted():
                raise Interrupted(f"Stopped scoring after {start} of {len(images)} images")
            part = images[start:start + SCORE_BATCH]
            found = list(find(lambda image: _face_and_chip(image, backend), part))
            chips = [chip for _, chip in found if chip is not None]
            vectors = iter(backend.embed_chips(chips) if chips else ())
            scores += [_score(faces, next(vectors) if chip is not None else None, reference, backend)
                       for faces, chip in found]
            progress.update(len(scores), len(images), f"scored {len(scores)} of {len(images)} images")
    return scores


def score_image(image: Image.Image | np.ndarray, reference: ReferenceIdentity, backend: Backend,
                faces: Sequence[Face] | None = None) -> ImageScore:
    """One image's score; `faces` when they were already found in it."""
    faces = detect_faces(image) if faces is None else faces
    face, _ = face_of_one_person(faces)
    return _score(faces, backend.embed(image, face) if face is not None else None, reference, backend)


def _face_and_chip(image: Image.Image | np.ndarray, backend: Backend) -> tuple[list[Face], np.ndarray | None]:
    faces = detect_faces(image)
    face, _ = face_of_one_person(faces)
    return faces, backend.chip(image, face) if face is not None else None


def _score(faces: Sequence[Face], embedding: np.ndarray | None, reference: ReferenceIdentity,
           backend: Backend) -> ImageScore:
    face, reason = face_of_one_person(faces)
    if face is None or embedding is None:
        return ImageScore(None, reason, None, backend.name, None, len(faces))
    distance = float(np.mean([backend.distance(embedding, ref) for ref in reference.embeddings]))
    return ImageScore(round(likeness_from_distance(distance, backend.same_person_below), 1), "", round(distance, 4),
                      backend.name, distance < backend.same_person_below, len(faces), face)


def best_first(scores: Sequence[ImageScore]) -> list[int]:
    """Indices of `scores` from the most alike to the least; images without a number come last, in order."""
    return sorted(range(len(scores)), key=lambda i: (scores[i].likeness is None, -(scores[i].likeness or 0.0), i))


def score_table(scores: Sequence[ImageScore], reference: ReferenceIdentity, backend: Backend) -> str:
    """A text table, best first: rank, image number, likeness, distance, verdict; then what the number means."""
    threshold = backend.same_person_below
    self_likeness = likeness_from_distance(reference.spread, threshold) if len(reference.names) > 1 else None
    lines = [f"Likeness to {len(reference.names)} reference photo{'s' if len(reference.names) != 1 else ''} "
             f"({backend.name}; 50 = same-person threshold, distance {threshold})",
             "rank  image  likeness  distance  verdict"]
    if reference.embedded or reference.reused:
        lines.insert(1, f"Reference faces: {reference.embedded} embedded now, {reference.reused} from the cache.")
    for rank, i in enumerate(best_first(scores), 1):
        s = scores[i]
        if s.likeness is None:
            lines.append(f"{rank:>4}  {i + 1:>5}  {'—':>8}  {'—':>8}  {s.reason}")
        else:
            verdict = "same person" if s.same_person else "not the same person"
            lines.append(f"{rank:>4}  {i + 1:>5}  {s.likeness:8.1f}  {s.distance:8.3f}  {verdict}")
    if self_likeness is not None:
        lines.append(f"The reference photos score {self_likeness:.0f} against each other (mean distance "
                     f"{reference.spread:.3f}): an image near that looks as alike as your photos do.")
    if reference.skipped:
        lines.append("Reference photos not used: " + "; ".join(f"{n} ({r})" for n, r in reference.skipped.items()))
    lines.append(f"Embeddings: {backend.description}.")
    return "\n".join(lines)

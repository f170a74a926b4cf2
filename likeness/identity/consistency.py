"""Does a set of photos show one person? The check a training set gets before anything is captioned or paid.

A photo is an outlier when the median distance from its face to the other photos' faces is above the
backend's same-person threshold: most of the set would call it someone else (a friend in the set). The
median keeps one stranger from making everyone look odd; it needs at least three faces to say anything.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .reference import PhotoFace

MIN_FACES = 3


@dataclass
class IdentityCheck:
    backend: str
    same_person_below: float
    outliers: list[tuple[str, float]] = field(default_factory=list)          # (photo, median distance)
    several_faces: list[tuple[str, int]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    near_identical: list[tuple[str, str, float]] = field(default_factory=list)

    def warnings(self, faceless_reported: Collection[str] = (),
                 duplicate_pairs: Collection[tuple[str, str]] = ()) -> list[str]:
        """Report lines; photos and pairs another check already reported are left out."""
        lines = []
        for name, median in self.outliers:
            lines.append(f"{name}: the face does not match the others (median distance {median:.2f}; the same "
                         f"person is below {self.same_person_below:.2f} with {self.backend}): is it someone "
                         "else? Remove or replace it: a second person teaches the LoRA a blend of two faces")
        for name, count in self.several_faces:
            lines.append(f"{name} shows {count} faces: the LoRA learns every face in a photo; crop the others "
                         "out or leave the photo out")
        faceless = [n for n in self.no_face if n not in faceless_reported]
        if faceless:
            lines.append(f"no face found in {', '.join(faceless)}: check they show the person's face")
        for a, b, distance in self.near_identical:
            if (a, b) not in duplicate_pairs and (b, a) not in duplicate_pairs:
                lines.append(f"{a} and {b} show the same face almost exactly (distance {distance:.2f}): the same "
                             "moment twice; keep the better one and add a different angle or expression")
        return lines


def check_one_person(photos: Sequence[PhotoFace], backend: Backend) -> IdentityCheck:
    """Outliers, several-face and no-face photos, and near-identical faces in `photos`."""
    check = IdentityCheck(backend.name, backend.same_person_below)
    check.no_face = [p.name for p in photos if p.embedding is None and p.faces == 0]
    check.several_faces = [(p.name, p.faces) for p in photos if p.embedding is None and p.faces > 1]
    faces = [p for p in photos if p.embedding is not None]
    n = len(faces)
    distances = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            distances[i, j] = distances[j, i] = backend.distance(faces[i].embedding, faces[j].embedding)
            if distances[i, j] < backend.near_identical_below:
                check.near_identical.append((faces[i].name, faces[j].name, float(distances[i, j])))
    if n >= MIN_FACES:
        for i in range(n):
            median = float(np.median(np.delete(distances[i], i)))
            if median > backend.same_person_below:
                check.outliers.append((faces[i].name, median))
    return check

"""Where to cut a photo: a square on the face(s) with head room, a centred square, or the whole photo.

The faces come from the pack's one face detector (`likeness.identity.detect_faces`: dlib's HOG detector on a
small grey copy), found once per photo by the loader and used for the crop, the report and the embedding.
The square is as large as the photo allows (the short side): the seed wants varied shots, so the crop only
moves the square to keep the face in it, it does not zoom in.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from ..identity import Face

FACE_ROW = 0.40            # the face centre sits this far down the square (head room above)
CROP_MODES = ("face", "center", "none")


@dataclass(frozen=True)
class Crop:
    box: tuple[int, int, int, int]   # left, top, right, bottom in the image's pixels
    faces: int = 0                   # faces found (face mode)
    fell_back: bool = False          # face mode found none and used the centre


def choose_crop(img: Image.Image, mode: str, faces: Sequence[Face] = ()) -> Crop:
    """The region of `img` to keep for `mode` ('face', 'center' or 'none'); face mode uses `faces` (found in
    `img` by `detect_faces`)."""
    width, height = img.size
    if mode == "none":
        return Crop((0, 0, width, height))
    if mode == "center":
        return Crop(centre_square(width, height))
    if mode != "face":
        raise ValueError(f"unknown crop mode {mode!r}; use one of {', '.join(CROP_MODES)}")
    if not faces:
        return Crop(centre_square(width, height), faces=0, fell_back=True)
    boxes = [(f.box[0], f.box[1], f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces]
    return Crop(square_around(width, height, boxes), faces=len(faces))


def centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def square_around(width: int, height: int, faces: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The largest square in the photo with the faces centred across and head room above them."""
    side = min(width, height)
    x0 = min(f[0] for f in faces)
    y0 = min(f[1] for f in faces)
    x1 = max(f[0] + f[2] for f in faces)
    y1 = max(f[1] + f[3] for f in faces)
    if x1 - x0 > side or y1 - y0 > side:  # the group does not fit: keep the largest face
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        x0, y0, x1, y1 = x, y, x + w, y + h
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = _clamp(round(cx - side / 2), 0, width - side)
    top = round(cy - FACE_ROW * side)
    top = min(top, round(y0 - 0.5 * (y1 - y0)))       # at least half a face of room above the head
    top = _clamp(top, 0, height - side)
    return left, top, left + side, top + side


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))

"""Where to cut a photo: a square on the face(s) with head room, a centred square, or the whole photo.

Faces are found with OpenCV's bundled Haar cascade (`cv2.data.haarcascades`, shipped inside the
opencv-python-headless wheel: no model download). Detection runs on a small grey copy, for speed.
The square is as large as the photo allows (the short side): the seed wants varied shots, so the crop only
moves the square to keep the face in it, it does not zoom in.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

DETECT_SIDE = 640          # long side of the grey copy the detector sees
CASCADE = "haarcascade_frontalface_alt2.xml"   # far fewer false faces in textures than _default
FACE_ROW = 0.40            # the face centre sits this far down the square (head room above)
CROP_MODES = ("face", "center", "none")

_local = threading.local()  # one classifier per thread: CascadeClassifier is not safe to share


@dataclass(frozen=True)
class Crop:
    box: tuple[int, int, int, int]   # left, top, right, bottom in the image's pixels
    faces: int = 0                   # faces found (face mode)
    fell_back: bool = False          # face mode found none and used the centre


def choose_crop(img: Image.Image, mode: str) -> Crop:
    """The region of `img` to keep for `mode` ('face', 'center' or 'none')."""
    width, height = img.size
    if mode == "none":
        return Crop((0, 0, width, height))
    if mode == "center":
        return Crop(centre_square(width, height))
    if mode != "face":
        raise ValueError(f"unknown crop mode {mode!r}; use one of {', '.join(CROP_MODES)}")
    faces = detect_faces(img)
    if not faces:
        return Crop(centre_square(width, height), faces=0, fell_back=True)
    return Crop(square_around(width, height, faces), faces=len(faces))


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


def detect_faces(img: Image.Image) -> list[tuple[int, int, int, int]]:
    """Faces as (x, y, w, h) in `img`'s pixels; small detections next to a big face are dropped."""
    import cv2

    scale = min(1.0, DETECT_SIDE / max(img.size))
    small = img.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.BILINEAR)
    grey = cv2.equalizeHist(np.asarray(small))
    min_side = max(20, int(min(grey.shape) * 0.08))
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    faces = [tuple(int(round(v / scale)) for v in f) for f in (found if len(found) else [])]
    if not faces:
        return []
    largest = max(f[2] for f in faces)
    return [f for f in faces if f[2] >= 0.5 * largest]


def _cascade():
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        import cv2  # opencv-python-headless < 5: 5.x dropped the bundled cascades

        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if cascade.empty():
            raise RuntimeError("OpenCV's bundled face cascade is missing: install opencv-python-headless<5")
        _local.cascade = cascade
    return cascade


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))

"""Where the faces are: the pack's one face detector (dlib's HOG detector and its 5-point landmarks).

`detect_faces` runs the detector on a small grey copy (long side DETECT_SIDE), and once more at twice that
size when it found nothing or a weak face (a full-length shot, a group of small faces).
dlib's HOG finds frontal and three-quarter faces down to about 70 px in the image it sees; each face then
gets dlib's 5 landmarks, found on the original pixels. Faces much smaller than the largest one (background
people) and weak detections are dropped: on the test photos real faces score 0.48 and more once the
detector looks closer, while the false faces it saw (a badge on a space suit) scored 0.34 or less. A second face must score SECOND_FACE or more, so a weak false face never turns a portrait into
"several faces".

The detector and the landmark model ship with `dlib` (the `dlib-bin` wheels, or your own build) and the
`face-recognition-models` package; nothing is downloaded. dlib's detector is not safe to share between
threads, so each thread borrows its own copy from a small pool that lives as long as the process.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError

DETECT_SIDE = 640            # long side of the grey copy the detector sees first
RETRY_SIDE = 1280            # ... and when it found nothing there
BACKGROUND_FACE = 0.5        # faces narrower than this share of the largest face are background people
MIN_CONFIDENCE = 0.3         # on the HOG detector's score (dlib's own default is 0)
SECOND_FACE = 0.45           # ... and for any face but the most confident one; a weaker one makes it look closer
LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """One face in an image, in that image's pixels.

    `landmarks` are dlib's five points: the outer and inner corner of the eye on the image's right, the outer
    and inner corner of the eye on the image's left (outer first again), and the base of the nose. `confidence` is the HOG
    detector's score (0 is its threshold; clear frontal faces score 1–3).
    """
    box: tuple[int, int, int, int]          # left, top, right, bottom
    landmarks: tuple[Point, Point, Point, Point, Point]
    confidence: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    def moved(self, scale: float, dx: float = 0.0, dy: float = 0.0) -> Face:
        """The same face in an image scaled by `scale` after shifting it by (dx, dy) (a crop, a resize)."""
        left, top, right, bottom = self.box
        box = tuple(round(v) for v in ((left + dx) * scale, (top + dy) * scale, (right + dx) * scale,
                                       (bottom + dy) * scale))
        points = tuple(((x + dx) * scale, (y + dy) * scale) for x, y in self.landmarks)
        return Face(box, points, self.confidence)  # type: ignore[arg-type]


def detect_faces(image: Image.Image | np.ndarray) -> list[Face]:
    """Faces in `image` (RGB or grey, PIL or HxW[x3] uint8/float array), largest first, background faces dropped."""
    grey = image.convert("L") if isinstance(image, Image.Image) else Image.fromarray(as_rgb_array(image)).convert("L")
    rects, seen = _detect(grey, DETECT_SIDE)
    if not rects or min(score for _, score in rects) < SECOND_FACE:
        closer, closer_seen = _detect(grey, RETRY_SIDE)
        if closer_seen > seen:
            rects = closer
    if not rects:
        return []
    best = max(rects, key=lambda rs: rs[1])
    rects = [(r, s) for r, s in rects if s >= SECOND_FACE or (r, s) == best]
    largest = max(r[2] - r[0] for r, _ in rects)
    kept = sorted(((r, s) for r, s in rects if r[2] - r[0] >= BACKGROUND_FACE * largest),
                  key=lambda rs: -(rs[0][2] - rs[0][0]))
    pixels = np.asarray(grey)      # landmarks on grey: the same points as on RGB within 1-2 px, no RGB copy
    with borrowed("landmarks") as predictor:
        return [Face(box, _landmarks(predictor, pixels, box), round(score, 3)) for box, score in kept]


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """`image` as a C-contiguous HxWx3 uint8 array (floats are read as 0–1, as ComfyUI's IMAGE holds them)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"An image of shape {array.shape} cannot be searched for faces: give an RGB image")
    return np.ascontiguousarray(array[..., :3])


def _detect(grey: Image.Image, side: int) -> tuple[list[tuple[tuple[int, int, int, int], float]], float]:
    """(box in `grey`'s pixels, score) for each face the detector finds on a copy of long side `side`, and
    the scale at which the detector saw `grey`."""
    long_side = max(grey.size)
    factor = -(-long_side // side)                            # integer box reduce: fast and antialiased
    small = grey.reduce(factor) if factor > 1 else grey
    upsample = 1 if side > DETECT_SIDE and long_side <= DETECT_SIDE else 0   # small image: look at it doubled
    scale = grey.width / small.width
    with borrowed("detector") as detector:
        rects, scores, _ = detector.run(np.asarray(small), upsample, MIN_CONFIDENCE)
    return [((max(0, round(r.left() * scale)), max(0, round(r.top() * scale)),
              min(grey.width, round(r.right() * scale)), min(grey.height, round(r.bottom() * scale))), float(s))
            for r, s in zip(rects, scores)], 2.0 ** upsample / scale


def _landmarks(predictor: Any, pixels: np.ndarray, box: tuple[int, int, int, int]) -> tuple[Point, ...]:
    import dlib

    shape = predictor(pixels, dlib.rectangle(*box))
    return tuple((float(p.x), float(p.y)) for p in shape.parts())


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# --- dlib and its model files ------------------------------------------------------------------------

def dlib_module():
    """The `dlib` module (dlib-bin's wheels or the user's own build), or an InputError that says what to install."""
    try:
        import dlib
    except ImportError:
        raise InputError("Face detection needs dlib: install it into ComfyUI's python with "
                         "`pip install dlib-bin face-recognition-models` (or build dlib yourself)") from None
    return dlib


def model_file(name: str) -> Path:
    """A model file from the `face-recognition-models` package, found without importing it (its __init__ needs
    pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise InputError(f"dlib's model file {name} was not found: install it into ComfyUI's python with "
                     "`pip install face-recognition-models` (it ships the models; nothing is downloaded)")


def _new_detector():
    return dlib_module().get_frontal_face_detector()


def _new_predictor():
    return dlib_module().shape_predictor(str(model_file(LANDMARKS_MODEL)))


class ObjectPool:
    """Objects that must not be shared between threads, built on first need and kept for reuse."""

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Any]:
        try:
            item = self._idle.get_nowait()
        except queue.Empty:
            item = self._make()
        try:
            yield item
        finally:
            self._idle.put(item)


_POOLS: dict[str, ObjectPool] = {"detector": ObjectPool(_new_detector), "landmarks": ObjectPool(_new_predictor)}
_POOLS_LOCK = threading.Lock()


def borrowed(kind: str, make: Callable[[], Any] | None = None):
    """Borrow a pooled dlib object of `kind` for the current thread (`make` registers a new kind)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(kind)
        if pool is None:
            pool = _POOLS[kind] = ObjectPool(make)  # type: ignore[arg-type]
    return pool.borrow()

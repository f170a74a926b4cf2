"""Face embeddings: dlib's face recognition ResNet by default, ArcFace (ONNX) when the user has its models.

Both backends embed a face that `detect_faces` found, aligned on its five landmarks, and say how far apart two
embeddings are in their own unit, with the distance below which two faces are the same person:

| backend | embedding | distance | same person below | source |
|---|---|---|---|---|
| dlib | 128-d, ResNet-29 of dlib 19.x | Euclidean | 0.6 | dlib's model card: 99.38% on LFW at 0.6 |
| arcface | 512-d, insightface antelopev2 (glintr100) or buffalo_l (w600k_r50) | 1 − cosine | 0.68 | deepface's ArcFace threshold, tuned on LFW pairs (cosine similarity 0.32) |

`near_identical_below` marks two faces from the same shot (a mirrored, re-cropped or re-lit copy): on the
real faces the tests use, dlib puts such copies 0.09–0.17 apart and different photos of the same person
0.23–0.43 (different people 0.70–0.89). The ArcFace value is set by the same reasoning, not measured on
real weights here.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..errors import InputError
from .dlib_resnet import CHIP_PADDING, CHIP_SIZE, network_if_it_matches
from .faces import RECOGNITION_MODEL, Face, as_rgb_array, borrowed, dlib_module, model_file

log = logging.getLogger("likeness")

BACKENDS = ("auto", "dlib", "arcface")
ARCFACE_PACKS = ("antelopev2", "buffalo_l")                 # the packs IPAdapter-FaceID, InstantID, PuLID use
ARCFACE_MODELS = ("glintr100.onnx", "w600k_r50.onnx")       # their recognition models
# ArcFace's 112×112 template (insightface `arcface_dst`) is given for eye centres, nose tip and mouth corners;
# these are dlib's five points (eye corners, nose base) in that same frame, measured by aligning 15 real faces
# on their 68-point eye centres, nose tip and mouth corners and averaging where dlib's points fell (made
# left-right symmetric about the template's centre line x = 55.9).
ARCFACE_TEMPLATE_DLIB5 = np.array([[79.3, 53.8], [66.1, 53.8], [32.5, 53.8], [45.7, 53.8], [55.9, 80.7]],
                                  np.float32)
ARCFACE_SIDE = 112
BATCH = 32                   # chips per torch call: ~40 MB of activations


class Backend(Protocol):
    name: str                       # "dlib" or "arcface-<model>": stored with every embedding and reference
    same_person_below: float        # distance under which two faces are the same person
    near_identical_below: float     # distance under which two faces come from the same shot

    description: str                # what computes the embeddings, for the report and the score table

    def embed(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        """The embedding of `face` (found in `image`), as float32."""

    def chip(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        """The aligned face the network looks at (HxWx3 uint8): cheap, and made wherever the image is at hand."""

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """The embeddings of `chips` (from `chip`), (n, d) float32, computed as one batch where the backend can."""

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """How far apart two embeddings are (0 = the same face)."""


def load_backend(kind: str = "auto", models_dir: str | os.PathLike | None = None) -> Backend:
    """The embedding backend: 'dlib', 'arcface', or 'auto' (ArcFace when its models are in
    `models_dir`/insightface and onnxruntime is installed, otherwise dlib)."""
    if kind not in BACKENDS:
        raise InputError(f"Unknown face backend {kind!r}: use one of {', '.join(BACKENDS)}")
    if kind in ("auto", "arcface"):
        model = find_arcface_model(models_dir)
        if model is not None and (kind == "arcface" or _onnxruntime_installed()):
            try:
                return _cached(("arcface", str(model)), lambda: ArcFaceBackend(model))
            except InputError as exc:
                if kind == "arcface":
                    raise
                log.warning("likeness: %s; scoring with dlib", exc)
                return _cached(("dlib",), DlibBackend)
        if model is not None:
            log.warning("likeness: ArcFace models found (%s) but onnxruntime is not installed: scoring with dlib "
                        "(`pip install onnxruntime` to use them)", model.parent)
        if kind == "arcface":
            where = Path(models_dir or "models") / "insightface"
            raise InputError(f"No ArcFace model found under {where}: put the antelopev2 or buffalo_l folder "
                             f"there (as IPAdapter-FaceID, InstantID and PuLID use it), or use backend 'dlib'")
    return _cached(("dlib",), DlibBackend)


def find_arcface_model(models_dir: str | os.PathLike | None) -> Path | None:
    """The ArcFace recognition model in ComfyUI's `models/insightface/` (or `models/insightface/models/`, the
    layout insightface's own loader uses), antelopev2 first."""
    if models_dir is None:
        return None
    root = Path(models_dir) / "insightface"
    for pack in ARCFACE_PACKS:
        for folder in (root / pack, root / "models" / pack, root / "models" / pack / pack):
            for name in ARCFACE_MODELS:
                if (folder / name).is_file():
                    return folder / name
    return None


class DlibBackend:
    """dlib's face recognition ResNet on dlib's own 150 px chip of the face.

    The network runs in torch when torch is there and gives dlib's own numbers on a test chip (checked once per
    process; see dlib_resnet.py): several times faster than dlib-bin's build, and it takes a batch. Otherwise
    dlib computes it. Either way the chip is dlib's, the embeddings agree within 1e-3 and the name stays "dlib",
    so cached embeddings and the references stored in LoRAs stay comparable.
    """
    name = "dlib"
    same_person_below = 0.6
    near_identical_below = 0.2

    def __init__(self):
        dlib = dlib_module()
        path = model_file(RECOGNITION_MODEL)
        self._make = lambda: dlib.face_recognition_model_v1(str(path))
        with borrowed("dlib-recognition", self._make) as model:
            # loaded now: a missing model is reported when the backend is chosen, not mid-run
            self._network, self.description = network_if_it_matches(path, model)
        log.info("likeness: face embeddings: %s", self.description)

    def embed(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        return self.embed_chips([self.chip(image, face)])[0]

    def chip(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        import dlib

        patch, face = face_patch(image, face, face_side=160)
        left, top, right, bottom = face.box
        shape = dlib.full_object_detection(dlib.rectangle(left, top, right, bottom),
                                           [dlib.point(round(x), round(y)) for x, y in face.landmarks])
        return np.asarray(dlib.get_face_chip(patch, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not len(chips):
            return np.zeros((0, 128), np.float32)
        if self._network is not None:
            return np.concatenate([self._network.embed(np.stack(chips[i:i + BATCH]))
                                   for i in range(0, len(chips), BATCH)])
        with borrowed("dlib-recognition", self._make) as model:
            return np.asarray([model.compute_face_descriptor(np.ascontiguousarray(c)) for c in chips], np.float32)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


class ArcFaceBackend:
    """An insightface ArcFace ONNX model on the 112×112 chip aligned to ArcFace's five-point template."""
    name = "arcface"                # made "arcface-<model>" per model: embeddings of two models don't compare
    same_person_below = 0.68
    near_identical_below = 0.15

    def __init__(self, model: Path):
        try:
            import onnxruntime
        except ImportError:
            raise InputError("The ArcFace backend needs onnxruntime: `pip install onnxruntime` (or "
                             "onnxruntime-gpu) into ComfyUI's python, or use backend 'dlib'") from None
        self.model = model
        self.name = f"arcface-{model.stem}"
        self.description = f"ArcFace {model.stem} (onnxruntime)"
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:   # onnxruntime raises its own classes for a truncated or foreign file
            raise InputError(f"onnxruntime cannot load {model} ({type(exc).__name__}): download it again, or "
                             "use backend 'dlib'") from None
        self._input = self._session.get_inputs()[0].name
        shape = self._session.get_inputs()[0].shape
        if list(shape[1:]) != [3, ARCFACE_SIDE, ARCFACE_SIDE]:
            raise InputError(f"{model} takes input of shape {shape}, not ArcFace's [N, 3, 112, 112]: is it the "
                             "recognition model of antelopev2 (glintr100.onnx) or buffalo_l (w600k_r50.onnx)?")
        log.info("likeness: face scores use ArcFace from %s", model)

    def embed(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        return self.embed_chips([self.chip(image, face)])[0]

    def chip(self, image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
        return arcface_chip(image, face)

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        vectors = []
        for chip in chips:              # one at a time: some exports fix the batch size at 1
            blob = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
            vector = self._session.run(None, {self._input: blob})[0][0].astype(np.float32)
            vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return np.asarray(vectors, np.float32).reshape(len(vectors), -1)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        return float(1.0 - np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def arcface_chip(image: Image.Image | np.ndarray, face: Face) -> np.ndarray:
    """The 112×112 RGB chip ArcFace expects: the face turned and scaled so its landmarks sit on the template."""
    import cv2

    patch, face = face_patch(image, face, face_side=2 * ARCFACE_SIDE)
    matrix = similarity_transform(np.asarray(face.landmarks, np.float32), ARCFACE_TEMPLATE_DLIB5)
    return cv2.warpAffine(patch, matrix, (ARCFACE_SIDE, ARCFACE_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def face_patch(image: Image.Image | np.ndarray, face: Face, face_side: int) -> tuple[np.ndarray, Face]:
    """A square around `face` (twice its box), scaled down with antialiasing so the box is about `face_side`
    pixels wide, and the face in the patch's pixels. The aligners then warp a small, clean image."""
    if isinstance(image, Image.Image):          # no array round trip: the same pixels, three copies fewer
        picture = image if image.mode == "RGB" else image.convert("RGB")
    else:
        picture = Image.fromarray(as_rgb_array(image))
    width, height = picture.size
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top, 1)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = max(0, int(cx - side)), max(0, int(cy - side))
    x1, y1 = min(width, int(cx + side) + 1), min(height, int(cy + side) + 1)
    scale = min(1.0, face_side / side)
    region = picture.resize((max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                            Image.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=2.0)
    moved = face.moved(region.width / (x1 - x0), -x0, -y0)
    return np.ascontiguousarray(np.asarray(region)), moved


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 rotation + uniform scale + shift that maps `src` points onto `dst` in the least-squares sense
    (Umeyama 1991, as insightface's `norm_crop` estimates it)."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3), np.float32)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def _onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


_BACKENDS: dict[tuple, Backend] = {}
_BACKENDS_LOCK = threading.Lock()


def _cached(key: tuple, make) -> Backend:
    """One backend object per model for the process: loading a model costs a second, reusing it nothing."""
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = make()
        return _BACKENDS[key]

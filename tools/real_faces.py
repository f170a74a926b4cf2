"""Real faces for the identity tests and benchmarks, from two registry packages that ship them (no model hub).

`face_recognition==1.3.0`'s sdist carries its test photos (Obama ×3 and two partial crops, Biden) and
`insightface==2.1`'s sdist carries a group photo (t1.jpg, six people) and an aligned face (Tom Hanks). The
sdists are fetched once with pip, checked against pinned sha256 digests, and their images kept in a cache
folder (`LIKENESS_TEST_CACHE`, default ~/.cache/likeness-tests). `skimage.data.astronaut()` (Eileen Collins)
is one more person.
"""
from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SDISTS = {
    "face_recognition-1.3.0.tar.gz": ("face_recognition==1.3.0",
                                      "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
                                      "face_recognition-1.3.0/tests/test_images/"),
    "insightface-2.1.tar.gz": ("insightface==2.1",
                               "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
                               "insightface-2.1/insightface/data/images/"),
}
OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg")
PEOPLE = {"obama": "obama.jpg", "biden": "biden.jpg", "hanks": "Tom_Hanks_54745.png"}
GROUP = "t1.jpg"


def faces_dir() -> Path:
    """The folder holding the packages' images, fetched and verified on first use."""
    root = Path(os.environ.get("LIKENESS_TEST_CACHE") or Path.home() / ".cache" / "likeness-tests")
    folder = root / "real-faces"
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for filename, (requirement, digest, prefix) in SDISTS.items():
        archive = root / filename
        if not archive.is_file() or _sha256(archive) != digest:
            _download(requirement, root)
        if _sha256(archive) != digest:
            raise RuntimeError(f"{archive} does not match its pinned sha256 {digest}")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix) and "/" not in member.name[len(prefix):]:
                    (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    (folder / ".complete").write_text("ok\n")
    return folder


def image(name: str) -> Image.Image:
    with Image.open(faces_dir() / name) as img:
        return img.convert("RGB")


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _download(requirement: str, into: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", "-d", tmp, requirement], check=True, timeout=300)
        for path in Path(tmp).iterdir():
            path.replace(into / path.name)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scene_without_face(width: int = 800, height: int = 600, seed: int = 3) -> Image.Image:
    """A photo-like picture with no face in it (textured colour fields)."""
    rng = np.random.default_rng(seed)
    base = rng.random((height // 40, width // 40, 3)) * 255
    return Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.BICUBIC)


def styled_portrait(inputs: dict, index: int = 0, side: int = 320) -> Image.Image:
    """An image a personal-LoRA generator could return for these Replicate inputs, made of real faces.

    The personal identity is Obama (obama.jpg); a style LoRA pulls the face toward someone else (Biden's face,
    aligned onto it) and warms the colours, more as its effective strength rises, less as the personal LoRA's
    does — the way likeness behaves when a Civitai LoRA is stacked on a personal one. Effective strengths are
    what flux-dev-lora applies: its `lora_scale` × the go_fast multiplier its schema states (1.5). The seed
    moves the framing by a few pixels, as a new seed would.
    """
    multiplier = 1.5 if inputs.get("go_fast", True) else 1.0
    personal = float(inputs.get("lora_scale", 1.0)) * multiplier
    style = float(inputs.get("extra_lora_scale", 0.0)) * multiplier if inputs.get("extra_lora") else 0.0
    mix = float(np.clip(0.05 + 2.0 * style - 0.5 * (personal - 0.7), 0.0, 1.0))
    a, b = _framed_pair(int(inputs.get("seed", 0)) % 7 - 3, side)
    pixels = (1.0 - mix) * a + mix * b
    pixels *= 1.0 + 0.3 * min(style, 1.0) * np.array([0.5, 0.1, -0.5], np.float32)      # a warm film grade
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=32)
def _framed_pair(shift: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    own, other, box = _aligned_pair()
    box = (box[0] + shift, box[1] + shift, box[2] + shift, box[3] + shift)
    return (np.asarray(own.crop(box).resize((side, side), Image.LANCZOS), np.float32),
            np.asarray(other.crop(box).resize((side, side), Image.LANCZOS), np.float32))


_PAIR: list = []


def _aligned_pair() -> tuple[Image.Image, Image.Image, tuple[int, int, int, int]]:
    """obama.jpg, biden.jpg warped onto its five face points, and a square box around the face."""
    if not _PAIR:
        import cv2

        from likeness.identity import detect_faces

        own, other = image("obama.jpg"), image("biden.jpg")
        mine, theirs = detect_faces(own)[0], detect_faces(other)[0]
        matrix, _ = cv2.estimateAffinePartial2D(np.asarray(theirs.landmarks, np.float32),
                                                np.asarray(mine.landmarks, np.float32))
        warped = Image.fromarray(cv2.warpAffine(np.asarray(other), matrix, own.size, borderMode=cv2.BORDER_REFLECT))
        left, top, right, bottom = mine.box
        cx, cy, half = (left + right) / 2, (top + bottom) / 2, (right - left) * 1.1
        _PAIR.append((own, warped, (int(cx - half), int(cy - half), int(cx + half), int(cy + half))))
    return _PAIR[0]

"""Test photos made by the tests: synthetic textured scenes of any size, format, mode and EXIF orientation,
real faces from scikit-image's bundled sample photos, and broken files (corrupt, truncated, bombs).

Nothing is downloaded and nothing binary is committed: every file is written when a test asks for it.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pillow_heif import register_heif_opener

register_heif_opener()   # lets the tests write .heic files
EXIF_ORIENTATION = 0x0112


def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB photo-like array: smooth gradients, soft blobs and fine grain (detail for blur/hash checks)."""
    rng = np.random.default_rng(seed)
    small_h, small_w = max(2, height // 32), max(2, width // 32)
    # low-frequency structure: random colour field upscaled smoothly
    base = rng.random((small_h, small_w, 3)).astype(np.float32) * 255
    img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(6):  # a few sharp-edged shapes so the photo has edges to keep
        cx, cy, r = rng.random() * width, rng.random() * height, (0.05 + rng.random() * 0.2) * min(width, height)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img[mask] = img[mask] * 0.4 + rng.random(3).astype(np.float32) * 255 * 0.6
    # stripes at a seed-dependent angle and frequency: texture that differs between seeds
    angle, freq = rng.random() * np.pi, 0.02 + rng.random() * 0.08
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq * 2 * np.pi)[..., None] * 25
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    return np.clip(img + stripes + grain, 0, 255).astype(np.uint8)


def quadrant_marked(size: int = 400) -> np.ndarray:
    """A square whose four quarters have distinct colours (red TL, green TR, blue BL, white BR): orientation
    can be read from content even when width == height."""
    h = size // 2
    img = np.zeros((size, size, 3), np.uint8)
    img[:h, :h] = (220, 20, 20)
    img[:h, h:] = (20, 220, 20)
    img[h:, :h] = (20, 20, 220)
    img[h:, h:] = (240, 240, 240)
    return img


def quadrant_colours(img: Image.Image | np.ndarray) -> list[tuple[int, int, int]]:
    """Mean colour of the TL, TR, BL, BR quarters (rounded)."""
    a = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, np.float32)
    h, w = a.shape[0] // 2, a.shape[1] // 2
    quarters = [a[:h, :w], a[:h, w:], a[h:, :w], a[h:, w:]]
    return [tuple(int(round(v)) for v in q.reshape(-1, 3).mean(0)) for q in quarters]


def astronaut() -> np.ndarray:
    """A real portrait (Eileen Collins, NASA, public domain) shipped with scikit-image."""
    from skimage import data

    return data.astronaut()


def face_off_centre(width: int = 1600, height: int = 800, face_x: float = 0.78, seed: int = 1) -> np.ndarray:
    """A wide photo with the astronaut's portrait pasted with its centre at `face_x` of the width."""
    canvas = scene(width, height, seed)
    portrait = Image.fromarray(astronaut()).resize((height, height), Image.LANCZOS)
    left = int(face_x * width - height / 2)
    left = max(0, min(width - height, left))
    canvas[:, left:left + height] = np.asarray(portrait)
    return canvas


def save(array_or_image, path: str | Path, fmt: str | None = None, orientation: int | None = None,
         **params) -> Path:
    """Writes a photo; `orientation` stores an EXIF orientation tag (the pixels are stored as given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        params["exif"] = exif.tobytes()
    img.save(path, format=fmt, **params)
    return path


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that applying EXIF `orientation` shows `upright`."""
    img = Image.fromarray(upright)
    inverse = {1: None, 2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
               5: Image.TRANSPOSE, 6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}[orientation]
    return np.asarray(img if inverse is None else img.transpose(inverse))


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def truncated_jpeg(path: str | Path, width: int = 800, height: int = 600, keep: float = 0.5) -> Path:
    data = jpeg_bytes(scene(width, height, 7))
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def corrupt_file(path: str | Path) -> Path:
    Path(path).write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG " * 20)
    return Path(path)


def zero_byte(path: str | Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def png_bomb(path: str | Path, width: int = 30000, height: int = 30000) -> Path:
    """A PNG whose header claims width × height pixels (the data is a stub): Pillow refuses it at open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    Path(path).write_bytes(body)
    return Path(path)


def photo_set(folder: str | Path, count: int, width: int = 1200, height: int = 900, start_seed: int = 100,
              captions: str | None = None, prefix: str = "photo") -> list[Path]:
    """`count` distinct JPEGs (and `<name>.txt` captions when `captions` is a format like "pelarbues, photo {i}")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = save(scene(width, height, start_seed + i), folder / f"{prefix}{i:02d}.jpg", quality=90)
        if captions is not None:
            path.with_suffix(".txt").write_text(captions.format(i=i), encoding="utf-8")
        paths.append(path)
    return paths


ASTRONAUT_FACE_X = 0.4365   # centre of Eileen Collins' face across scikit-image's astronaut (of the width)


def astronaut_face_centre_x(portrait_side: int, portrait_centre_x: float) -> float:
    """Where the face centre lands in a `face_off_centre` photo (before clamping at the edges)."""
    return portrait_centre_x - portrait_side / 2 + ASTRONAUT_FACE_X * portrait_side


def crop_offset(source: np.ndarray, square: Image.Image, step: int = 4) -> int:
    """The left edge (in source pixels) of the full-height square of `source` that `square` was cut from."""
    height, width = source.shape[:2]
    scale = 1 / 8
    small_h = max(1, round(height * scale))
    src = np.asarray(Image.fromarray(source).resize((max(1, round(width * scale)), small_h)), np.float32)
    target = np.asarray(square.convert("RGB").resize((small_h, small_h)), np.float32)
    best, best_left = None, 0
    for left in range(0, width - height + 1, step):
        x = round(left * scale)
        window = src[:, x:x + small_h]
        if window.shape[1] != small_h:
            continue
        err = float(np.abs(window - target).mean())
        if best is None or err < best:
            best, best_left = err, left
    return best_left

"""Which files are photos, and reading one upright, in 8-bit RGB, decoded no larger than needed.

Replicate's trainer takes only .jpg/.jpeg/.png (the seed); other formats Pillow (plus pillow-heif) can read
are converted when the user allows it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

NATIVE = (".jpg", ".jpeg", ".png")
CONVERTIBLE = (".webp", ".heic", ".heif", ".tif", ".tiff", ".bmp", ".gif", ".avif")
BACKGROUND = (255, 255, 255)   # transparent parts of a photo are composited on white
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class UnreadablePhoto(Exception):
    """A file that cannot be used as a photo; the message says why, in the user's words."""


def register_extra_formats() -> None:
    """HEIC/HEIF through pillow-heif (optional: without it those files are reported as unreadable)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
        return
    register_heif_opener()


def kind_of(path: str | os.PathLike) -> str:
    """'native', 'convertible' or 'other', by extension."""
    ext = Path(path).suffix.lower()
    return "native" if ext in NATIVE else "convertible" if ext in CONVERTIBLE else "other"


def open_upright(path: str | os.PathLike, scale_to: int | None = None, square: bool = True) -> tuple[Image.Image, tuple[int, int]]:
    """The photo at `path` as an upright RGB image, and its full upright size.

    With `scale_to`, a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale (draft mode) that still leaves
    `scale_to` pixels on the short side (`square`) or the long side; other formats decode in full.
    Raises UnreadablePhoto for empty, corrupt, truncated, or oversized (decompression bomb) files.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadablePhoto("empty file (0 bytes)")
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise UnreadablePhoto(f"refused: too many pixels for a photo ({exc})") from None
    except UnidentifiedImageError:
        raise UnreadablePhoto("not a readable image (corrupt, or not the format its name says)") from None
    except OSError as exc:
        raise UnreadablePhoto(f"not a readable image ({exc})") from None
    keep = None
    try:
        width, height = img.size
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            raise UnreadablePhoto(f"refused: {width}×{height} pixels is more than the {Image.MAX_IMAGE_PIXELS:,} "
                                  f"pixel limit (a decompression bomb guard); downsize it first")
        full = _upright_size(img)
        if scale_to and img.format == "JPEG":
            side = min(width, height) if square else max(width, height)
            scale = min(1.0, scale_to / side)
            img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        img.seek(0)  # animated GIF/WebP: the first frame
        img.load()
        if img.getexif().get(0x0112, 1) != 1:
            ImageOps.exif_transpose(img, in_place=True)   # in place: a copy of a 12 MP photo costs ~50 ms
        icc = img.info.get("icc_profile") if img.mode == "RGB" else None
        keep = to_rgb(img)
        if keep is img and getattr(img, "fp", None) is not None:
            keep = img.copy()   # multi-frame formats keep their file open: detach the pixels from it
        keep.info = {"icc_profile": icc} if icc else {}
        return keep, full
    except UnreadablePhoto:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnreadablePhoto(f"damaged or truncated ({exc})") from None
    finally:
        if keep is not img:   # loading by file name already closed the file of a single-frame photo
            img.close()


def _upright_size(img: Image.Image) -> tuple[int, int]:
    orientation = img.getexif().get(0x0112, 1) if img.format != "TIFF" else 1
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else img.size


def to_rgb(img: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """8-bit RGB: 16-bit scaled (not clipped), palette and alpha composited on `background`, CMYK converted."""
    if img.mode in _SIXTEEN_BIT or img.mode == "I":
        values = np.asarray(img).astype(np.float32)
        top = 65535.0 if img.mode in _SIXTEEN_BIT or values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        values = np.asarray(img)
        top = 1.0 if values.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, background)
        flat.paste(img, mask=img.getchannel("A"))
        return flat
    return img if img.mode == "RGB" else img.convert("RGB")

"""The seed's rules for a training set, and the checks a photo gets: size, sharpness, near-duplicates.

Seed: "Limit the number of images to 30 or fewer", "Aim for at least 40 steps per image".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_PHOTOS = 30            # above this the seed's LoRAs "lost focus on the subject"
MIN_PHOTOS = 10            # fewer rarely covers enough shots, angles and expressions
STEPS_PER_PHOTO = 40
DUPLICATE_DISTANCE = 6     # perceptual hashes this close (of 64 bits) are the same shot
BLURRY_BELOW = 30.0        # variance of the Laplacian on a 512 px grey copy
SHARPNESS_SIDE = 512
MAX_UPSCALE = 4            # a photo whose short side must grow more than this is refused (see too_small)


def suggested_steps(count: int) -> int:
    """The seed's rule: 40 training steps per photo (26 photos → 1040 steps)."""
    return STEPS_PER_PHOTO * count


def count_warnings(count: int) -> list[str]:
    if count > MAX_PHOTOS:
        return [f"{count} photos: the seed recommends {MAX_PHOTOS} or fewer (with 40–50 the LoRA lost focus on "
                f"the subject); keep your {MAX_PHOTOS} most varied"]
    if count < MIN_PHOTOS:
        return [f"only {count} photo{'s' if count != 1 else ''}: aim for at least {MIN_PHOTOS} (the seed used "
                f"25–27) covering different shots, angles, poses and expressions"]
    return []


def minimum_side(size: int) -> int:
    """The shortest side a photo may have for a set of `size` px: a quarter of it (256 px at 1024)."""
    return -(-size // MAX_UPSCALE)


def too_small(source_size: tuple[int, int], size: int) -> str:
    """Why a photo is refused for being too small ("" when it is not).

    Upscaled more than 4×, at least 15 of every 16 pixels of the training image are invented by the resampler:
    the trainer learns the interpolation blur as part of the face (and a 1×1 "photo" teaches a flat colour)
    while captioning and uploading it would still be paid. Between ¼ and 1 of the set's size a photo is kept,
    upscaled, with a warning (photo_warnings).
    """
    short = min(source_size)
    if short >= minimum_side(size):
        return ""
    return (f"too small: {source_size[0]}×{source_size[1]} px; a {size} px set needs at least {minimum_side(size)} "
            f"px on the short side (upscaling more than {MAX_UPSCALE}× teaches blur, not a face), so it was left "
            "out before captioning or upload; use a larger original")


def check_copy(img: Image.Image) -> Image.Image:
    """The small grey copy the checks look at: short side at most 512 px (cheap to make from 1024 px)."""
    grey = img.convert("L")
    factor = min(grey.size) // SHARPNESS_SIDE
    if factor >= 2:
        grey = grey.reduce(factor)
    if min(grey.size) > SHARPNESS_SIDE:
        scale = SHARPNESS_SIDE / min(grey.size)
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.BOX)
    return grey


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT hash (pHash): low frequencies of a 32 px grey copy against their median."""
    import cv2

    grey = np.asarray(img.convert("L").resize((32, 32), Image.BOX), dtype=np.float32)
    low = cv2.dct(grey)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count() if hasattr(int, "bit_count") else bin(a ^ b).count("1")


def near_duplicates(hashes: dict[str, int], max_distance: int = DUPLICATE_DISTANCE) -> list[tuple[str, str, int]]:
    """Pairs of names whose photos look the same (hash distance ≤ max_distance), in name order."""
    names = sorted(hashes)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            distance = hash_distance(hashes[a], hashes[b])
            if distance <= max_distance:
                pairs.append((a, b, distance))
    return pairs


def sharpness(img: Image.Image) -> float:
    """Variance of the Laplacian of a grey copy with a 512 px short side: low means blurry."""
    import cv2

    grey = img if img.mode == "L" and min(img.size) <= SHARPNESS_SIDE else check_copy(img)
    return float(cv2.Laplacian(np.asarray(grey), cv2.CV_64F).var())


@dataclass(frozen=True)
class PhotoFacts:
    """What the checks need to know about one prepared photo (kept in the set's manifest)."""
    name: str
    source_size: tuple[int, int]     # upright pixels of the original
    used_side: int                   # pixels of the original along the side that became `size`
    phash: int
    sharpness: float
    face: str                        # "found", "centre" (face mode fell back) or "" (not face mode)


def photo_warnings(facts: list[PhotoFacts], size: int) -> list[str]:
    """Warnings about single photos and pairs: too small, blurry, face not found, near-duplicates."""
    warnings = []
    small = [f for f in facts if f.used_side < size]
    if small:
        listed = ", ".join(f"{f.name} ({f.used_side} px)" for f in small)
        warnings.append(f"{_count(small, 'photo')} smaller than {size} px and upscaled: {listed}; "
                        "use larger originals if you have them")
    blurry = [f for f in facts if f.sharpness < BLURRY_BELOW]
    if blurry:
        listed = ", ".join(f"{f.name} ({f.sharpness:.0f})" for f in blurry)
        warnings.append(f"{_count(blurry, 'photo')} look blurry (sharpness below {BLURRY_BELOW:.0f}): {listed}; "
                        "sharp photos teach the face better")
    faceless = [f.name for f in facts if f.face == "centre"]
    if faceless:
        warnings.append(f"no face found in {', '.join(faceless)}: used a centre crop; check they show the person")
    for a, b, distance in near_duplicates({f.name: f.phash for f in facts}):
        warnings.append(f"{a} and {b} look like the same shot (hash distance {distance}): keep the better one "
                        "and add a different angle instead")
    return warnings


def _count(items: list, word: str) -> str:
    return f"{len(items)} {word}{'s' if len(items) != 1 else ''}"

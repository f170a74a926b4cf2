"""The seed's rules and the per-photo checks: counts, steps, near-duplicates, blur, small photos."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from harness import photos
from likeness.dataset.photo_checks import (BLURRY_BELOW, DUPLICATE_DISTANCE, PhotoFacts, count_warnings, hash_distance,
                                   near_duplicates, perceptual_hash, photo_warnings, sharpness, suggested_steps)


def test_suggested_steps_are_forty_per_photo_as_in_the_seed():
    assert suggested_steps(26) == 1040
    assert suggested_steps(0) == 0


def test_count_warnings_above_thirty_and_below_ten():
    assert "30 or fewer" in count_warnings(31)[0]
    assert count_warnings(30) == [] and count_warnings(10) == []
    assert "at least 10" in count_warnings(9)[0]
    assert "only 1 photo:" in count_warnings(1)[0]


def reencoded(img: Image.Image, quality: int = 70) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_the_same_shot_reencoded_resized_and_brightened_is_a_near_duplicate():
    shot = Image.fromarray(photos.astronaut())
    variant = ImageEnhance.Brightness(reencoded(shot.resize((400, 400)))).enhance(1.1)
    assert hash_distance(perceptual_hash(shot), perceptual_hash(variant)) <= DUPLICATE_DISTANCE


def test_different_photos_are_not_near_duplicates():
    hashes = {f"s{i}": perceptual_hash(Image.fromarray(photos.scene(400, 300, 100 + i))) for i in range(12)}
    hashes["astronaut"] = perceptual_hash(Image.fromarray(photos.astronaut()))
    assert near_duplicates(hashes) == []


def test_near_duplicates_lists_pairs_in_name_order():
    assert near_duplicates({"b": 0b1111, "a": 0b1110, "c": 2 ** 64 - 1}) == [("a", "b", 1)]


def test_a_blurred_photo_scores_below_the_threshold_and_the_sharp_one_above():
    sharp = Image.fromarray(photos.astronaut())
    assert sharpness(sharp) > 5 * BLURRY_BELOW
    assert sharpness(sharp.filter(ImageFilter.GaussianBlur(3))) < BLURRY_BELOW
    big = Image.fromarray(photos.scene(2048, 2048, 1))
    assert sharpness(big) > BLURRY_BELOW      # measured at 512 px, whatever the size


def facts(name, used=1024, phash=None, sharp=500.0, face=""):
    return PhotoFacts(name, (used, used), used, phash if phash is not None else hash(name) & (2 ** 64 - 1),
                      sharp, face)


def test_photo_warnings_group_small_blurry_faceless_and_duplicates():
    warnings = photo_warnings([facts("a.jpg", used=800), facts("b.jpg", sharp=3.0), facts("c.jpg", face="centre"),
                               facts("d.jpg", phash=7), facts("e.jpg", phash=7), facts("f.jpg", face="found")],
                              size=1024)
    text = "\n".join(warnings)
    assert "1 photo smaller than 1024 px and upscaled: a.jpg (800 px)" in text
    assert "1 photo look blurry" in text and "b.jpg (3)" in text
    assert "no face found in c.jpg" in text and "f.jpg" not in text
    assert "d.jpg and e.jpg look like the same shot" in text
    assert photo_warnings([facts("ok.jpg")], size=1024) == []


def test_hash_is_stable_for_the_same_pixels():
    img = Image.fromarray(np.asarray(photos.scene(300, 300, 5)))
    assert perceptual_hash(img) == perceptual_hash(img.copy())

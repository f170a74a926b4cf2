"""Reading photos upright in 8-bit RGB: orientation, modes, formats, draft decoding, broken files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness import photos
from likeness.photo_files import UnreadablePhoto, kind_of, open_upright, register_extra_formats, to_rgb

register_extra_formats()
RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 220, 20), (20, 20, 220), (240, 240, 240)


def close(a, b, tol=12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_exif_orientation_is_applied_whatever_the_tag(tmp_path, orientation, fmt):
    upright = photos.quadrant_marked(400)
    stored = photos.stored_for_orientation(upright, orientation)
    path = photos.save(stored, tmp_path / f"o{orientation}.{fmt.lower()}", fmt=fmt, orientation=orientation,
                       quality=95)
    img, full = open_upright(path)
    assert full == (400, 400)
    for got, want in zip(photos.quadrant_colours(img), [RED, GREEN, BLUE, WHITE]):
        assert close(got, want), (orientation, photos.quadrant_colours(img))


def test_orientation_6_swaps_width_and_height_of_the_reported_size(tmp_path):
    upright = photos.scene(300, 200, 1)
    path = photos.save(photos.stored_for_orientation(upright, 6), tmp_path / "p.jpg", orientation=6)
    img, full = open_upright(path)
    assert full == (300, 200) and img.size == (300, 200)


def test_tiff_orientation_is_applied_once(tmp_path):
    upright = photos.quadrant_marked(200)
    path = photos.save(photos.stored_for_orientation(upright, 3), tmp_path / "p.tif", orientation=3)
    img, _ = open_upright(path)
    assert [close(g, w) for g, w in zip(photos.quadrant_colours(img), [RED, GREEN, BLUE, WHITE])] == [True] * 4


def test_cmyk_jpeg_becomes_the_right_rgb(tmp_path):
    cyan = Image.new("CMYK", (64, 64), (255, 0, 0, 0))
    path = tmp_path / "cmyk.jpg"
    cyan.save(path, quality=95)
    img, _ = open_upright(path)
    assert img.mode == "RGB"
    assert close(img.getpixel((32, 32)), (0, 255, 255), tol=8)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    img, _ = open_upright(path)
    values = np.asarray(img)[..., 0]
    assert img.mode == "RGB"
    assert values.min() == 0 and values.max() == 255
    assert abs(int(values[0, 128]) - 128) <= 2          # mid-grey stays mid-grey (clipping would give 255)


def test_sixteen_bit_rgb_png_keeps_its_colour(tmp_path):
    import cv2

    bgr = np.zeros((32, 32, 3), np.uint16)
    bgr[..., 2] = 40000   # red
    bgr[..., 1] = 20000   # green
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), bgr)
    img, _ = open_upright(path)
    assert close(img.getpixel((5, 5)), (round(40000 / 257), round(20000 / 257), 0), tol=2)


def test_palette_with_transparency_and_alpha_are_composited_on_white(tmp_path):
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.paste(1, (0, 0, 20, 40))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    img, _ = open_upright(tmp_path / "pal.png")
    assert close(img.getpixel((5, 5)), (200, 10, 10), 2) and close(img.getpixel((30, 5)), (255, 255, 255), 2)

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :20, 3] = 255      # left half opaque red, right half fully transparent red
    rgba[:, 20:30, 3] = 128    # half transparent: pink on white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    img, _ = open_upright(tmp_path / "alpha.png")
    assert close(img.getpixel((5, 5)), (255, 0, 0), 2)
    assert close(img.getpixel((35, 5)), (255, 255, 255), 2)
    assert close(img.getpixel((25, 5)), (255, 127, 127), 3)


def test_grey_with_alpha_and_one_bit_become_rgb():
    la = Image.new("LA", (4, 4), (50, 0))
    assert to_rgb(la).getpixel((0, 0)) == (255, 255, 255)
    one = Image.new("1", (4, 4), 1)
    assert to_rgb(one).getpixel((0, 0)) == (255, 255, 255)


def test_gif_first_frame_is_used(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    img, _ = open_upright(tmp_path / "anim.gif")
    assert close(img.getpixel((10, 10)), (250, 0, 0), 20)


@pytest.mark.parametrize("ext, fmt", [(".webp", "WEBP"), (".heic", "HEIF"), (".bmp", "BMP"), (".tif", "TIFF"),
                                      (".avif", "AVIF")])
def test_convertible_formats_are_read(tmp_path, ext, fmt):
    path = photos.save(photos.scene(120, 90, 3), tmp_path / f"p{ext}", fmt=fmt)
    img, full = open_upright(path)
    assert img.mode == "RGB" and full == (120, 90)
    assert kind_of(path) == "convertible"


def test_kinds_by_extension():
    assert [kind_of(n) for n in ("a.JPG", "b.jpeg", "c.png", "d.heic", "e.txt", "f")] == \
        ["native", "native", "native", "convertible", "other", "other"]


def test_draft_decodes_a_big_jpeg_smaller_but_never_below_the_target(tmp_path):
    path = photos.save(photos.scene(4000, 3000, 2), tmp_path / "big.jpg", quality=85)
    img, full = open_upright(path, scale_to=1024, square=True)
    assert full == (4000, 3000)
    assert img.size == (2000, 1500)            # 1/2 scale: 1/4 would leave 750 px, below 1024
    img, _ = open_upright(path, scale_to=256, square=True)
    assert img.size == (500, 375)              # 1/8 scale still leaves ≥ 256 on the short side
    img, _ = open_upright(path, scale_to=1024, square=False)
    assert max(img.size) >= 1024 and max(img.size) < 4000


@pytest.mark.parametrize("make, message", [
    (photos.zero_byte, "empty file"),
    (photos.corrupt_file, "not a readable image"),
    (photos.truncated_jpeg, "damaged or truncated"),
    (photos.png_bomb, "refused"),
])
def test_broken_files_raise_unreadable_photo_with_a_reason(tmp_path, make, message):
    path = make(tmp_path / ("x.png" if make is photos.png_bomb else "x.jpg"))
    with pytest.raises(UnreadablePhoto, match=message):
        open_upright(path, scale_to=512)


def test_a_photo_over_the_pixel_limit_but_under_twice_it_is_refused_too(tmp_path, monkeypatch):
    path = photos.save(photos.scene(300, 200, 1), tmp_path / "p.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)   # 60 000 px: Pillow would only warn
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(UnreadablePhoto, match="pixel limit"):
        open_upright(path)

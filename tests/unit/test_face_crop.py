"""Where the square goes: on a real face with head room, in the centre, or the whole photo."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness import photos
from likeness.dataset.face_crop import FACE_ROW, centre_square, choose_crop, square_around
from likeness.identity import detect_faces


def test_centre_square_is_the_largest_centred_square():
    assert centre_square(4000, 3000) == (500, 0, 3500, 3000)
    assert centre_square(3000, 4000) == (0, 500, 3000, 3500)
    assert centre_square(512, 512) == (0, 0, 512, 512)


def test_square_is_centred_across_on_the_face_and_clamped_to_the_photo():
    assert square_around(4000, 3000, [(2900, 1000, 200, 200)]) == (1000, 0, 4000, 3000)   # clamped right
    assert square_around(4000, 3000, [(1900, 1000, 200, 200)]) == (500, 0, 3500, 3000)
    assert square_around(4000, 3000, [(100, 1000, 200, 200)]) == (0, 0, 3000, 3000)      # clamped left


def test_portrait_leaves_head_room_above_the_face():
    left, top, right, bottom = square_around(3000, 4000, [(1400, 2000, 200, 200)])
    assert (left, right) == (0, 3000)
    face_centre = 2100
    assert face_centre - top == pytest.approx(FACE_ROW * 3000, abs=2)   # face 40 % down the square
    assert 2000 - top >= 100                                               # at least half a face above


def test_a_group_too_wide_for_the_square_follows_the_largest_face():
    faces = [(100, 100, 100, 100), (3700, 100, 250, 250)]
    left, _, right, _ = square_around(4000, 1000, faces)
    assert left <= 3700 and right >= 3950


def test_detects_the_real_face_in_the_astronaut_photo():
    faces = detect_faces(Image.fromarray(photos.astronaut()))
    assert len(faces) == 1
    x, y, right, bottom = faces[0].box
    w = right - x
    assert abs((x + w / 2) / 512 - photos.ASTRONAUT_FACE_X) < 0.03
    assert 60 < w < 140


@pytest.mark.parametrize("seed", range(100, 110))
def test_no_face_in_textured_scenes(seed):
    assert detect_faces(Image.fromarray(photos.scene(1200, 900, seed))) == []


def test_face_mode_moves_the_square_to_the_face_and_says_when_it_falls_back():
    wide = Image.fromarray(photos.face_off_centre(2400, 800, face_x=0.25))
    crop = choose_crop(wide, "face", detect_faces(wide))
    expected_left = photos.astronaut_face_centre_x(800, 0.25 * 2400) - 400
    assert crop.faces == 1 and not crop.fell_back
    assert abs(crop.box[0] - expected_left) <= 30
    assert crop.box[2] - crop.box[0] == 800 and crop.box[1] == 0

    scene = Image.fromarray(photos.scene(1200, 900, 4))
    none = choose_crop(scene, "face", detect_faces(scene))
    assert none.fell_back and none.box == centre_square(1200, 900)


def test_center_and_none_modes():
    img = Image.fromarray(np.zeros((900, 1200, 3), np.uint8))
    assert choose_crop(img, "center").box == (150, 0, 1050, 900)
    assert choose_crop(img, "none").box == (0, 0, 1200, 900)
    with pytest.raises(ValueError):
        choose_crop(img, "zoom")

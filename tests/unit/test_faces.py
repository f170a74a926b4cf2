"""The pack's one face detector on real faces (photos shipped by registry packages, see tools/real_faces.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tools import real_faces
from likeness.identity import detect_faces
from likeness.identity.faces import DETECT_SIDE


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "Tom_Hanks_54745.png"])
def test_one_face_in_a_portrait_with_its_landmarks_inside_the_box(name):
    faces = detect_faces(real_faces.image(name))
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert all(left <= x <= right and top <= y <= bottom for x, y in faces[0].landmarks)
    (rx_out, _), (rx_in, _), (lx_out, _), (lx_in, _), (nose_x, nose_y) = faces[0].landmarks
    assert lx_out < lx_in < nose_x < rx_in < rx_out          # dlib's order: image-right eye, image-left eye, nose
    assert nose_y > max(y for _, y in faces[0].landmarks[:4])
    assert faces[0].confidence > 0


def test_faces_are_given_in_the_original_pixels():
    photo = real_faces.image("obama.jpg")
    big = photo.resize((photo.width * 3, photo.height * 3), Image.BICUBIC)   # detected on a 640 px copy
    small, large = detect_faces(photo)[0], detect_faces(big)[0]
    assert np.allclose(np.array(large.box) / 3, small.box, atol=12)
    assert np.allclose(np.array(large.landmarks) / 3, small.landmarks, atol=6)


def test_a_group_photo_has_several_faces_and_a_scene_none():
    assert len(detect_faces(real_faces.image(real_faces.GROUP))) >= 3
    assert detect_faces(real_faces.scene_without_face()) == []


def test_a_small_face_in_a_large_photo_is_found_on_the_second_look():
    face = real_faces.image("obama.jpg").crop((300, 80, 700, 480)).resize((480, 480), Image.BICUBIC)
    canvas = real_faces.scene_without_face(4000, 3000)
    canvas.paste(face, (2600, 900))          # a 300 px face: ~45 px on the 640 px copy, too small for HOG there
    found = detect_faces(canvas)
    assert len(found) == 1 and 2600 <= found[0].box[0] < found[0].box[2] <= 3080
    assert max(canvas.size) / DETECT_SIDE * 70 > found[0].width    # the first look alone could not see it


def test_comfy_float_images_and_grey_images_are_accepted():
    photo = real_faces.image("obama2.jpg")
    from_float = detect_faces(np.asarray(photo, np.float32) / 255.0)
    from_grey = detect_faces(photo.convert("L"))
    assert from_float == detect_faces(photo) and len(from_grey) == 1


def test_a_background_face_half_the_size_is_dropped():
    photo = real_faces.image("obama.jpg")
    canvas = Image.new("RGB", (1400, 1137), (90, 90, 90))
    canvas.paste(photo, (0, 0))
    canvas.paste(photo.resize((photo.width // 3, photo.height // 3)), (1000, 500))
    assert len(detect_faces(canvas)) == 1

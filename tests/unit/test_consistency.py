"""A set of one person's photos: a stranger, crowd and faceless photos, and same-shot copies are named."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageOps

from tools import real_faces
from likeness.identity import EmbeddingCache, check_one_person, load_backend


@pytest.fixture(scope="module")
def backend():
    return load_backend("dlib")


def _photo_faces(images: dict, backend):
    cache = EmbeddingCache(None, backend.name)
    return [cache.photo_face(Path(name), backend, image=img, sha256=name) for name, img in images.items()]


def test_a_different_person_slipped_into_the_set_is_the_one_flagged(backend):
    images = {n: real_faces.image(n) for n in (*real_faces.OBAMA, "obama_partial_face.jpg",
                                               "obama_partial_face2.jpg", "biden.jpg")}
    check = check_one_person(_photo_faces(images, backend), backend)
    assert [name for name, _ in check.outliers] == ["biden.jpg"]
    assert check.outliers[0][1] > backend.same_person_below
    warning = check.warnings()[0]
    assert warning.startswith("biden.jpg: the face does not match the others")


def test_crowd_faceless_and_same_shot_photos_are_named(backend):
    images = {n: real_faces.image(n) for n in real_faces.OBAMA}
    images["mirrored.jpg"] = ImageOps.mirror(images["obama.jpg"])
    images["group.jpg"] = real_faces.image(real_faces.GROUP)
    images["scene.jpg"] = real_faces.scene_without_face()
    check = check_one_person(_photo_faces(images, backend), backend)
    assert check.outliers == []
    assert check.no_face == ["scene.jpg"] and check.several_faces[0][0] == "group.jpg"
    assert [(a, b) for a, b, _ in check.near_identical] == [("obama.jpg", "mirrored.jpg")]
    text = "\n".join(check.warnings())
    assert "group.jpg shows" in text and "no face found in scene.jpg" in text
    assert "obama.jpg and mirrored.jpg show the same face almost exactly" in text
    # what another check already reported is not said twice
    quiet = check.warnings(faceless_reported={"scene.jpg"}, duplicate_pairs={("mirrored.jpg", "obama.jpg")})
    assert "scene.jpg" not in "\n".join(quiet) and "mirrored" not in "\n".join(quiet)


def test_two_faces_are_too_few_to_call_either_a_stranger(backend):
    images = {"obama.jpg": real_faces.image("obama.jpg"), "biden.jpg": real_faces.image("biden.jpg")}
    assert check_one_person(_photo_faces(images, backend), backend).outliers == []

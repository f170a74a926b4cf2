"""Embedding backends: dlib by default, ArcFace (ONNX) when its models are in ComfyUI's models/insightface."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from tools import real_faces
from harness.tiny_arcface import expected_output, write_tiny_arcface
from likeness.errors import InputError
from likeness.identity import detect_faces, load_backend
from likeness.identity.backends import ARCFACE_TEMPLATE_DLIB5, arcface_chip


@pytest.fixture(scope="module")
def dlib_backend():
    return load_backend("dlib")


def _embed(backend, image):
    return backend.embed(image, detect_faces(image)[0])


def test_dlib_puts_every_same_person_pair_closer_than_every_different_person_pair(dlib_backend):
    obama = [_embed(dlib_backend, real_faces.image(n)) for n in real_faces.OBAMA]
    others = [_embed(dlib_backend, real_faces.image(n)) for n in ("biden.jpg", "Tom_Hanks_54745.png")]
    others.append(_embed(dlib_backend, real_faces.astronaut()))
    same = [dlib_backend.distance(a, b) for a, b in itertools.combinations(obama, 2)]
    different = [dlib_backend.distance(a, b) for a in obama for b in others]
    different += [dlib_backend.distance(a, b) for a, b in itertools.combinations(others, 2)]
    assert max(same) < dlib_backend.same_person_below < min(different)


def test_dlib_embedding_does_not_depend_on_the_photo_size(dlib_backend):
    photo = real_faces.image("obama2.jpg")
    big = photo.resize((photo.width * 4, photo.height * 4), Image.BICUBIC)   # a 2500 × 4800 photo
    assert dlib_backend.distance(_embed(dlib_backend, photo), _embed(dlib_backend, big)) < 0.1


def test_auto_is_dlib_without_arcface_models(tmp_path):
    assert load_backend("auto", tmp_path).name == "dlib"
    assert load_backend("auto", None).name == "dlib"


@pytest.mark.parametrize("layout", ["insightface/buffalo_l/w600k_r50.onnx",
                                    "insightface/models/antelopev2/glintr100.onnx"])
def test_auto_uses_arcface_where_the_face_packs_keep_it(tmp_path, layout):
    write_tiny_arcface(tmp_path / layout)
    backend = load_backend("auto", tmp_path)
    assert backend.name == "arcface-" + layout.rsplit("/", 1)[1].removesuffix(".onnx")
    assert load_backend("dlib", tmp_path).name == "dlib"       # the widget can still force dlib


def test_forcing_arcface_without_its_models_says_where_to_put_them(tmp_path):
    with pytest.raises(InputError, match="antelopev2 or buffalo_l"):
        load_backend("arcface", tmp_path)
    with pytest.raises(InputError, match="Unknown face backend"):
        load_backend("facenet", tmp_path)


def test_arcface_feeds_the_model_the_aligned_normalised_rgb_chip(tmp_path):
    from skimage.transform import SimilarityTransform, warp

    backend = load_backend("arcface", write_tiny_arcface(tmp_path / "insightface/buffalo_l/w600k_r50.onnx")
                           .parents[2])
    photo = real_faces.image("obama.jpg")
    face = detect_faces(photo)[0]
    vector = backend.embed(photo, face)
    assert vector.shape == (512,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    # the same chip made independently: skimage's similarity estimate and warp on the full photo
    transform = SimilarityTransform.from_estimate(np.asarray(face.landmarks), ARCFACE_TEMPLATE_DLIB5)
    chip = warp(np.asarray(photo), transform.inverse, output_shape=(112, 112), preserve_range=True)
    expected = expected_output(chip.astype(np.uint8))
    assert float(np.dot(vector, expected / np.linalg.norm(expected))) > 0.99


def test_the_arcface_chip_puts_the_face_on_the_template():
    photo = real_faces.image("biden.jpg")
    chip = arcface_chip(photo, detect_faces(photo)[0])
    found = detect_faces(chip)                       # the pack's detector, run again on the 112 px chip
    assert len(found) == 1
    assert np.abs(np.asarray(found[0].landmarks) - ARCFACE_TEMPLATE_DLIB5).max() < 6


def test_a_damaged_arcface_model_is_named_and_auto_falls_back_to_dlib(tmp_path):
    broken = tmp_path / "insightface" / "antelopev2" / "glintr100.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an onnx model, a half-finished download")
    with pytest.raises(InputError, match="cannot load .*glintr100.onnx.*download it again"):
        load_backend("arcface", tmp_path)
    assert load_backend("auto", tmp_path).name == "dlib"

"""dlib's face recognition ResNet run in torch: the same numbers as dlib's own descriptor, on real faces."""
from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from tools import real_faces
from harness.comfy_server import REPO
from likeness.identity import detect_faces, load_backend
from likeness.identity import dlib_resnet
from likeness.identity.backends import face_patch
from likeness.identity.dlib_resnet import DlibResnet, ModelFileError, network_if_it_matches, read_dlib_resnet
from likeness.identity.faces import RECOGNITION_MODEL, model_file

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg",
          "biden.jpg", "Tom_Hanks_54745.png", real_faces.GROUP)


@pytest.fixture(scope="module")
def dlib_model():
    import dlib

    return dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))


@pytest.fixture(scope="module")
def network():
    return DlibResnet(read_dlib_resnet(model_file(RECOGNITION_MODEL)))


@pytest.fixture(scope="module")
def chips():
    """dlib's own 150 px chip of every face in the packages' photos (the group photo gives six), and the
    astronaut: 15 faces of 8 people."""
    backend = load_backend("dlib")
    images = [real_faces.image(name) for name in PHOTOS] + [real_faces.astronaut()]
    return np.stack([backend.chip(image, face) for image in images for face in detect_faces(image)])


def test_torch_gives_dlibs_descriptor_for_every_real_face(network, dlib_model, chips):
    assert len(chips) >= 14
    theirs = np.asarray([dlib_model.compute_face_descriptor(chip) for chip in chips], np.float32)
    ours = network.embed(chips)                                   # one batch
    assert np.abs(ours - theirs).max() < 1e-4                     # seen: ~5e-7; a wrong layer is off by ~0.1
    for i, j in itertools.combinations(range(len(chips)), 2):     # 105 pairs, same and different people
        d_ours, d_theirs = (np.linalg.norm(v[i] - v[j]) for v in (ours, theirs))
        assert abs(d_ours - d_theirs) < 1e-4
        assert (d_ours < 0.6) == (d_theirs < 0.6)


def test_a_batch_gives_what_one_chip_at_a_time_gives(network, chips):
    together = network.embed(chips[:5])
    alone = np.concatenate([network.embed(chip[None]) for chip in chips[:5]])
    assert np.abs(together - alone).max() < 1e-5


def test_the_backend_chip_is_the_one_dlib_cuts_itself(dlib_model):
    """Embeddings cached before the torch port came from compute_face_descriptor(photo, landmarks): the
    backend's chip must give dlib exactly the same numbers, so those cached embeddings stay valid."""
    import dlib

    backend = load_backend("dlib")
    for name in ("obama.jpg", "biden.jpg"):
        image = real_faces.image(name)
        face = detect_faces(image)[0]
        patch, moved = face_patch(image, face, face_side=160)
        shape = dlib.full_object_detection(dlib.rectangle(*moved.box),
                                           [dlib.point(round(x), round(y)) for x, y in moved.landmarks])
        direct = np.asarray(dlib_model.compute_face_descriptor(patch, shape), np.float32)
        assert np.array_equal(direct, np.asarray(dlib_model.compute_face_descriptor(backend.chip(image, face))))


def test_the_default_backend_runs_the_network_in_torch_and_says_so():
    backend = load_backend("dlib")
    assert backend.name == "dlib"                                 # the same numbers: references stay comparable
    assert backend.description.startswith("dlib's face ResNet in torch, within ")


def test_a_network_that_drifts_from_dlib_is_not_used(dlib_model, monkeypatch):
    monkeypatch.setattr(dlib_resnet, "PARITY_TOLERANCE", 0.0)    # no gap passes: as if torch drifted
    network, description = network_if_it_matches(model_file(RECOGNITION_MODEL), dlib_model)
    assert network is None and description.startswith("dlib's face ResNet in dlib (torch was ")


def test_without_torch_dlib_computes_the_same_embeddings(tmp_path):
    script = """
import sys
sys.modules["torch"] = None                     # as if torch were not installed
import numpy as np
from tools import real_faces
from likeness.identity import detect_faces, load_backend
backend = load_backend("dlib")
image = real_faces.image("obama.jpg")
np.save(sys.argv[1], backend.embed(image, detect_faces(image)[0]))
print(backend.description)
"""
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "e.npy")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "dlib's face ResNet in dlib (torch is not installed)"
    image = real_faces.image("obama.jpg")
    in_torch = load_backend("dlib").embed(image, detect_faces(image)[0])
    assert np.abs(np.load(tmp_path / "e.npy") - in_torch).max() < 1e-4


def test_another_file_is_refused_not_misread(tmp_path):
    with pytest.raises(ModelFileError):
        read_dlib_resnet(model_file("shape_predictor_5_face_landmarks.dat"))
    data = model_file(RECOGNITION_MODEL).read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match="ends early"):
        read_dlib_resnet(tmp_path / "cut.dat")
    (tmp_path / "longer.dat").write_bytes(data + b"\0")
    with pytest.raises(ModelFileError, match="bytes left"):
        read_dlib_resnet(tmp_path / "longer.dat")

"""The loader's identity check on real faces: a stranger, a crowd and a same-moment copy are in the report."""
from __future__ import annotations

import shutil

import pytest

from tools import real_faces
from likeness.dataset.dataset_prep import prepare_dataset
from likeness.identity import load_backend, reference_from_photos

ONE_PERSON = (*real_faces.OBAMA, "obama_partial_face.jpg", "obama_partial_face2.jpg")


@pytest.fixture
def roots(tmp_path):
    src = tmp_path / "input" / "photos"
    src.mkdir(parents=True)
    for name in ONE_PERSON:
        shutil.copy(real_faces.faces_dir() / name, src / name)
    return tmp_path / "input", tmp_path / "output", tmp_path / "identity-cache"


def prep(roots, **kw):
    kw.setdefault("crop", "face")
    return prepare_dataset("photos", "pelarbues", size=512, input_root=roots[0], output_root=roots[1],
                           identity_cache=roots[2], **kw)


def test_a_friend_in_the_set_is_named_before_anything_is_captioned(roots):
    shutil.copy(real_faces.faces_dir() / "biden.jpg", roots[0] / "photos" / "friend.jpg")
    report = prep(roots).report
    assert "Identity check (dlib, 6 faces): 1 photo may show someone else" in report.identity
    flagged = [w for w in report.warnings if "does not match the others" in w]
    assert len(flagged) == 1 and flagged[0].startswith("friend.jpg:")
    assert report.identity in report.text()


def test_one_person_passes_and_a_rerun_embeds_nothing(roots):
    first = prep(roots).report
    assert first.identity == "Identity check (dlib, 5 faces): one person; embedded 5, reused 0."
    assert not any("does not match" in w for w in first.warnings)
    (roots[0] / "photos" / "obama.jpg").touch()               # the loader re-makes one photo, same pixels
    again = prep(roots).report
    assert again.identity.endswith("embedded 0, reused 5.")


def test_the_score_node_reference_reuses_the_loaders_embeddings(roots):
    dataset = prep(roots).dataset
    reference = reference_from_photos(dataset, load_backend("dlib"), roots[2])
    assert (reference.embedded, reference.reused) == (0, 5)


def test_a_crowd_and_a_mirrored_copy_are_reported(roots):
    src = roots[0] / "photos"
    shutil.copy(real_faces.faces_dir() / real_faces.GROUP, src / "party.jpg")
    real_faces.image("obama2.jpg").crop((60, 150, 560, 750)).save(src / "obama2_closer.jpg", quality=95)
    text = "\n".join(prep(roots, crop="none").report.warnings)
    assert "party.jpg shows" in text and "faces: the LoRA learns every face" in text
    assert "obama2.jpg and obama2_closer.jpg show the same face almost exactly" in text
    assert "look like the same shot" not in text      # the perceptual hash does not see a re-framed copy


def test_without_the_check_there_is_no_identity_line(roots):
    report = prep(roots, check_identity=False).report
    assert report.identity == "" and "Identity check" not in report.text()


def test_without_dlib_face_crop_says_what_to_install_and_centre_crop_goes_on(roots):
    import subprocess
    import sys
    import textwrap

    from harness.comfy_server import REPO

    script = textwrap.dedent(f"""
        import sys
        sys.modules["dlib"] = None          # as if dlib were not installed
        from likeness.dataset.dataset_prep import prepare_dataset
        from likeness.errors import InputError
        args = dict(size=256, input_root={str(roots[0])!r}, output_root={str(roots[1])!r})
        try:
            prepare_dataset("photos", "pelarbues", crop="face", **args)
        except InputError as exc:
            print("FACE:", exc)
        print("CENTER:", prepare_dataset("photos", "pelarbues", crop="center", **args).report.identity)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "FACE: Face detection needs dlib: install it" in run.stdout and "pip install dlib-bin" in run.stdout
    assert "or choose crop 'center'" in run.stdout
    assert "CENTER: Identity check skipped: Face detection needs dlib" in run.stdout

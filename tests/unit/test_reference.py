"""The reference identity of a set of photos: embedded once per backend, cached, portable as a small dict."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from tools import real_faces
from likeness.errors import InputError
from likeness.identity import ReferenceIdentity, load_backend, reference_from_photos


@pytest.fixture(scope="module")
def backend():
    return load_backend("dlib")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in real_faces.OBAMA:
        shutil.copy(real_faces.faces_dir() / name, folder / name)
    return folder


def test_a_second_run_embeds_nothing_and_a_new_photo_only_itself(photos, tmp_path, backend):
    cache = tmp_path / "cache"
    first = reference_from_photos(photos, backend, cache)
    again = reference_from_photos(photos, backend, cache)
    assert (first.embedded, first.reused) == (3, 0)
    assert (again.embedded, again.reused) == (0, 3)
    assert np.array_equal(first.embeddings, again.embeddings) and first.content_hash == again.content_hash
    shutil.copy(real_faces.faces_dir() / "obama_partial_face.jpg", photos / "obama4.jpg")
    grown = reference_from_photos(photos, backend, cache)
    assert (grown.embedded, grown.reused) == (1, 3) and grown.content_hash != first.content_hash


def test_a_prepared_dataset_or_a_list_of_files_works_like_a_folder(photos, backend):
    @dataclass
    class Item:
        image: str

    @dataclass
    class Set:
        folder: str
        items: tuple

    from_set = reference_from_photos(Set(str(photos), tuple(Item(n) for n in real_faces.OBAMA)), backend)
    from_list = reference_from_photos([photos / n for n in real_faces.OBAMA], backend)
    assert from_set.names == from_list.names == list(real_faces.OBAMA)
    assert np.allclose(from_set.embeddings, from_list.embeddings)


def test_the_reference_has_a_centroid_and_the_spread_of_one_person(photos, backend):
    reference = reference_from_photos(photos, backend)
    assert reference.embeddings.shape == (3, 128) and reference.centroid.shape == (128,)
    assert 0.2 < reference.spread < backend.same_person_below


def test_photos_without_one_clear_face_are_left_out_with_the_reason(photos, backend):
    real_faces.scene_without_face().save(photos / "scene.jpg")
    shutil.copy(real_faces.faces_dir() / real_faces.GROUP, photos / "group.jpg")
    reference = reference_from_photos(photos, backend)
    assert reference.names == list(real_faces.OBAMA)
    assert reference.skipped["scene.jpg"] == "no face"
    assert reference.skipped["group.jpg"].startswith("several faces")


def test_no_usable_photo_is_an_error_that_says_why(tmp_path, backend):
    (tmp_path / "p").mkdir()
    real_faces.scene_without_face().save(tmp_path / "p" / "scene.jpg")
    with pytest.raises(InputError, match="scene.jpg: no face"):
        reference_from_photos(tmp_path / "p", backend)
    with pytest.raises(InputError, match="not found"):
        reference_from_photos(tmp_path / "missing", backend)


def test_the_dict_form_is_small_json_and_reads_back_exactly(photos, backend):
    reference = reference_from_photos(photos, backend)
    text = json.dumps(reference.to_dict())
    assert len(text) < 3 * 1024
    back = ReferenceIdentity.from_dict(json.loads(text))
    assert np.array_equal(back.embeddings, reference.embeddings)
    assert (back.backend, back.names, back.content_hash) == ("dlib", reference.names, reference.content_hash)
    with pytest.raises(InputError, match="damaged"):
        ReferenceIdentity.from_dict({**reference.to_dict(), "embeddings": "AAAA"})


def test_a_file_that_is_not_an_image_is_named_not_a_traceback(photos, tmp_path, backend):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"broken\.jpg cannot be used as a photo \(not a readable image.*replace or remove it"):
        reference_from_photos(photos, backend, tmp_path / "cache")


def test_a_photo_stored_sideways_with_an_exif_rotation_is_read_upright(photos, backend):
    """Phones store portraits sideways with an EXIF orientation: read as stored, the face lies on its side."""
    from PIL import Image

    name = real_faces.OBAMA[0]
    upright = reference_from_photos([photos / name], backend)
    with Image.open(photos / name) as img:
        sideways = img.convert("RGB").rotate(90, expand=True)      # what a phone stores, turned back by tag 6
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(photos / "sideways.jpg", quality=95, exif=exif)
    turned = reference_from_photos([photos / "sideways.jpg"], backend)
    assert turned.embeddings.shape == (1, 128)
    assert float(np.linalg.norm(turned.embeddings[0] - upright.embeddings[0])) < 0.2

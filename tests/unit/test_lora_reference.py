"""The training photos' face reference in the personal LoRA's metadata: stored at install (real faces, the fake
Replicate), usable without the photos, added to a LoRA installed before the pack stored it, and the records that
know the file by its sha256 follow the rewritten file."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from harness.progress import RecordingProgress
from likeness.dataset import Dataset, DatasetItem
from likeness.identity import load_backend, reference_from_photos, score_images
from likeness.loras.lora_identity import REFERENCE_KEY, stored_reference
from likeness.loras.sweep_results import SweepRecord, SweepResults
from likeness.storage import sha256_file
from likeness.training.lora_install import read_header
from likeness.training.lora_reference import attach_reference, training_reference
from likeness.training.training import PollSettings, TrainingSettings, train_lora
from likeness.training.training_ledger import TrainingLedger
from tools import real_faces

FAST = PollSettings(interval=0.001, check_every=0.001)
CREATE = r"/versions/[0-9a-f]+/trainings$"
WEIGHTS = r"trained_model[.]tar$"


@pytest.fixture
def faces_dataset(tmp_path) -> Dataset:
    """Three captioned photos of one real person, as the dataset loader leaves them."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    items = []
    for i, name in enumerate(real_faces.OBAMA):
        photo = folder / f"{i:03d}.jpg"
        shutil.copy(real_faces.faces_dir() / name, photo)
        photo.with_suffix(".txt").write_text(f"pelarbues, a man at a podium, photo {i}", encoding="utf-8")
        items.append(DatasetItem(photo.name, sha256_file(photo), str(photo), f"pelarbues, photo {i}"))
    return Dataset(str(folder), "pelarbues", tuple(items))


@pytest.fixture
def train(replicate_api, tmp_path):
    def go(dataset, progress=None):
        return train_lora(dataset, TrainingSettings(destination="likeness-tester/pelarbues"),
                          user_dir=tmp_path / "user", loras_dir=tmp_path / "loras",
                          progress=progress or RecordingProgress(), api=replicate_api, poll=FAST)
    return go


def without_reference(path: Path) -> None:
    """Rewrites the LoRA as the pack installed it before it stored references (no such metadata entry)."""
    header, start = read_header(path)
    header["__metadata__"].pop(REFERENCE_KEY)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    data = path.read_bytes()[start:]
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_the_installed_lora_carries_its_photos_reference_and_scores_without_them(replicate_fake, train,
                                                                                 faces_dataset, tmp_path):
    record = train(faces_dataset)
    stored = stored_reference(record.lora_path)
    assert stored is not None and stored.backend == "dlib" and stored.names == ["000.jpg", "001.jpg", "002.jpg"]
    backend = load_backend("dlib")
    made_here = reference_from_photos(faces_dataset, backend)
    assert stored.content_hash == made_here.content_hash
    assert "Stored the face reference of 3 training photo(s) (dlib)" in record.note

    # on another machine: the LoRA file alone, no photos, no embedding cache
    moved = tmp_path / "elsewhere" / "pelarbues.safetensors"
    moved.parent.mkdir()
    shutil.copy(record.lora_path, moved)
    shutil.rmtree(faces_dataset.folder)
    same, other = score_images([real_faces.image("obama.jpg"), real_faces.image("biden.jpg")],
                               stored_reference(moved), backend)
    assert same.likeness > 50 > other.likeness


def test_a_set_without_a_clear_face_is_installed_without_a_reference_and_says_why(replicate_fake, train,
                                                                                   make_dataset):
    record = train(make_dataset(3))
    assert Path(record.lora_path).is_file() and stored_reference(record.lora_path) is None
    assert "No face reference was stored in the LoRA (None of the 3 reference photos shows one clear face" \
           in record.note


def test_queuing_the_trainer_again_stores_the_reference_in_a_lora_installed_before(replicate_fake, train,
                                                                                    faces_dataset, tmp_path):
    user = tmp_path / "user"
    first = train(faces_dataset)
    path = Path(first.lora_path)
    tensors = load_file(path)
    without_reference(path)                                  # as the pack installed it before
    old_sha = sha256_file(path)
    TrainingLedger(user).relink_lora(_ledger_sha(user), old_sha)          # the ledger knew that file
    style = "b" * 64
    SweepResults(user).add(SweepRecord("sweep1", "pelarbues.safetensors", old_sha, "film.safetensors", style,
                                       [0.9], [0.2], [[70.0]], 0.9, 0.2, 70.0, 72.0, 5.0, "keep 0.9 / 0.2"))
    assert stored_reference(path) is None
    creates, downloads = replicate_fake.count("POST", CREATE), replicate_fake.count("GET", WEIGHTS)

    again = train(faces_dataset)
    assert again.reused and again.lora_path == first.lora_path
    assert (replicate_fake.count("POST", CREATE), replicate_fake.count("GET", WEIGHTS)) == (creates, downloads), \
        "no new training, and the LoRA is not downloaded again"
    assert stored_reference(path).names == ["000.jpg", "001.jpg", "002.jpg"]
    assert "Stored the face reference" in again.note
    new_sha = sha256_file(path)
    assert new_sha != old_sha and _ledger_sha(user) == new_sha
    assert {k: v.tobytes() for k, v in load_file(path).items()} == {k: v.tobytes() for k, v in tensors.items()}
    assert SweepResults(user).newest(new_sha, style).id == "sweep1", "the stack's measured mode keeps its sweep"

    third = train(faces_dataset)
    assert third.reused and sha256_file(path) == new_sha
    assert third.note.count("Stored the face reference") == again.note.count("Stored the face reference") - 1


def test_attaching_the_same_reference_twice_writes_once(replicate_fake, train, faces_dataset, tmp_path):
    record = train(faces_dataset)
    path = Path(record.lora_path)
    without_reference(path)
    reference = training_reference(faces_dataset, tmp_path / "user")
    assert (reference.embedded, reference.reused) == (0, 3), "the install embedded them already: cached"
    assert attach_reference(path, reference, tmp_path / "user") is True
    written = sha256_file(path)
    assert attach_reference(path, reference, tmp_path / "user") is False and sha256_file(path) == written
    assert not list(path.parent.glob(".*likeness-reference")), "no partial file left behind"


def _ledger_sha(user: Path) -> str:
    (entry,) = TrainingLedger(user).entries()
    return entry["lora_sha256"]

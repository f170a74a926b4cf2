"""The live training status: what train_lora reports as it goes, and the board that keeps it across reloads."""
from __future__ import annotations

import json

import pytest
import replicate

from likeness.errors import ServiceError
from likeness.progress import SilentProgress
from likeness.cloud.replicate_client import ReplicateApi
from likeness.training.training import PollSettings, TrainingSettings, train_lora
from likeness.training.training_status import KEEP, StatusBoard, status_board

FAST = PollSettings(interval=0.001, check_every=0.001)
DEST = "likeness-tester/pelarbues"


@pytest.fixture
def train(replicate_fake, tmp_path):
    api = ReplicateApi(replicate.Client(api_token=replicate_fake.token, base_url=replicate_fake.url),
                       sleep=lambda s: None)

    def go(dataset, statuses, progress=None):
        return train_lora(dataset, TrainingSettings(destination=DEST), user_dir=tmp_path / "user",
                          loras_dir=tmp_path / "loras", progress=progress or SilentProgress(), api=api, poll=FAST,
                          status=statuses.append)
    return go


def test_a_training_reports_each_phase_with_steps_costs_and_its_page(replicate_fake, train, make_dataset):
    replicate_fake.plan_next(ticks=8)
    statuses: list[dict] = []
    record = train(make_dataset(3), statuses)
    phases = [s["phase"] for s in statuses]
    assert phases[:3] == ["estimating", "uploading", "starting"]
    assert phases[-2:] == ["downloading", "succeeded"]
    assert "processing" in phases
    steps = [s["step"] for s in statuses if s["phase"] == "processing"]
    assert steps == sorted(steps) and 0 < max(steps) <= 120 and len(set(steps)) >= 2
    assert all(s["total"] == 120 for s in statuses if s["phase"] == "processing")
    assert statuses[0]["estimated_usd"] > 0 and statuses[0]["cost_usd"] is None
    last = statuses[-1]
    assert last["ended"] is True and last["percent"] == 100
    assert last["training_id"] == record.id and last["web_url"].endswith(f"/p/{record.id}")
    assert last["cost_usd"] == pytest.approx(record.cost_usd) and last["lora_file"] == record.lora_file
    assert all(a != b for a, b in zip(statuses, statuses[1:])), "only changes are reported"
    json.dumps(statuses)                                   # what the node sends as a server event


def test_requeue_reports_reused_without_a_new_training(replicate_fake, train, make_dataset):
    dataset = make_dataset(3)
    train(dataset, [])
    statuses: list[dict] = []
    record = train(dataset, statuses)
    assert [s["phase"] for s in statuses] == ["reused"]
    assert statuses[0]["training_id"] == record.id and statuses[0]["cost_usd"] == pytest.approx(record.cost_usd)
    assert replicate_fake.count("POST", r"/trainings$") == 1


def test_a_failed_training_reports_failed_with_the_error_and_cost(replicate_fake, train, make_dataset):
    replicate_fake.plan_next(outcome="failed", error="CUDA out of memory")
    statuses: list[dict] = []
    with pytest.raises(ServiceError):
        train(make_dataset(3), statuses)
    assert statuses[-1]["phase"] == "failed" and "CUDA out of memory" in statuses[-1]["message"]
    assert statuses[-1]["cost_usd"] is not None and statuses[-1]["ended"] is True


def test_a_broken_status_display_does_not_stop_the_training(replicate_fake, train, make_dataset):
    class Broken(list):
        def append(self, item):
            raise RuntimeError("display crashed")

    record = train(make_dataset(3), Broken())
    assert record.lora_file and replicate_fake.count("POST", r"/trainings$") == 1


def test_the_board_keeps_the_latest_status_per_node_on_disk(tmp_path):
    board = StatusBoard(tmp_path / "training_status.json")
    board.update("7", {"phase": "processing", "step": 10})
    board.update("7", {"phase": "processing", "step": 20})
    board.update("9", {"phase": "starting"})
    again = StatusBoard(tmp_path / "training_status.json")          # a ComfyUI restart
    assert again.get("7")["step"] == 20 and again.get("9")["phase"] == "starting"
    assert set(again.all()) == {"7", "9"}


def test_the_board_keeps_only_the_newest_entries(tmp_path):
    board = StatusBoard(tmp_path / "s.json")
    for n in range(KEEP + 5):
        board.update(str(n), {"phase": "starting"})
    kept = board.all()
    assert len(kept) == KEEP and str(KEEP + 4) in kept and "0" not in kept


def test_one_board_per_user_folder(tmp_path):
    assert status_board(tmp_path) is status_board(tmp_path / ".")
    assert status_board(tmp_path) is not status_board(tmp_path / "other")

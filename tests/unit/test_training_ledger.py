"""The training ledger: identity of a training, and entries that survive a restart."""
from __future__ import annotations

import json

from likeness.training.training_ledger import TrainingLedger, training_identity

INPUTS = {"steps": 1040, "lora_rank": 32, "trigger_word": "pelarbues"}


def test_identity_ignores_the_upload_url_and_key_order_but_not_the_work():
    base = training_identity("d1", INPUTS, "me/face", "")
    assert training_identity("d1", {**INPUTS, "input_images": "https://x/1"}, "me/face", "") == base
    assert training_identity("d1", dict(reversed(list(INPUTS.items()))), "ME/face", "") == base
    assert training_identity("d2", INPUTS, "me/face", "") != base
    assert training_identity("d1", {**INPUTS, "steps": 1000}, "me/face", "") != base
    assert training_identity("d1", INPUTS, "me/other", "") != base
    assert training_identity("d1", INPUTS, "me/face", "a" * 64) != base


def test_entries_are_merged_saved_and_found_by_training_id(tmp_path):
    ledger = TrainingLedger(tmp_path)
    ledger.update("k1", status="creating", input_images="https://x/1")
    ledger.update("k1", status="processing", training_id="abc")
    reopened = TrainingLedger(tmp_path)                     # a new process reads the same file
    entry = reopened.get("k1")
    assert entry["status"] == "processing" and entry["input_images"] == "https://x/1"
    assert reopened.find("abc")["identity"] == "k1" and reopened.find("zzz") is None
    assert json.loads((tmp_path / "trainings.json").read_text())["k1"]["training_id"] == "abc"
    assert [e["identity"] for e in reopened.entries()] == ["k1"]


def test_a_missing_ledger_is_empty(tmp_path):
    assert TrainingLedger(tmp_path).get("nope") is None
    assert TrainingLedger(tmp_path).entries() == []

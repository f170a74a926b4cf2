"""train_lora's RunOptions, the hooks a caller running several trainings (the battery) uses: the LoRA's file
name and extra metadata, the budget checked by the caller, and inputs sent only with the create call."""
from __future__ import annotations

import json

import pytest

from likeness.errors import BudgetError
from likeness.loras.lora_formats import read_header
from likeness.training.training import PollSettings, RunOptions, TrainingSettings, train_lora
from likeness.training.training_ledger import TrainingLedger

FAST = PollSettings(interval=0.001, check_every=0.001)
DEST = "likeness-tester/pelarbues"


@pytest.fixture
def train(replicate_api, tmp_path):
    def go(dataset, options=None, status=None, **settings):
        return train_lora(dataset, TrainingSettings(DEST, **settings), user_dir=tmp_path / "user",
                          loras_dir=tmp_path / "loras", api=replicate_api, poll=FAST, status=status,
                          options=options)
    return go


def test_the_lora_gets_the_callers_name_and_metadata(replicate_fake, train, make_dataset):
    record = train(make_dataset(3), RunOptions(lora_name="pelarbues-rank16",
                                               lora_metadata={"likeness_battery_variant": {"lora_rank": 16}}))
    assert record.lora_file == "pelarbues-rank16.safetensors"
    metadata = read_header(record.lora_path)[1]
    assert json.loads(metadata["likeness_battery_variant"]) == {"lora_rank": 16}
    assert metadata["likeness_trigger_word"] == "pelarbues"          # the trainer's own metadata stays


def test_the_budget_is_left_to_the_caller_when_it_checked_it(replicate_fake, train, make_dataset, monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.01")
    with pytest.raises(BudgetError):
        train(make_dataset(3))
    assert replicate_fake.count("POST", "/v1/files") == 0
    record = train(make_dataset(3, folder_name="again"), RunOptions(check_budget=False), lora_rank=16)
    assert record.cost_usd > 0.01                                    # it ran: the caller had approved it


def test_create_inputs_reach_replicate_but_not_the_identity_or_the_ledger(replicate_fake, train, make_dataset,
                                                                         tmp_path):
    ds = make_dataset(3)
    monitored = train(ds, RunOptions(create_inputs={"wandb_project": "battery"}))
    assert replicate_fake.training(monitored.id)["input"]["wandb_project"] == "battery"
    assert "wandb_project" not in monitored.inputs
    ledger = json.dumps(TrainingLedger(tmp_path / "user").entries())
    assert "wandb_project" not in ledger
    again = train(ds)                                                # the same LoRA without monitoring
    assert again.reused and again.id == monitored.id


def test_the_status_says_when_replicate_started_running_it(replicate_fake, train, make_dataset):
    seen = []
    train(make_dataset(3), status=seen.append)
    running = [s for s in seen if s["phase"] == "processing"]
    assert running and all(s["started_at"].endswith("Z") for s in running)

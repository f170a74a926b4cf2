"""LikenessTrainingBattery in a real ComfyUI against the fake Replicate: variants trained at once, installed
under their own names, never twice, refused as a whole over the budget, canceled together, re-attached after a
restart."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from conftest import CANARY_TOKEN
from harness import photos
from harness.client import ComfyClient
from harness.restarts import kill_mid_training_and_requeue
from likeness.loras.lora_formats import read_header

CREATE = r"/versions/[0-9a-f]+/trainings$"
OWNER = "likeness-tester"
RANKS = "lora_rank: 16, 32, 64"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def photo_folder(base_dir: Path, trigger: str, count: int = 4) -> str:
    name = unique("battery-photos-")
    photos.photo_set(base_dir / "input" / name, count, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    return name


def workflow(folder: str, trigger: str, destination: str, output_folder: str = "", **battery) -> dict:
    inputs = {"dataset": ["1", 2], "destination": destination,
              "base": "steps_per_image: 40\nlora_rank: 32\nlayers: 7/12/16/20", "variations": RANKS,
              "expand": "one factor at a time", "confirm_large_battery": False, "trainer_version": "",
              "wandb_project": "", **battery}
    return {"1": {"class_type": "LikenessDatasetLoader",
                  "inputs": {"folder": folder, "trigger_word": trigger, "crop": "center", "size": 256,
                             "convert": True, "output_folder": output_folder}},
            "2": {"class_type": "LikenessTrainingBattery", "inputs": inputs}}


def summary(result) -> str:
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == "2":
            return "\n".join((event["data"].get("output") or {}).get("text", []))
    return ""


def spans_overlap(spans: dict) -> bool:
    """Every training was created before any of them ended: they ran at the same time."""
    return max(start for start, _ in spans.values()) < min(end for _, end in spans.values())


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


def test_a_three_variant_battery_trains_them_at_once_and_installs_three_loras(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    for _ in range(3):
        fake.plan_next(stall_at_tick=3)               # none ends before the three were created
    prompt_id = client.queue(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    try:
        fake.wait_for(lambda f: len(f.trainings) == 3, timeout=120)
    finally:
        fake.release()
    result = client.wait(prompt_id)
    assert result.status == "success", result.error_message

    assert fake.count("POST", CREATE) == 3
    assert spans_overlap(fake.training_spans())
    loras = comfy.base_dir / "models" / "loras"
    names = [f"{model}-rank{r}.safetensors" for r in (32, 16, 64)]
    assert all((loras / n).is_file() for n in names)
    listed = client.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert set(names) <= set(listed)
    variants = {json.loads(read_header(loras / n)[1]["likeness_battery"])["variant"] for n in names}
    assert variants == {"base", "lora_rank 16", "lora_rank 64"}
    text = summary(result)
    assert "3 of 3 LoRAs ready" in text and all(n in text for n in names)
    texts = result.texts_for("2")
    assert any("New trainings: about $" in t for t in texts)
    assert any(t.count("Training on Replicate: step") == 3 and "Cost so far about $" in t for t in texts)
    assert result.progress("2")
    # the canvas's status board has a live status per variant, ended with the real cost
    statuses = client.get("/likeness/training/status")["statuses"]
    mine = [s for k, s in statuses.items() if k.startswith("2#") and s.get("lora_name", "").startswith(model)]
    assert sorted(s["label"] for s in mine) == ["base", "lora_rank 16", "lora_rank 64"]
    assert all(s["phase"] == "succeeded" and s["cost_usd"] > 0 for s in mine)
    assert CANARY_TOKEN not in comfy.log_text() + "\n".join(t for _, t in result.texts) + text


def test_queuing_the_battery_again_creates_no_training(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    folder = photo_folder(comfy.base_dir, trigger)
    first = client.run(workflow(folder, trigger, f"{OWNER}/{model}"))
    assert first.status == "success", first.error_message
    again = client.run(workflow(folder, trigger, f"{OWNER}/{model}", output_folder=unique("again-")))
    assert again.status == "success", again.error_message
    assert "2" not in again.cached_nodes()                     # it ran, and found every variant trained
    assert fake.count("POST", CREATE) == 3 and fake.count("POST", "/v1/files") == 3
    assert "0 new, 3 already trained (reused)" in "\n".join(again.texts_for("2"))


def test_a_battery_over_the_budget_creates_nothing_and_says_by_how_much(fresh_comfy, fake):
    server = fresh_comfy(LIKENESS_MONTHLY_BUDGET_USD="1.00")       # one training (~$0.61) fits, three do not
    trigger, model = unique("tok"), unique("face-")
    with ComfyClient(server.url) as client:
        result = client.run(workflow(photo_folder(server.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    assert result.status == "error"
    assert "BudgetError: The battery's 3 new trainings, checked as a whole" in result.error_message
    assert " over): refused before anything was paid" in result.error_message
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_more_than_four_new_trainings_need_the_tick(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    result = client.run(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}",
                                 variations="lora_rank: 8, 16, 32, 64, 128"))
    assert result.status == "error"
    assert "starts 5 new trainings (more than 4)" in result.error_message
    assert fake.count("POST", "/v1/files") == 0


def test_cancel_cancels_every_running_training(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    for _ in range(3):
        fake.plan_next(stall_at_tick=3)
    prompt_id = client.queue(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    client.wait_for_text("2", lambda t: t.count("Training on Replicate: step") == 3, timeout=120)
    client.interrupt()
    result = client.wait(prompt_id)
    assert result.status == "interrupted"
    ids = fake.training_ids()
    assert len(ids) == 3 and {fake.training(i)["status"] for i in ids} == {"canceled"}
    assert fake.count("POST", r"/trainings/[a-z0-9]+/cancel$") == 3
    assert any("3 running training(s) canceled on Replicate" in t for t in result.texts_for("2"))
    assert not list((comfy.base_dir / "models" / "loras").glob(f"{model}*"))


def test_restart_mid_battery_reattaches_to_every_training(fresh_comfy, fake):
    server = fresh_comfy()
    trigger, model = unique("tok"), unique("face-")
    prompt = workflow(photo_folder(server.base_dir, trigger), trigger, f"{OWNER}/{model}")
    ids, result = kill_mid_training_and_requeue(server, fake, prompt, "2", trainings=3)
    assert result.status == "success", result.error_message
    assert sorted(fake.training_ids()) == sorted(ids) and fake.count("POST", CREATE) == 3
    texts = "\n".join(result.texts_for("2"))
    assert "0 new, 3 running (re-attaching)" in texts
    assert all(f"Re-attaching to training {i}" in texts for i in ids)
    assert len(list((server.base_dir / "models" / "loras").glob(f"{model}-rank*.safetensors"))) == 3


def test_a_bad_variations_table_is_refused_when_queued(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    prompt = workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}",
                      variations="lora_rank: 16, sixty-four")
    status, body = client.request("POST", "/prompt", {"prompt": prompt, "client_id": client.client_id})
    if status == 200:                             # the loader alone may still run; the battery never does
        client.wait(body["prompt_id"])
    errors = json.dumps(body.get("node_errors", {}).get("2", {}))
    assert "lora_rank takes whole numbers" in errors, body
    assert fake.count("POST", "/v1/files") == 0


def test_the_plan_route_counts_the_trainings_a_table_makes(comfy, client):
    table = {"base": "", "variations": "lora_rank: 16, 32, 64\nsteps_per_image: 30, 40, 50\nlayers: 7/12/16/20, all"}
    status, body = client.request("POST", "/likeness/battery/plan", {**table, "expand": "one factor at a time"})
    assert status == 200 and body["count"] == 6 and body["labels"][:2] == ["base", "lora_rank 16"]
    assert body["confirm_above"] == 4
    status, body = client.request("POST", "/likeness/battery/plan", {**table, "expand": "full grid"})
    assert status == 200 and body["count"] == 18
    status, body = client.request("POST", "/likeness/battery/plan", {**table, "variations": "rank 16",
                                                                     "expand": "full grid"})
    assert status == 200 and "write a setting and its values" in body["error"]
    for bad in ({"base": ""}, {**table, "expand": 3}, {**table, "expand": "full grid", "extra": ""}):
        assert client.request("POST", "/likeness/battery/plan", bad)[0] == 400

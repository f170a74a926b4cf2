"""Money: the whole pipeline queued twice makes exactly one set of paid calls (counted on both fakes), the spend
ledger holds one entry per paid call, and a monthly budget refuses a paid call before it is made, with figures."""
from __future__ import annotations

import json
import re

import pytest

from likeness.money.spend_ledger import SpendLedger
from likeness.storage import sha256_file
from reliability.pipeline import PREDICTION_CREATE, TRAINING_CREATE, full_pipeline

USD = re.compile(r"\$\d+\.\d+")


@pytest.fixture
def budget(comfy):
    """Sets monthly_budget_usd in the pack's config.json to what is already spent this month + `headroom`."""
    user = comfy.pack_dir
    config = user / "config.json"

    def set_headroom(headroom: float) -> float:
        spent = SpendLedger(user).month_total()
        config.write_text(json.dumps({"monthly_budget_usd": round(spent + headroom, 6)}), encoding="utf-8")
        return spent + headroom
    yield set_headroom
    config.unlink(missing_ok=True)


def paid_counts(gemini, fake) -> dict[str, int]:
    return {"Gemini captions (generateContent)": len(gemini.generate_calls()),
            "Replicate dataset uploads (POST /v1/files)": fake.count("POST", r"^/v1/files$"),
            "Replicate trainings created": fake.count("POST", TRAINING_CREATE),
            "Replicate predictions created": fake.count("POST", PREDICTION_CREATE)}


def test_the_whole_pipeline_queued_twice_pays_once(comfy, client, gemini, replicate_fake, tally):
    fake = replicate_fake
    ledger = comfy.pack_dir / "spend.jsonl"
    start = len(ledger.read_text(encoding="utf-8").splitlines()) if ledger.exists() else 0
    run = full_pipeline(comfy.base_dir, client.get("/object_info"), photo_count=3)
    again = json.loads(json.dumps(run.prompt))
    # the same photos prepared into another folder: every node runs again (no ComfyUI cache), same paid work
    again[run.node("LikenessDatasetLoader")]["inputs"]["output_folder"] = f"likeness/datasets/{run.tag}-again"
    first_id = client.queue(run.prompt)
    twin_id = client.queue(run.prompt)                        # queued twice before the first has finished
    again_id = client.queue(again)
    results = [client.wait(first_id), client.wait(twin_id), client.wait(again_id)]
    assert [r.status for r in results] == ["success"] * 3, [r.error_message for r in results]
    executed = set(results[2].executed_nodes())
    assert {run.node("LikenessGeminiCaptioner"), run.node("LikenessReplicateTrainer"),
            run.node("LikenessReplicateFluxSampler")} <= executed          # really ran, not ComfyUI's cache

    counts = paid_counts(gemini, fake)
    expected = {"Gemini captions (generateContent)": 3, "Replicate dataset uploads (POST /v1/files)": 1,
                "Replicate trainings created": 1, "Replicate predictions created": 1}
    for what, count in counts.items():
        tally("paid_calls", f"pipeline queued 3 times: {what}", ok=count == expected[what], calls=count,
              duplicates=max(0, count - expected[what]))
    assert counts == expected

    # the spend ledger: one entry per paid call, found by the work's own ids
    # (this test's entries only: other tests caption the same generated photos)
    entries = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()[start:]]
    image_hashes = {sha256_file(p) for p in run.dataset_dir.glob("*.jpg")}
    (training_id,), (prediction_id,) = fake.training_ids(), fake.prediction_ids()
    by_ref = {}
    for entry in entries:
        by_ref.setdefault(entry["ref"], []).append(entry)
    assert [len(by_ref.get(h, [])) for h in sorted(image_hashes)] == [1, 1, 1]
    assert all(e["service"] == "gemini" for h in image_hashes for e in by_ref[h])
    assert [e["service"] for e in by_ref[training_id]] == ["replicate-training"]
    assert [e["service"] for e in by_ref[prediction_id]] == ["replicate-prediction"]
    assert all(e["usd"] > 0 and not e["estimated"] for ref in (training_id, prediction_id) for e in by_ref[ref])
    tally("paid_calls", "spend ledger: one entry per paid call", calls=5, duplicates=0)


def test_a_budget_below_the_training_estimate_refuses_it_before_upload_with_the_figures(
        comfy, client, gemini, replicate_fake, budget, tally):
    fake = replicate_fake
    run = full_pipeline(comfy.base_dir, client.get("/object_info"), photo_count=2)
    limit = budget(0.05)                                       # enough for two captions, not for a training
    result = client.run(run.prompt)
    assert result.status == "error"
    message = result.error_message
    assert message.startswith("likeness.BudgetError: LoRA training") or "BudgetError" in message, message
    assert "refused before anything was paid" in message and "monthly_budget_usd" in message
    figures = USD.findall(message)
    assert len(figures) >= 3, message                           # the estimate, spent so far, the budget
    assert f"${limit:.2f}" in message
    assert len(gemini.generate_calls()) == 2                    # the captions before it were made (and kept)
    assert fake.count("POST", r"^/v1/files$") == 0 and fake.count("POST", TRAINING_CREATE) == 0
    assert fake.count("POST", r"^/v1/models$") == 0             # not even the destination model was created
    tally("paid_calls", "budget below the training estimate: refused before upload", calls=0, duplicates=0)


def test_a_budget_with_nothing_left_refuses_captions_and_generation_before_any_request(
        comfy, client, gemini, replicate_fake, budget, tally):
    fake = replicate_fake
    budget(0.0)
    run = full_pipeline(comfy.base_dir, client.get("/object_info"), photo_count=2)
    result = client.run(run.prompt)
    assert result.status == "error" and "BudgetError" in result.error_message, result.error_message
    assert "Captioning 2 images" in result.error_message and len(USD.findall(result.error_message)) >= 3
    assert gemini.generate_calls() == []
    tally("paid_calls", "no budget left: captions refused before any Gemini request", calls=0, duplicates=0)

    version = fake.add_trained_version("likeness-tester/budget-me")
    prompt = {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": {
        "prompt": "a portrait", "trigger_words": "tok", "seed": 5, "steps": 28, "guidance": 2.75,
        "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
        "lora_strength": 0.9, "go_fast": True, "run_on": "auto", "version": version, "lora_weights": "",
        "rerun": False}}}
    result = client.run(prompt)
    assert result.status == "error" and "BudgetError" in result.error_message, result.error_message
    assert "refused before anything was paid" in result.error_message
    assert fake.count("POST", PREDICTION_CREATE) == 0
    tally("paid_calls", "no budget left: generation refused before the prediction", calls=0, duplicates=0)

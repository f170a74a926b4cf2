"""run_battery against the fake Replicate: variants trained at once, under one budget, never twice."""
from __future__ import annotations

import json
import threading

import pytest

from harness.progress import RecordingProgress
from likeness.errors import BudgetError, InputError
from likeness.loras.lora_formats import read_header
from likeness.money.prices import format_usd, load_prices
from likeness.progress import Interrupted
from likeness.training.battery import BatterySettings, run_battery, wall_minutes
from likeness.training.training import PollSettings, estimate_cost

FAST = PollSettings(interval=0.005, check_every=0.005)
DEST = "likeness-tester/face"
CREATE = r"/versions/[0-9a-f]+/trainings$"
RANKS = "lora_rank: 16, 32, 64"


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


@pytest.fixture
def battery(replicate_api, tmp_path):
    def go(dataset, progress=None, status=None, concurrency=None, **settings):
        settings.setdefault("destination", DEST)
        return run_battery(dataset, BatterySettings(**settings), user_dir=tmp_path / "user",
                           loras_dir=tmp_path / "loras", progress=progress or RecordingProgress(),
                           api=replicate_api, poll=FAST, status=status, concurrency=concurrency)
    return go


def max_running(spans: dict) -> int:
    """The most trainings that were running at one moment (from the fake's creation and end times)."""
    edges = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()],
                   key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def in_background(fn):
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            result["error"] = exc
    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def test_three_variants_train_at_once_and_install_three_loras(fake, battery, make_dataset, tmp_path):
    for _ in range(3):
        fake.plan_next(stall_at_tick=3)                  # none can finish before all three were created
    statuses: list[tuple[int, dict]] = []
    thread, result = in_background(lambda: battery(make_dataset(3), variations=RANKS,
                                                   status=lambda i, s: statuses.append((i, s))))
    try:
        fake.wait_for(lambda f: len(f.trainings) == 3, timeout=60)
    finally:
        fake.release()
        thread.join(60)
    assert not thread.is_alive() and "error" not in result, result
    record = result["value"]

    assert fake.count("POST", CREATE) == 3 and fake.count("POST", "/v1/files") == 3
    assert max_running(fake.training_spans()) == 3
    assert sorted(fake.training(i)["input"]["lora_rank"] for i in fake.training_ids()) == [16, 32, 64]
    names = [r.record.lora_file for r in record.runs]
    assert names == ["face-rank32.safetensors", "face-rank16.safetensors", "face-rank64.safetensors"]
    for run in record.runs:
        assert (tmp_path / "loras" / run.record.lora_file).is_file()
        meta = json.loads(read_header(run.record.lora_path)[1]["likeness_battery"])
        assert meta["id"] == record.id and meta["variant"] == run.label
        assert meta["settings"] == {"lora_rank": run.record.inputs["lora_rank"]}
    assert [r.outcome for r in record.runs] == ["trained"] * 3
    assert record.cost_usd == pytest.approx(sum(r.record.cost_usd for r in record.runs)) and record.cost_usd > 0
    # progress per variant: queued first, each with its label, the cost so far, and the real cost at the end
    by_variant = {i: [s for j, s in statuses if j == i] for i in range(3)}
    for i, seen in by_variant.items():
        assert seen[0]["phase"] == "queued" and seen[-1]["phase"] == "succeeded"
        assert {s["label"] for s in seen} == {record.runs[i].label} and {s["battery"] for s in seen} == {record.id}
        assert seen[-1]["cost_so_far_usd"] == pytest.approx(record.runs[i].record.cost_usd)
        assert any(s["phase"] == "processing" and s["started_at"] for s in seen)


def test_the_node_text_has_a_line_per_variant_and_the_bar_adds_their_steps(fake, battery, make_dataset):
    progress = RecordingProgress()
    battery(make_dataset(3), progress, variations="lora_rank: 16, 32")
    last_done, last_total, text = progress.updates[-1]
    assert last_total == 2 * 120 and last_done == last_total
    assert "lora_rank 16: " in text and "base: " in text and "Cost so far about $" in text
    assert any("New trainings: about $" in t and "min with 2 at a time" in t for t in progress.texts)
    assert any(text.count("Training on Replicate: step") == 2 for _, _, text in progress.updates)


def test_queuing_the_same_battery_again_starts_nothing_and_sends_nothing(fake, battery, make_dataset):
    ds = make_dataset(3)
    first = battery(ds, variations=RANKS)
    before = len(fake.requests)
    again = battery(ds, variations=RANKS)
    assert [r.outcome for r in again.runs] == ["reused"] * 3
    assert [r.record.lora_file for r in again.runs] == [r.record.lora_file for r in first.runs]
    assert len(fake.requests) == before                       # not an upload, not even a status check
    assert again.id == first.id and again.estimated_usd == 0


def test_a_bigger_battery_trains_only_the_new_variant(fake, battery, make_dataset):
    ds = make_dataset(3)
    battery(ds, variations="lora_rank: 16, 32")
    grown = battery(ds, variations=RANKS)
    assert fake.count("POST", CREATE) == 3
    assert [r.outcome for r in grown.runs] == ["reused", "reused", "trained"]


def test_over_the_budget_the_whole_battery_is_refused_and_says_by_how_much(fake, battery, make_dataset,
                                                                             monkeypatch, tmp_path):
    each = estimate_cost(120, load_prices(tmp_path / "user"))       # 3 photos × 40 steps
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", f"{2.5 * each:.4f}")   # two of three would fit
    with pytest.raises(BudgetError) as refused:
        battery(make_dataset(3), variations=RANKS)
    text = str(refused.value)
    assert f"3 new trainings, checked as a whole (none starts unless all fit), would cost about " \
           f"{format_usd(3 * each)}" in text
    assert f"({format_usd(3 * each - float(f'{2.5 * each:.4f}'))} over)" in text
    assert "refused before anything was paid" in text
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_more_than_the_limit_needs_the_users_tick(fake, battery, make_dataset, tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "config.json").write_text(json.dumps({"battery_confirm_above": 2}))
    ds = make_dataset(3)
    with pytest.raises(InputError) as refused:
        battery(ds, variations=RANKS)
    assert "starts 3 new trainings (more than 2)" in str(refused.value)
    assert "tick confirm_large_battery" in str(refused.value)
    assert fake.count("POST", "/v1/files") == 0
    record = battery(ds, variations=RANKS, confirmed=True)
    assert len(record.finished) == 3


def test_every_variant_is_checked_against_the_trainers_schema_before_anything(fake, battery, make_dataset):
    with pytest.raises(InputError) as refused:
        battery(make_dataset(3), variations="lora_rank: 16, 256\nbatch_size: 1, 2")
    assert "lora_rank 256: lora_rank: 256 is above the maximum 128" in str(refused.value)
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_two_variants_that_are_the_same_training_are_refused(fake, battery, make_dataset):
    with pytest.raises(InputError) as refused:
        battery(make_dataset(3), variations="steps: 120, 200")        # 3 photos × 40 = 120: the base
    assert "steps 120 is the same training as base" in str(refused.value)
    assert fake.count("POST", "/v1/files") == 0


def test_interrupt_cancels_every_running_training(fake, battery, make_dataset, tmp_path):
    for _ in range(3):
        fake.plan_next(stall_at_tick=3)
    progress = RecordingProgress(interrupt_when=lambda d, t, text: text.count("Training on Replicate: step") == 3)
    with pytest.raises(Interrupted) as stopped:
        battery(make_dataset(3), progress, variations=RANKS)
    ids = fake.training_ids()
    assert len(ids) == 3 and {fake.training(i)["status"] for i in ids} == {"canceled"}
    assert fake.count("POST", r"/trainings/[a-z0-9]+/cancel$") == 3
    assert "3 running training(s) canceled on Replicate" in str(stopped.value)
    assert not list((tmp_path / "loras").glob("*.safetensors"))


def test_variants_waiting_for_a_slot_never_start_after_an_interrupt(fake, battery, make_dataset):
    fake.plan_next(stall_at_tick=3)
    progress = RecordingProgress(interrupt_when=lambda d, t, text: "Training on Replicate: step" in text)
    with pytest.raises(Interrupted):
        battery(make_dataset(3), progress, variations="lora_rank: 16", concurrency=1)
    assert fake.count("POST", CREATE) == 1 and fake.count("POST", "/v1/files") == 1


def test_concurrency_bounds_how_many_run_at_once(fake, battery, make_dataset):
    record = battery(make_dataset(3), variations=RANKS, concurrency=2)
    assert len(record.finished) == 3
    assert max_running(fake.training_spans()) == 2


def test_a_failed_variant_leaves_the_others_installed(fake, battery, make_dataset):
    fake.plan_next(outcome="failed", error="CUDA out of memory. Tried to allocate 2.00 GiB")
    record = battery(make_dataset(3), variations=RANKS)
    outcomes = sorted(r.outcome for r in record.runs)
    assert outcomes == ["failed", "trained", "trained"] and len(record.finished) == 2
    (failed,) = [r for r in record.runs if r.outcome == "failed"]
    assert "CUDA out of memory" in failed.error and f"- {failed.label}: failed." in record.summary()


def test_wall_time_estimate_runs_them_in_slots():
    assert wall_minutes([600, 600, 600], 4) == 10 and wall_minutes([600, 600, 600], 2) == 20


def test_wandb_monitoring_sends_the_seeds_inputs_and_the_key_only_to_replicate(fake, battery, make_dataset,
                                                                              monkeypatch, tmp_path):
    key = "wandb" + "KEY" * 12
    monkeypatch.setenv("WANDB_API_KEY", key)
    ds = make_dataset(3)
    record = battery(ds, variations="lora_rank: 16", wandb_project="likeness-battery")
    sent = [fake.training(t)["input"] for t in fake.training_ids()]
    assert len(sent) == 2 and all(i["wandb_project"] == "likeness-battery" and i["wandb_api_key"] == key
                                  and i["wandb_sample_interval"] == 100 == i["wandb_save_interval"] for i in sent)
    assert sorted(i["wandb_run"] for i in sent) == sorted(r.lora_name for r in record.runs)
    kept = (tmp_path / "user" / "trainings.json").read_bytes() + record.summary().encode()
    kept += b"".join(p.read_bytes() for p in (tmp_path / "loras").glob("*.safetensors"))
    assert key.encode() not in kept and b"wandb_project" not in (tmp_path / "user" / "trainings.json").read_bytes()
    again = battery(ds, variations="lora_rank: 16")                   # monitoring off: the same LoRAs
    assert [r.outcome for r in again.runs] == ["reused", "reused"]


def test_wandb_without_a_key_is_refused_before_anything(fake, battery, make_dataset, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(InputError, match="set WANDB_API_KEY"):
        battery(make_dataset(3), variations="lora_rank: 16", wandb_project="likeness-battery")
    assert fake.count("POST", "/v1/files") == 0

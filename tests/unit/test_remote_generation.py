"""generate() against the fake Replicate server: every path, and never paying twice for the same image."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fakes.replicate import FLUX_DEV_LORA, image_colour
from harness.progress import RecordingProgress
from likeness.errors import BudgetError, InputError, ServiceError
from likeness.progress import Interrupted
from likeness.cloud.replicate_client import is_replicate_host
from likeness.generation.remote_generation import (GenerationSettings, ResultCache, cache_key, generate,
                                                   local_source, plan_generation, remote_reference)
from likeness.generation.seed_journal import SeedJournal
from likeness.training.training import PollSettings, TrainingRecord

FAST = PollSettings(interval=0.001, check_every=0.001)
OFFICIAL_CREATE = rf"^/v1/models/{FLUX_DEV_LORA}/predictions$"
VERSION_CREATE = r"^/v1/predictions$"
PROMPT = "an analog portrait of a man in a green field"


@pytest.fixture
def fake(replicate_fake, monkeypatch):
    monkeypatch.setenv("REPLICATE_BASE_URL", replicate_fake.url)      # the pack's own host check reads it
    monkeypatch.delenv("LIKENESS_MONTHLY_BUDGET_USD", raising=False)
    return replicate_fake


@pytest.fixture
def api(fake, replicate_api):
    return replicate_api


@pytest.fixture
def run(api, tmp_path):
    def go(settings: GenerationSettings, progress=None, **kwargs):
        return generate(settings, user_dir=tmp_path / "user", api=api, poll=FAST, wait_s=10,
                        progress=progress or RecordingProgress(), **kwargs)
    return go


def sent(fake, index: int = -1) -> dict:
    """The inputs the fake received for a prediction."""
    return fake.prediction(fake.prediction_ids()[index])["input"]


def spend(tmp_path) -> list[dict]:
    path = tmp_path / "user" / "spend.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def training(version: str, lora_file: str = "pelarbues-lora.safetensors") -> TrainingRecord:
    return TrainingRecord(id="t1", destination=version.split(":")[0], version=version,
                          trainer_version="ostris/flux-dev-lora-trainer:x", lora_file=lora_file, lora_path="",
                          trigger_word="pelarbues", cost_usd=1.0, estimated_usd=1.0, predict_time=600)


def test_flux_dev_lora_with_prefer_wait_gives_the_image_in_one_call(fake, run, tmp_path):
    result = run(GenerationSettings(PROMPT, trigger_words="pelarbues", seed=42, lora_weights="someone/face",
                                    go_fast=True))

    assert fake.count("POST", OFFICIAL_CREATE) == 1
    create = next(r for r in fake.requests if r.method == "POST")
    assert create.headers.get("Prefer") == "wait=10"
    inputs = sent(fake)
    assert inputs["prompt"] == f"pelarbues, {PROMPT}"                   # the trigger word first
    assert (inputs["seed"], inputs["num_inference_steps"], inputs["guidance"]) == (42, 35, 2.75)
    assert inputs["lora_weights"] == "someone/face" and inputs["go_fast"] is True
    assert inputs["lora_scale"] == pytest.approx(0.6)                   # 0.9 / 1.5 (go_fast multiplier)
    assert fake.count("GET", r"^/v1/predictions/") >= 1                  # metrics read after the sync answer
    (image,) = result.images
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert tuple(np.round(image[0, 0] * 255).astype(int)) == image_colour(inputs)
    assert result.cost_usd == pytest.approx(0.032) and result.estimated_usd == pytest.approx(0.032)
    (entry,) = spend(tmp_path)
    assert entry["service"] == "replicate-prediction" and entry["ref"] == result.prediction_id
    journal = SeedJournal(tmp_path / "user").find(result.journal_id)
    assert journal.source == "replicate" and journal.extra["prediction_id"] == result.prediction_id
    assert journal.extra["cost_usd"] == pytest.approx(0.032) and journal.seed == 42
    assert "lora_scale 0.6" in result.summary() and result.prediction_id in result.summary()


def test_a_trained_version_is_run_by_version_and_polled(fake, run, tmp_path):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, ticks=4, predict_time=7.5)
    progress = RecordingProgress()
    result = run(GenerationSettings(PROMPT, go_fast=False), progress=progress, training=training(version))

    assert fake.count("POST", VERSION_CREATE) == 1 and fake.count("POST", OFFICIAL_CREATE) == 0
    inputs = sent(fake)
    assert inputs["prompt"].startswith("pelarbues, ")                   # the training's trigger word
    assert inputs["guidance_scale"] == 2.75 and inputs["go_fast"] is False
    assert inputs["lora_scale"] == pytest.approx(math.sqrt(0.9), abs=1e-4)   # applied twice by Replicate
    assert "lora_weights" not in inputs
    assert fake.count("GET", r"^/v1/predictions/") >= 4
    assert any("Generating on Replicate: step" in text for _, _, text in progress.updates)
    assert result.cost_usd == pytest.approx(7.5 * 0.001525)            # predict_time × H100 per second
    assert result.images[0].shape == (64, 64, 3)


def test_the_same_work_queued_again_reuses_the_stored_image(fake, run, tmp_path):
    settings = GenerationSettings(PROMPT, trigger_words="pelarbues", seed=7, lora_weights="someone/face")
    first = run(settings)
    fake.requests.clear()
    again = run(settings)
    assert again.reused and again.prediction_id == first.prediction_id and again.cost_usd == 0
    assert fake.requests == []                                           # not even a schema look-up
    assert (again.images[0] == first.images[0]).all()
    assert "nothing paid" in again.summary()
    assert len(spend(tmp_path)) == 1

    rerun = run(GenerationSettings(PROMPT, trigger_words="pelarbues", seed=7, lora_weights="someone/face",
                                   rerun=True))
    assert not rerun.reused and rerun.prediction_id != first.prediction_id
    assert fake.count("POST", OFFICIAL_CREATE) == 1 and len(spend(tmp_path)) == 2


def test_a_different_seed_is_different_work(fake, run):
    run(GenerationSettings(PROMPT, seed=1, lora_weights="someone/face"))
    run(GenerationSettings(PROMPT, seed=2, lora_weights="someone/face"))
    assert fake.count("POST", OFFICIAL_CREATE) == 2


def test_a_failed_prediction_shows_replicates_error_and_records_what_it_cost(fake, run, tmp_path):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, outcome="failed", error="CUDA out of memory. Tried to allocate 1.00 GiB",
                         predict_time=3.0)
    with pytest.raises(ServiceError, match="The prediction failed on Replicate: CUDA out of memory"):
        run(GenerationSettings(PROMPT, version=version))
    (entry,) = spend(tmp_path)
    assert entry["usd"] == pytest.approx(3.0 * 0.001525)
    assert not list((tmp_path / "user" / "replicate_images").glob("*/pending.json"))


def test_a_failed_blocking_prediction_also_says_why(fake, run):
    fake.plan_prediction(outcome="failed", error="NSFW content detected in all outputs")
    with pytest.raises(ServiceError, match="NSFW content detected"):
        run(GenerationSettings(PROMPT, lora_weights="someone/face"))


def test_interrupt_cancels_the_prediction_on_replicate(fake, run, tmp_path):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, stall_at_tick=2, ticks=5)
    progress = RecordingProgress(interrupt_when=lambda done, total, text: "Generating on Replicate" in text)
    with pytest.raises(Interrupted, match="canceled prediction"):
        run(GenerationSettings(PROMPT, version=version), progress=progress)
    (prediction_id,) = fake.prediction_ids()
    assert fake.prediction(prediction_id)["status"] == "canceled"
    assert fake.count("POST", rf"/predictions/{prediction_id}/cancel$") == 1
    assert len(spend(tmp_path)) == 1


def test_a_failed_cancel_tells_the_user_where_to_cancel_it(fake, run):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, stall_at_tick=2, ticks=5)
    fake.inject("POST", r"/cancel$", 403, {"detail": "You do not have permission", "status": 403}, times=10)
    progress = RecordingProgress(interrupt_when=lambda done, total, text: "Generating on Replicate" in text)
    with pytest.raises(ServiceError, match=r"canceling prediction \S+ failed .*Cancel it on https?://\S+/p/\S+ so it "
                                           r"stops costing money"):
        run(GenerationSettings(PROMPT, version=version), progress=progress)
    (prediction_id,) = fake.prediction_ids()
    assert fake.prediction(prediction_id)["status"] != "canceled"
    fake.release_predictions()


def test_a_crash_mid_prediction_picks_the_same_prediction_up_again(fake, run):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, ticks=4)
    settings = GenerationSettings(PROMPT, version=version)
    with pytest.raises(KeyboardInterrupt):
        run(settings, progress=RecordingProgress(crash_when=lambda done, total, text: "Generating on Replicate" in text))
    result = run(settings)
    assert fake.count("POST", VERSION_CREATE) == 1
    assert result.prediction_id == fake.prediction_ids()[0]


def test_file_urls_get_the_token_only_on_replicates_own_host(fake, run):
    fake.plan_prediction(sync=False, output="delivery")
    own = run(GenerationSettings(PROMPT, seed=1, lora_weights="someone/face"))
    fake.plan_prediction(sync=False, output="public")
    other = run(GenerationSettings(PROMPT, seed=2, lora_weights="someone/face"))
    delivery = [r for r in fake.requests if r.path.startswith("/delivery/pbxt/")]
    public = [r for r in fake.requests if r.path.startswith("/public/")]
    assert len(delivery) == 1 and delivery[0].authorized and delivery[0].status == 200
    assert len(public) == 1 and not public[0].auth_sent and public[0].status == 200
    assert public[0].host.startswith("localhost:")
    assert own.images[0].shape == other.images[0].shape == (64, 64, 3)


def test_schema_invalid_inputs_are_refused_before_any_prediction(fake, run):
    with pytest.raises(InputError, match="lora_scale: 5.0 is above the maximum 3") as info:
        run(GenerationSettings(PROMPT, lora_weights="someone/face", lora_strength=5.0, go_fast=False))
    assert "nothing was sent or paid" in str(info.value)
    with pytest.raises(InputError, match="aspect ratios only"):
        run(GenerationSettings(PROMPT, lora_weights="someone/face", aspect_ratio="custom"))
    assert fake.count("POST") == 0


def test_custom_size_goes_to_a_trained_version(fake, run):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    result = run(GenerationSettings(PROMPT, version=version, aspect_ratio="custom", width=1280, height=768))
    assert (sent(fake)["width"], sent(fake)["height"]) == (1280, 768)
    assert result.images[0].shape == (48, 80, 3)


def test_budget_below_the_estimate_refuses_before_the_call(fake, run, monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.01")
    with pytest.raises(BudgetError, match="refused before anything was paid"):
        run(GenerationSettings(PROMPT, lora_weights="someone/face"))
    assert fake.count("POST") == 0


def test_one_extra_lora_from_the_stack_and_the_rest_reported_left_out(fake, run):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    stack = [("pelarbues-lora.safetensors", 0.85, 0.85),
             ("https://civitai.com/api/download/models/111", 0.2, 0.2),
             ("https://huggingface.co/a/b/resolve/main/c.safetensors", 0.15, 0.15),
             ("someone/grain", 0.1, 0.1)]
    result = run(GenerationSettings(PROMPT, version=version, go_fast=False), training=training(version),
                 stack=stack)
    inputs = sent(fake)
    assert inputs["extra_lora"] == "https://civitai.com/api/download/models/111"
    assert inputs["lora_scale"] == 0.85 and inputs["extra_lora_scale"] == 0.2   # two LoRAs: each once
    text = result.summary()
    assert "Left out" in text and "c.safetensors (0.15)" in text and "someone/grain (0.1)" in text
    assert "strength 0.85 is used" in text


def test_the_trained_version_can_run_on_flux_dev_lora(fake, run):
    version = fake.add_trained_version("likeness-tester/pelarbues")
    run(GenerationSettings(PROMPT, run_on="flux-dev-lora"), training=training(version))
    model, version_id = version.split(":")
    assert sent(fake)["lora_weights"] == f"{model}/{version_id}"
    assert fake.count("POST", OFFICIAL_CREATE) == 1


def test_a_non_official_model_on_the_model_endpoint_is_a_404(fake, api):
    # Why the pack runs a trained model by version: the model route is for official models only.
    fake.add_trained_version("likeness-tester/pelarbues")
    with pytest.raises(InputError, match="could not be found"):
        api.call("Starting", api.sdk.models.predictions.create, model="likeness-tester/pelarbues",
                 input={"prompt": "x"})
    assert fake.prediction_ids() == []


def test_nothing_to_run_is_an_input_error():
    with pytest.raises(InputError, match="Nothing to generate with"):
        plan_generation(GenerationSettings(PROMPT, run_on="flux-dev-lora"))
    with pytest.raises(InputError, match="owner/name:<64-character"):
        plan_generation(GenerationSettings(PROMPT, version="abc"))
    with pytest.raises(InputError, match="prompt is empty"):
        plan_generation(GenerationSettings("  ", lora_weights="a/b"))


def test_remote_references(tmp_path):
    assert remote_reference("https://example.com/x.safetensors") == "https://example.com/x.safetensors"
    assert remote_reference("huggingface.co/a/b") == "huggingface.co/a/b"
    assert remote_reference("fofr/flux-mona-lisa") == "fofr/flux-mona-lisa"
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"\0" * 16)
    (tmp_path / "style.civitai.info").write_text(json.dumps({"id": 12345, "modelId": 99}))
    assert remote_reference("style.safetensors", lambda name: str(lora)) == \
        "https://civitai.com/api/download/models/12345"
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"\0" * 16)
    (tmp_path / "other.metadata.json").write_text(json.dumps({"civitai": {"id": 777}}))
    assert local_source(other) == "https://civitai.com/api/download/models/777"
    with pytest.raises(InputError, match="only a file on this computer"):
        remote_reference("mine.safetensors", lambda name: None)


def test_the_token_goes_only_to_replicate_hosts(monkeypatch):
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:8123")
    assert is_replicate_host("https://replicate.delivery/pbxt/abc/out-0.png")
    assert is_replicate_host("https://xezq.replicate.delivery/abc/out-0.webp")
    assert is_replicate_host("https://api.replicate.com/v1/files/x")
    assert is_replicate_host("http://127.0.0.1:8123/delivery/x.png")
    assert not is_replicate_host("http://localhost:8123/public/x.png")
    assert not is_replicate_host("http://127.0.0.1:9999/x.png")
    assert not is_replicate_host("https://replicate.delivery.evil.example/x.png")
    assert not is_replicate_host("https://evilreplicate.com/x.png")
    assert not is_replicate_host("http://replicate.delivery/x.png")           # never over plain http


def test_the_cache_key_covers_every_input():
    base = GenerationSettings(PROMPT, lora_weights="a/b")
    plan = plan_generation(base)
    keys = {cache_key(plan, base)}
    for change in [{"seed": 1}, {"steps": 30}, {"guidance": 3.0}, {"aspect_ratio": "3:2"}, {"num_outputs": 2},
                   {"output_format": "jpg"}, {"go_fast": True}, {"lora_strength": 0.8}]:
        settings = GenerationSettings(**{**base.__dict__, **change})
        keys.add(cache_key(plan_generation(settings), settings))
    assert len(keys) == 9


def test_a_cache_whose_files_are_gone_is_a_miss(fake, run, tmp_path):
    settings = GenerationSettings(PROMPT, lora_weights="someone/face")
    first = run(settings)
    for f in first.files:
        Path(f).unlink()
    again = run(settings)
    assert not again.reused and fake.count("POST", OFFICIAL_CREATE) == 2
    assert ResultCache(tmp_path / "user").load(cache_key(plan_generation(settings), settings)) is not None


def test_a_server_error_after_the_prediction_was_made_follows_it_instead_of_paying_again(fake, run, tmp_path):
    fake.inject("POST", OFFICIAL_CREATE, 500, after=True)             # created on Replicate, then 500
    result = run(GenerationSettings(PROMPT, lora_weights="someone/face"))
    assert fake.count("POST", OFFICIAL_CREATE) == 1 and result.prediction_id == fake.prediction_ids()[0]
    assert len(spend(tmp_path)) == 1


def test_a_server_error_before_anything_was_made_says_so(fake, run):
    fake.inject("POST", OFFICIAL_CREATE, 500)
    with pytest.raises(ServiceError, match="server error"):
        run(GenerationSettings(PROMPT, lora_weights="someone/face"))
    assert fake.prediction_ids() == [] and fake.count("POST", OFFICIAL_CREATE) == 1


@pytest.mark.parametrize("output", ["delivery", "public"])
def test_an_oversized_image_is_refused(fake, api, output):
    from likeness.generation.remote_generation import fetch_output

    fake.plan_prediction(sync=False, output=output, ticks=1)
    created = api.sdk.models.predictions.create(model=FLUX_DEV_LORA, input={"prompt": "x"})
    url = api.get_json(f"/v1/predictions/{created.id}", "reading")["output"][0]
    with pytest.raises(ServiceError, match="larger than"):
        fetch_output(api, url, max_bytes=16)
    assert len(fetch_output(api, url)) > 16


def test_a_rerun_keeps_the_earlier_image_the_journal_points_at(fake, run, tmp_path):
    first = run(GenerationSettings(PROMPT, lora_weights="someone/face"))
    second = run(GenerationSettings(PROMPT, lora_weights="someone/face", rerun=True))
    assert set(first.files).isdisjoint(second.files)
    journal = SeedJournal(tmp_path / "user")
    for result in (first, second):
        entry = journal.find(result.journal_id)
        assert entry.images == result.files and all(Path(f).is_file() for f in entry.images)


# --- issue 17 §1: the strength asked for is the strength the predictor applies, on every path ----------------
STYLE = "https://civitai.com/api/download/models/111"
SQRT = round(math.sqrt(0.9), 4)
# label, where, predictor, settings, with an extra LoRA, (lora_scale, extra_lora_scale) sent, path taken
STRENGTH_PATHS = [
    ("flux-dev-lora, go_fast", "official", None, {"go_fast": True}, False, (0.6, None), "fp8"),
    ("flux-dev-lora, bf16", "official", None, {"go_fast": False}, False, (0.9, None), "bf16"),
    ("flux-dev-lora + extra, go_fast", "official", None, {"go_fast": True}, True, (0.6, 0.1333), "fp8"),
    ("flux-dev-lora + extra, bf16", "official", None, {"go_fast": False}, True, (0.9, 0.2), "bf16"),
    ("trained, bf16, one LoRA", "hotswap", None, {"go_fast": False}, False, (SQRT, None), "bf16"),
    ("trained, bf16 + extra", "hotswap", None, {"go_fast": False}, True, (0.9, 0.2), "bf16"),
    ("trained, go_fast", "hotswap", None, {"go_fast": True}, False, (0.6, None), "fp8"),
    ("trained, go_fast + extra", "hotswap", None, {"go_fast": True}, True, (0.6, 0.1333), "fp8"),
    ("trained, go_fast but a custom size: bf16", "hotswap", None,
     {"go_fast": True, "aspect_ratio": "custom", "width": 1024, "height": 768}, False, (SQRT, None), "bf16"),
    ("trained, go_fast but a custom size + extra: bf16", "hotswap", None,
     {"go_fast": True, "aspect_ratio": "custom", "width": 1024, "height": 768}, True, (0.9, 0.2), "bf16"),
    ("older fine-tuner version (no go_fast), one LoRA", "fine-tuner", None, {"go_fast": True}, False,
     (SQRT, None), "bf16"),
    ("older fine-tuner version + extra", "fine-tuner", None, {"go_fast": True}, True, (0.9, 0.2), "bf16"),
]


@pytest.mark.parametrize("label, where, _, changes, extra, scales, path", STRENGTH_PATHS,
                         ids=[p[0] for p in STRENGTH_PATHS])
def test_the_strength_asked_for_is_what_the_predictor_applies_on_every_path(fake, run, label, where, _, changes,
                                                                            extra, scales, path):
    """Guards issue 17 §1: lora_scale / extra_lora_scale follow the path Replicate's predictor really takes
    (go_fast falls back to bf16 for a custom size; one LoRA on bf16 applies scale²), so ComfyUI 0.9 and 0.2
    are merged as 0.9 and 0.2 whatever the path."""
    stack = [(STYLE, 0.2, 0.2)] if extra else None
    if where == "official":
        settings = GenerationSettings(PROMPT, lora_weights="someone/face", lora_strength=0.9, **changes)
    else:
        version = fake.add_trained_version("likeness-tester/pelarbues", predictor=where)
        settings = GenerationSettings(PROMPT, version=version, lora_strength=0.9, **changes)
    result = run(settings, stack=stack)
    inputs = sent(fake)
    assert inputs["lora_scale"] == pytest.approx(scales[0], abs=1e-4)
    assert inputs.get("extra_lora_scale") == (None if scales[1] is None else pytest.approx(scales[1], abs=1e-4))
    applied = fake.applied_strengths(result.prediction_id)
    assert applied["path"] == path
    assert applied["lora"] == pytest.approx(0.9, abs=2e-4)
    assert applied["extra"] == (None if not extra else pytest.approx(0.2, abs=2e-4))
    if "custom" in label:
        assert "bf16" in result.summary() and "custom size" in result.summary()


# --- issue 17 §5: the intent is recorded before the create POST; resume reads past the first page -----------
def test_a_created_prediction_whose_answer_was_lost_is_found_on_the_next_queue_not_paid_again(fake, run, tmp_path):
    """Guards issue 17 §5: the create answer is lost (reset after Replicate made the prediction) and the look-up
    fails too; the next queue must find that prediction instead of paying for a second one."""
    version = fake.add_trained_version("likeness-tester/pelarbues")
    settings = GenerationSettings(PROMPT, version=version)
    fake.drop("POST", VERSION_CREATE, mode="reset", after=True)
    fake.inject("GET", r"^/v1/predictions$", 500, times=4)             # every attempt of the look-up
    with pytest.raises(ServiceError):
        run(settings)
    (first,) = fake.prediction_ids()
    result = run(settings)
    assert fake.count("POST", VERSION_CREATE) == 1 and fake.prediction_ids() == [first]
    assert result.prediction_id == first and len(spend(tmp_path)) == 1


def test_a_requeue_whose_look_up_fails_too_stops_rather_than_pay_twice(fake, run):
    """Guards issue 17 §5: not knowing whether the earlier prediction exists is no reason to pay for another."""
    version = fake.add_trained_version("likeness-tester/pelarbues")
    settings = GenerationSettings(PROMPT, version=version)
    fake.drop("POST", VERSION_CREATE, mode="reset", after=True)
    fake.inject("GET", r"^/v1/predictions$", 500, times=8)             # this queue's look-up and the next one's
    with pytest.raises(ServiceError):
        run(settings)
    with pytest.raises(ServiceError, match="Looking for the prediction"):
        run(settings)
    assert fake.count("POST", VERSION_CREATE) == 1
    (first,) = fake.prediction_ids()
    assert run(settings).prediction_id == first


def test_the_look_up_of_a_lost_prediction_reads_past_the_first_page(fake, run, api):
    """Guards issue 17 §5: more than 100 newer predictions (Replicate lists 100 per page, newest first) must not
    hide the one this queue already paid for."""
    version = fake.add_trained_version("likeness-tester/pelarbues")
    settings = GenerationSettings(PROMPT, version=version)
    fake.drop("POST", VERSION_CREATE, mode="reset", after=True)
    fake.inject("GET", r"^/v1/predictions$", 500, times=4)
    with pytest.raises(ServiceError):
        run(settings)
    (first,) = fake.prediction_ids()
    for i in range(120):                                                  # other work on the account since
        api.sdk.models.predictions.create(model=FLUX_DEV_LORA, input={"prompt": f"other {i}"})
    result = run(settings)
    assert result.prediction_id == first
    assert fake.count("POST", VERSION_CREATE) == 1
    assert fake.count("GET", r"^/v1/predictions$") >= 4 + 2                # it went on to the second page


# --- issue 17 §6: an expired prediction is not adopted again on every queue -----------------------------
def test_an_expired_prediction_is_dropped_with_what_happened_and_the_next_queue_generates_anew(fake, run, api,
                                                                                              tmp_path):
    """Guards issue 17 §6: ComfyUI died while a prediction ran; an hour later Replicate has removed its
    outputs. The queue after says so (not the safety checker) and forgets it; the one after pays for a new one."""
    version = fake.add_trained_version("likeness-tester/pelarbues")
    fake.plan_prediction(sync=False, ticks=3, predict_time=5.0)
    settings = GenerationSettings(PROMPT, version=version)
    with pytest.raises(KeyboardInterrupt):
        run(settings, progress=RecordingProgress(crash_when=lambda d, t, text: "Generating on Replicate" in text))
    (first,) = fake.prediction_ids()
    while api.get_json(f"/v1/predictions/{first}", "waiting")["status"] != "succeeded":
        pass
    fake.expire_prediction(first)
    with pytest.raises(ServiceError) as info:
        run(settings)
    message = str(info.value)
    assert first in message and "removed" in message and "hour" in message and "queue again" in message.lower()
    assert "safety" not in message.lower()
    assert [e["ref"] for e in spend(tmp_path)] == [first]                  # it was paid: recorded, once
    again = run(settings)
    assert again.prediction_id != first and fake.count("POST", VERSION_CREATE) == 2
    assert [e["ref"] for e in spend(tmp_path)] == [first, again.prediction_id]


# --- issue 17 §13: tokens for gated LoRAs go as secret inputs, never in a widget or a store ------------------
HF_LORA = "https://huggingface.co/someone/gated-face/resolve/main/face.safetensors"


def test_gated_loras_get_the_tokens_as_secret_inputs_and_nothing_stores_them(fake, run, tmp_path, monkeypatch):
    """Guards issue 17 §13: HF_TOKEN and CIVITAI_API_TOKEN reach flux-dev-lora only as hf_api_token /
    civitai_api_token (its secret inputs), and the result cache, the journal and the report never hold them."""
    hf, civitai = "hf_" "LIKENESStestHFtoken000000000000000", "civitaiLIKENESStest00000000000000"
    monkeypatch.setenv("HF_TOKEN", hf)
    monkeypatch.setenv("CIVITAI_API_TOKEN", civitai)
    result = run(GenerationSettings(PROMPT, lora_weights=HF_LORA), stack=[(STYLE, 0.2, 0.2)])
    inputs = sent(fake)
    assert inputs["hf_api_token"] == hf and inputs["civitai_api_token"] == civitai
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "user").rglob("*.json*"))
    assert stored and hf not in stored and civitai not in stored
    assert hf not in result.summary() and civitai not in json.dumps(result.inputs)
    plain = run(GenerationSettings(PROMPT, lora_weights="someone/face", seed=5))
    assert {"hf_api_token", "civitai_api_token"}.isdisjoint(sent(fake)) and plain.prediction_id


def test_a_token_pasted_into_a_lora_url_is_refused_before_anything_is_sent(fake, run):
    """Guards issue 17 §13: a `?token=` URL in a widget would be saved into the workflow and the PNG."""
    with pytest.raises(InputError) as info:
        run(GenerationSettings(PROMPT, lora_weights=f"{STYLE}?token=abc123secret"))
    assert "CIVITAI_API_TOKEN" in str(info.value) and "abc123secret" not in str(info.value)
    with pytest.raises(InputError, match="CIVITAI_API_TOKEN"):
        run(GenerationSettings(PROMPT, lora_weights="someone/face"), stack=[(f"{STYLE}?token=abc123secret", 0.2, 0.2)])
    assert fake.requests == []


def test_a_signed_url_is_sent_whole_but_stored_without_its_signature(fake, run, tmp_path):
    """Guards issue 17 §13: flux-dev-lora takes signed URLs; their signature is a credential, kept out of the
    journal, the result cache and the report."""
    signed = "https://bucket.s3.amazonaws.com/face.safetensors?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=f00d"
    result = run(GenerationSettings(PROMPT, lora_weights=signed))
    assert sent(fake)["lora_weights"] == signed
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "user").rglob("*.json*"))
    assert "face.safetensors" in stored and "f00d" not in stored and "AKIAEXAMPLE" not in stored
    assert "f00d" not in result.summary() and "f00d" not in json.dumps(result.inputs)


def test_each_image_of_a_prediction_has_its_own_journal_entry_and_share_of_the_cost(fake, run, tmp_path):
    settings = GenerationSettings(PROMPT, trigger_words="pelarbues", seed=9, lora_weights="someone/face",
                                  num_outputs=3)
    result = run(settings)
    assert fake.count("POST", OFFICIAL_CREATE) == 1 and len(result.images) == 3
    journal = SeedJournal(tmp_path / "user")
    entries = [journal.find(i) for i in result.journal_ids]
    assert [e.images for e in entries] == [[f] for f in result.files]
    assert [(e.extra["output"], e.extra["outputs"]) for e in entries] == [(0, 3), (1, 3), (2, 3)]
    assert all(e.extra["prediction_id"] == result.prediction_id and e.seed == 9 for e in entries)
    assert sum(e.extra["cost_usd"] for e in entries) == pytest.approx(result.cost_usd) == pytest.approx(3 * 0.032)
    again = run(settings)
    assert again.reused and again.journal_ids == result.journal_ids and fake.count("POST", OFFICIAL_CREATE) == 1


def test_a_result_stored_with_one_journal_id_is_still_reused(fake, run, tmp_path):
    """The result cache from before each image had its own entry kept one `journal_id`."""
    settings = GenerationSettings(PROMPT, seed=10, lora_weights="someone/face")
    first = run(settings)
    (stored,) = (tmp_path / "user" / "replicate_images").glob("*/result.json")
    record = json.loads(stored.read_text())
    record["journal_id"] = record.pop("journal_ids")[0]
    stored.write_text(json.dumps(record))
    again = run(settings)
    assert again.reused and again.journal_ids == first.journal_ids and fake.count("POST", OFFICIAL_CREATE) == 1

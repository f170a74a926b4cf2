"""Faults injected by the fake services and by killing ComfyUI: each case asserts nothing lost (captions,
trainings, LoRAs all end up there) and nothing paid twice (one successful caption per image, one training,
one prediction, one spend-ledger entry each).

What "timeout" means here: the service (or a proxy before it) gives up and answers 408 / 504. A client-side
socket timeout would need the SDKs' own 60–120 s read timeouts to expire per case; it is the same code path as
a reset connection (a transport error), which is injected directly.
"""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from fakes.gemini import image_color
from fakes.gemini_fixtures import photo_color, write_photo
from harness import photos
from harness.client import ComfyClient
from harness.comfy_server import pack_dir
from harness.restarts import kill_mid_training_and_requeue
from likeness.storage import sha256_file
from reliability.pipeline import OWNER, PREDICTION_CREATE, TRAINING_CREATE, full_pipeline, unique

TRAINER_NODE = "2"


# --- Gemini ----------------------------------------------------------------------------------------
class CaptionJob:
    """Solid-colour photos in ComfyUI's input, and loader → captioner for them."""

    def __init__(self, base_dir: Path, count: int = 3):
        self.tag = uuid.uuid4().hex[:6]
        self.trigger = f"tok{self.tag}"
        self.source = base_dir / "input" / f"cap-{self.tag}"
        self.source.mkdir(parents=True)
        for i in range(count):
            write_photo(self.source / f"{i:03d}.jpg", photo_color(i), size=(160, 160), variant=i)
        self.dest = base_dir / "output" / "likeness" / "datasets" / f"cap-{self.tag}"
        self.count = count
        self.user = pack_dir(base_dir)
        self.ledger_start = len(self._ledger_lines())   # the session's ledger: same photos, other tests

    def _ledger_lines(self) -> list[str]:
        path = self.user / "spend.jsonl"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def prompt(self) -> dict:
        return {"1": {"class_type": "LikenessDatasetLoader", "inputs": {
                    "folder": self.source.name, "trigger_word": self.trigger, "crop": "center", "size": 256,
                    "convert": True, "output_folder": f"likeness/datasets/cap-{self.tag}"}},
                "2": {"class_type": "LikenessGeminiCaptioner", "inputs": {
                    "dataset": ["1", 2], "model": "gemini-3.8-flash", "custom_model": "",
                    "instructions": "Caption the photo in the seed's template.", "overwrite": False,
                    "concurrency": 4, "rpm": 0, "forbidden_traits": "eye color", "vertex_project": "",
                    "vertex_location": "global"}}}

    def captions(self) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(self.dest.glob("*.txt"))}

    def ledger_entries_per_image(self) -> list[int]:
        entries = [json.loads(line) for line in self._ledger_lines()[self.ledger_start:]]
        return [sum(1 for e in entries if e["ref"] == sha256_file(p)) for p in sorted(self.dest.glob("*.jpg"))]


def answered_per_image(gemini, count: int) -> list[int]:
    """How many requests per photo got a whole 200 answer (what Gemini bills)."""
    ok = [r for r in gemini.generate_calls() if r.status == 200 and r.behaviour in ("ok", "")]
    return [sum(1 for r in ok if image_color(photo_color(i))(r)) for i in range(count)]


GEMINI_FAULTS = [("connection reset", "reset", 2), ("answer cut short", "truncated", 2), ("500", "500", 2),
                 ("HTML 502 from a proxy", "html_502", 2), ("503 overloaded", "503", 2),
                 ("408 request timeout", "408", 2), ("504 deadline exceeded", "504", 2),
                 ("429 storm", "rate_minute", 6)]


@pytest.mark.parametrize("label, kind, times", GEMINI_FAULTS, ids=[f[1] for f in GEMINI_FAULTS])
def test_gemini_faults_are_retried_and_each_caption_is_paid_once(comfy, client, gemini, tally, label, kind, times):
    job = CaptionJob(comfy.base_dir)
    gemini.script(kind, times=times, retry_delay="0.2s")
    result = client.run(job.prompt())
    assert result.status == "success", result.error_message
    captions = job.captions()
    assert len(captions) == job.count and all(c.startswith(f"{job.trigger}, ") for c in captions.values())
    faulted = [r for r in gemini.generate_calls() if r.behaviour == kind]
    assert len(faulted) == times                                    # the faults really happened
    assert answered_per_image(gemini, job.count) == [1] * job.count
    assert job.ledger_entries_per_image() == [1] * job.count
    tally("faults", f"Gemini {label} ×{times} while captioning", survived=True, requests=len(gemini.generate_calls()))


# --- Replicate -------------------------------------------------------------------------------------
def train_prompt(base_dir: Path, count: int = 3) -> tuple[dict, str]:
    trigger, model = unique("tok"), unique("face-")
    folder = unique("photos-")
    photos.photo_set(base_dir / "input" / folder, count, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    inputs = {"dataset": ["1", 2], "destination": f"{OWNER}/{model}", "steps": 0, "lora_rank": 32,
              "learning_rate": 0.0004, "layers": "7/12/16/20", "custom_layers_regex": "",
              "optimizer": "adamw8bit", "batch_size": 1, "resolution": "1024", "caption_dropout_rate": 0.1,
              "autocaption": False, "trainer_version": "", "extra_inputs": "{}"}
    return {"1": {"class_type": "LikenessDatasetLoader", "inputs": {
                "folder": folder, "trigger_word": trigger, "crop": "center", "size": 256, "convert": True,
                "output_folder": ""}},
            TRAINER_NODE: {"class_type": "LikenessReplicateTrainer", "inputs": inputs}}, model


def training_entries(base_dir: Path, training_id: str) -> int:
    lines = (pack_dir(base_dir) / "spend.jsonl").read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if json.loads(line)["ref"] == training_id)


def installed(base_dir: Path, model: str) -> list[Path]:
    loras = base_dir / "models" / "loras"
    return sorted(p for p in loras.iterdir() if model in p.name or p.name.startswith(".likeness")) \
        if loras.exists() else []


REPLICATE_FAULTS = [
    # label, method, path, status, times, after (the work was done, then the answer failed)
    ("500 on training polls", "GET", r"^/v1/trainings/[a-z0-9]+$", 500, 2, False),
    ("502 on training polls", "GET", r"^/v1/trainings/[a-z0-9]+$", 502, 2, False),
    ("503 on training polls", "GET", r"^/v1/trainings/[a-z0-9]+$", 503, 2, False),
    ("503 on the dataset upload", "POST", r"^/v1/files$", 503, 2, False),
    ("500 after the training was created", "POST", TRAINING_CREATE, 500, 1, True),
    ("502 on the weights download", "GET", r"/trained_model\.tar$", 502, 2, False),
    ("504 on the trainer lookup", "GET", r"^/v1/models/ostris/", 504, 2, False),
]


@pytest.mark.parametrize("label, method, path, status, times, after", REPLICATE_FAULTS,
                         ids=[f[0].replace(" ", "-") for f in REPLICATE_FAULTS])
def test_replicate_faults_lose_nothing_and_start_one_training(comfy, client, replicate_fake, tally, label, method,
                                                              path, status, times, after):
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.inject(method, path, status, times=times, after=after)
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    hit = [r for r in fake.requests if r.method == method and r.status == status]
    assert len(hit) == times, [(r.method, r.path, r.status) for r in fake.requests]
    (training_id,) = fake.training_ids()
    assert fake.count("POST", TRAINING_CREATE) == 1              # a create is never repeated blindly
    assert len(fake.trainings) == 1 and len(fake.files) == 1
    assert (comfy.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()
    assert training_entries(comfy.base_dir, training_id) == 1
    tally("faults", f"Replicate {label} ×{times}", survived=True, trainings=1)


REPLICATE_DROPS = [
    # label, method, path, mode (reset: no answer, a TCP reset; truncate: half the body, then a reset), times, after
    ("connection reset on training polls", "GET", r"^/v1/trainings/[a-z0-9]+$", "reset", 2, False),
    ("connection reset on the dataset upload", "POST", r"^/v1/files$", "reset", 1, False),
    ("connection reset after the training was created", "POST", TRAINING_CREATE, "reset", 1, True),
    ("weights download cut short (fewer bytes than its Content-Length)", "GET", r"/trained_model\.tar$",
     "truncate", 2, False),
]


@pytest.mark.parametrize("label, method, path, mode, times, after", REPLICATE_DROPS,
                         ids=[f[0].split(" (")[0].replace(" ", "-") for f in REPLICATE_DROPS])
def test_replicate_dropped_connections_lose_nothing_and_start_one_training(comfy, client, replicate_fake, tally,
                                                                          label, method, path, mode, times, after):
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.drop(method, path, mode=mode, times=times, after=after)
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    dropped = [r for r in fake.requests if r.method == method and r.dropped]
    assert len(dropped) == times, [(r.method, r.path, r.status, r.dropped) for r in fake.requests]
    (training_id,) = fake.training_ids()
    assert fake.count("POST", TRAINING_CREATE) == 1 and len(fake.trainings) == 1
    assert [p.name for p in installed(comfy.base_dir, model)] == [f"{model}.safetensors"]
    assert training_entries(comfy.base_dir, training_id) == 1
    tally("faults", f"Replicate {label} ×{times}", survived=True, trainings=1)


def test_a_429_storm_on_training_create_starts_exactly_one_training(comfy, client, replicate_fake, tally):
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.throttle("POST", TRAINING_CREATE, times=3, retry_after=0)      # within the client's 4 attempts
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert fake.count("POST", TRAINING_CREATE) == 4 and len(fake.trainings) == 1
    assert (comfy.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()
    tally("faults", "Replicate 429 storm ×3 on training create", survived=True, trainings=1)


def test_a_429_storm_longer_than_the_retries_stops_cleanly_and_the_requeue_trains_once(comfy, client,
                                                                                      replicate_fake, tally):
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.throttle("POST", TRAINING_CREATE, times=8, retry_after=0)
    first = client.run(prompt)
    assert first.status == "error" and "queue again" in first.error_message, first.error_message
    assert "throttling" in first.error_message and "did not confirm" not in first.error_message   # its own reason
    assert fake.trainings == {} and fake.count("POST", TRAINING_CREATE) == 4    # gave up; nothing created
    fake.injections.clear()                                      # the storm is over
    again = client.run(prompt)
    assert again.status == "success", again.error_message
    assert len(fake.trainings) == 1 and fake.count("POST", r"^/v1/files$") == 1     # the upload was kept
    assert (comfy.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()
    tally("faults", "Replicate 429 storm ×8 on training create (beyond the retries), requeued", survived=True,
          trainings=1, message=first.error_message.splitlines()[0][:160])


NO_CREDIT = {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model. Go to "
             "https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please "
             "wait a few minutes before trying again.", "status": 402}


def test_no_credit_on_training_start_keeps_the_billing_advice_and_the_requeue_uploads_nothing_again(
        comfy, client, replicate_fake, tally):
    """Issue 17 §7: a 402 is Replicate refusing (nothing was created): its reason and advice are kept."""
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.inject("POST", TRAINING_CREATE, 402, NO_CREDIT)
    first = client.run(prompt)
    assert first.status == "error" and "no credit left" in first.error_message and "billing" in first.error_message
    assert "did not confirm" not in first.error_message and fake.trainings == {}
    again = client.run(prompt)                                   # credit added
    assert again.status == "success", again.error_message
    assert len(fake.trainings) == 1 and fake.count("POST", r"^/v1/files$") == 1
    assert (comfy.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()
    tally("faults", "Replicate 402 (no credit) on training create, requeued after adding credit", survived=True,
          trainings=1, message=first.error_message.splitlines()[0][:160])


def test_an_html_page_from_a_proxy_is_a_clear_error_and_the_requeue_trains_once(comfy, client, replicate_fake,
                                                                                 tally):
    """Issue 17 §16: a 200 that is not Replicate's API (a captive portal's page) is explained, not a traceback."""
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.inject("GET", r"^/v1/models/ostris/", 200, b"<html><body>Sign in to continue</body></html>",
                {"Content-Type": "text/html"}, times=4)
    first = client.run(prompt)
    assert first.status == "error" and "not an answer from Replicate's API" in first.error_message, \
        first.error_message
    assert "Traceback" not in first.error_message and fake.trainings == {}
    again = client.run(prompt)
    assert again.status == "success", again.error_message
    assert len(fake.trainings) == 1
    tally("faults", "HTML page with status 200 (a proxy) on the trainer lookup ×4, requeued", survived=True,
          trainings=1, message=first.error_message.splitlines()[0][:160])


def test_a_redirect_instead_of_the_weights_is_refused_and_the_requeue_installs_without_training_again(
        comfy, client, replicate_fake, tally):
    """Issue 17 §16: a 3xx answer is never written as the LoRA file."""
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    fake.inject("GET", r"/trained_model\.tar$", 302, b"<html>Moved</html>",
                {"Location": "https://sso.example.net/login", "Content-Type": "text/html"})
    first = client.run(prompt)
    assert first.status == "error" and "redirect" in first.error_message and "sso.example.net" in first.error_message
    assert installed(comfy.base_dir, model) == []
    again = client.run(prompt)
    assert again.status == "success", again.error_message
    (training_id,) = fake.training_ids()
    assert fake.count("POST", TRAINING_CREATE) == 1 and training_entries(comfy.base_dir, training_id) == 1
    assert [p.name for p in installed(comfy.base_dir, model)] == [f"{model}.safetensors"]
    tally("faults", "weights download answered with a 302 to a sign-in page", survived=True,
          message=first.error_message.splitlines()[0][:160])


def test_a_stalled_dataset_upload_gives_up_and_the_requeue_trains_once(fresh_comfy, fake_replicate, tally):
    """Issue 17 §8: the SDK's upload has no timeout; a link that stops moving must not hold ComfyUI's queue."""
    fake = fake_replicate
    fake.reset()
    server = fresh_comfy(LIKENESS_UPLOAD_STALL_S="2")
    prompt, model = train_prompt(server.base_dir)
    released = fake.stall("POST", r"^/v1/files$")
    client = ComfyClient(server.url)
    try:
        first = client.run(prompt, timeout=120)
        released.set()
        fake.wait_for(lambda f: any(r.dropped for r in f.requests))
        assert first.status == "error" and "stalled" in first.error_message, first.error_message
        assert "nothing was paid" in first.error_message.lower() and fake.trainings == {}
        again = client.run(prompt)
    finally:
        released.set()
        client.close()
    assert again.status == "success", again.error_message
    assert len(fake.trainings) == 1
    assert (server.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()
    tally("faults", "dataset upload stalled (no bytes taken, no answer), requeued", survived=True, trainings=1,
          message=first.error_message.splitlines()[0][:160])


def test_a_lost_create_answer_and_a_failed_look_up_are_not_paid_twice_on_the_requeue(comfy, client, replicate_fake,
                                                                                       tally):
    """Issue 17 §5: the intent is on disk before the create; the requeue finds the prediction instead of paying."""
    fake = replicate_fake
    version = fake.add_trained_version(f"{OWNER}/{unique('faces-')}")
    prompt = {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": {
        "prompt": "a portrait", "trigger_words": "tok", "seed": 12, "steps": 28, "guidance": 2.75,
        "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
        "lora_strength": 0.9, "go_fast": False, "run_on": "auto", "version": version, "lora_weights": "",
        "rerun": False}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": unique("fault-")}}}
    fake.drop("POST", PREDICTION_CREATE, mode="reset", after=True)
    fake.inject("GET", r"^/v1/predictions$", 500, times=4)
    first = client.run(prompt)
    assert first.status == "error", first.error_message
    (prediction_id,) = fake.prediction_ids()
    again = client.run(prompt)
    assert again.status == "success", again.error_message
    assert fake.prediction_ids() == [prediction_id] and fake.count("POST", PREDICTION_CREATE) == 1
    assert training_entries(comfy.base_dir, prediction_id) == 1
    tally("faults", "prediction create answer lost and the look-up failed, requeued", survived=True, predictions=1)


def test_a_failed_answer_after_the_prediction_was_created_does_not_pay_twice(comfy, client, replicate_fake, tally):
    fake = replicate_fake
    version = fake.add_trained_version(f"{OWNER}/{unique('faces-')}")
    prompt = {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": {
        "prompt": "a portrait", "trigger_words": "tok", "seed": 11, "steps": 28, "guidance": 2.75,
        "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
        "lora_strength": 0.9, "go_fast": True, "run_on": "auto", "version": version, "lora_weights": "",
        "rerun": False}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": unique("fault-")}}}
    fake.inject("POST", PREDICTION_CREATE, 502, times=1, after=True)
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    (prediction_id,) = fake.prediction_ids()                     # never a second paid prediction
    created = fake.count("POST", PREDICTION_CREATE)
    assert created == 1
    assert any("did not confirm the prediction, but it was created" in t for t in result.texts_for("1"))
    assert training_entries(comfy.base_dir, prediction_id) == 1
    tally("faults", "Replicate 502 after the prediction was created", survived=True, predictions=created)


def corrupt_tars(good: bytes) -> dict[str, bytes]:
    header_bad = bytearray(good)
    header_bad[148:156] = b"0000000\0"                          # the first member header's checksum field
    lora_member = next(m for m in tarfile.open(fileobj=io.BytesIO(good)) if m.name.endswith("lora.safetensors"))
    short_lora = good[: lora_member.offset_data + lora_member.size // 2]
    return {"a tar cut off half way": good[: len(good) // 2],
            "a tar with a bad header checksum": bytes(header_bad),
            "a LoRA cut off inside the tar": short_lora,
            "an empty download": b""}


@pytest.mark.parametrize("variant", ["a tar cut off half way", "a tar with a bad header checksum",
                                     "a LoRA cut off inside the tar", "an empty download"])
def test_a_damaged_weights_download_is_refused_and_the_requeue_installs_without_training_again(
        comfy, client, replicate_fake, tally, variant):
    fake = replicate_fake
    prompt, model = train_prompt(comfy.base_dir)
    damaged: dict[str, bytes] = {}
    original = type(fake).weights_tar

    def damaged_tar(training_id: str) -> bytes:
        if training_id not in damaged:
            damaged[training_id] = corrupt_tars(original(fake, training_id))[variant]
        return damaged[training_id]

    fake.weights_tar = damaged_tar                               # this fake instance serves a damaged tar
    try:
        result = client.run(prompt)
    finally:
        del fake.weights_tar
    assert fake.weights_tar.__func__ is original
    assert result.status == "error", variant
    message = result.error_message
    assert "ServiceError" in message and ("tar" in message or "LoRA" in message), message
    assert "download" in message.lower() or "queue" in message.lower(), message
    assert installed(comfy.base_dir, model) == []                # no partial LoRA, no work folder left
    again = client.run(prompt)                                   # the download now arrives whole
    assert again.status == "success", again.error_message
    (training_id,) = fake.training_ids()
    assert fake.count("POST", TRAINING_CREATE) == 1 and training_entries(comfy.base_dir, training_id) == 1
    assert [p.name for p in installed(comfy.base_dir, model)] == [f"{model}.safetensors"]
    tally("faults", f"weights download: {variant}", survived=True, message=message.splitlines()[0][:160])


# --- ComfyUI killed --------------------------------------------------------------------------------
def test_comfyui_killed_mid_captioning_keeps_finished_captions_and_pays_only_the_rest(fresh_comfy, fake_gemini, tally):
    gemini = fake_gemini
    gemini.reset()
    server = fresh_comfy()
    job = CaptionJob(server.base_dir, count=4)
    held = gemini.hold(image_color(photo_color(3)), times=1)      # the 4th photo's answer never comes back
    client = ComfyClient(server.url)
    try:
        client.queue(job.prompt())
        client.wait_for_event(lambda e: e["type"] == "progress" and e["data"].get("node") == "2"
                              and e["data"]["value"] >= 3, timeout=120)
        before = job.captions()
        assert len(before) == 3
        server.stop(kill=True)                                     # SIGKILL while one request is open
    finally:
        client.close()
    held.set()               # Gemini answers the 4th to a dead socket (it may bill that one: nothing to do)
    asked_before = [sum(1 for r in gemini.generate_calls() if image_color(photo_color(i))(r)) for i in range(4)]
    server.start()
    client = ComfyClient(server.url)
    try:
        result = client.run(job.prompt())
    finally:
        client.close()
    assert result.status == "success", result.error_message
    after = job.captions()
    assert len(after) == 4 and all(after[name] == text for name, text in before.items())
    asked_after = [sum(1 for r in gemini.generate_calls() if image_color(photo_color(i))(r)) - asked_before[i]
                   for i in range(4)]
    assert asked_after == [0, 0, 0, 1]                             # the 3 done before the kill: not asked again
    assert job.ledger_entries_per_image() == [1, 1, 1, 1]
    tally("faults", "ComfyUI SIGKILLed mid-captioning, restarted", survived=True)


def test_comfyui_killed_mid_training_in_the_full_pipeline_reattaches(fresh_comfy, fake_gemini, fake_replicate, tally):
    gemini, fake = fake_gemini, fake_replicate
    gemini.reset()
    fake.reset()
    server = fresh_comfy()
    client = ComfyClient(server.url)
    run = full_pipeline(server.base_dir, client.get("/object_info"), photo_count=3)
    trainer = run.node("LikenessReplicateTrainer")
    (training_id,), result = kill_mid_training_and_requeue(server, fake, run.prompt, trainer)
    assert result.status == "success", result.error_message
    assert fake.training_ids() == [training_id] and fake.count("POST", TRAINING_CREATE) == 1
    assert any(f"Re-attaching to training {training_id}" in t for t in result.texts_for(trainer))
    assert len(gemini.generate_calls()) == 3                       # captions made before the kill: kept
    assert len(fake.prediction_ids()) == 1 and fake.count("POST", r"^/v1/files$") == 1
    assert training_entries(server.base_dir, training_id) == 1
    tally("faults", "ComfyUI SIGKILLed mid-training (full pipeline), restarted", survived=True)


# --- disk full ---------------------------------------------------------------------------------------
@pytest.fixture
def small_loras(tmp_path):
    """models/loras on a 256 KB tmpfs (a trained LoRA here is ~600 KB): the disk fills while it is written."""
    base = tmp_path / "comfy-base"
    loras = base / "models" / "loras"
    loras.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "likeness-full", str(loras)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"this test needs to mount a small tmpfs (root, or CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield loras
    subprocess.run(["umount", "-l", str(loras)], check=False)


def test_disk_full_while_writing_the_lora_leaves_no_partial_file_and_the_requeue_installs(
        fresh_comfy, fake_replicate, small_loras, tally):
    fake = fake_replicate
    fake.reset()
    server = fresh_comfy()
    assert server.base_dir / "models" / "loras" == small_loras
    prompt, model = train_prompt(server.base_dir)
    client = ComfyClient(server.url)
    try:
        result = client.run(prompt)
        assert result.status == "error"
        message = result.error_message
        assert "space" in message.lower() and "models/loras" in message.replace(str(small_loras), "models/loras")
        assert "queue" in message.lower() and "not be paid again" in message, message
        assert list(small_loras.iterdir()) == []                   # no partial LoRA, no work folder
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_loras)], check=True)
        again = client.run(prompt)
    finally:
        client.close()
    assert again.status == "success", again.error_message
    (training_id,) = fake.training_ids()
    assert fake.count("POST", TRAINING_CREATE) == 1 and training_entries(server.base_dir, training_id) == 1
    assert [p.name for p in small_loras.iterdir()] == [f"{model}.safetensors"]
    tally("faults", "disk full while writing the LoRA (tmpfs models/loras)", survived=True,
          message=message.splitlines()[0][:160])


@pytest.mark.parametrize("label, kind", [("MAX_TOKENS with no text", "max_tokens"), ("answer not JSON", "not_json")],
                         ids=["max_tokens", "not_json"])
def test_a_failed_gemini_answer_is_not_cached_and_the_next_run_captions_the_photo(comfy, client, gemini, tally,
                                                                                   label, kind):
    """A MAX_TOKENS or unparsable answer fails that photo for this run only (issue 17, item 19): the next run
    asks Gemini again for it, and for nothing else."""
    job = CaptionJob(comfy.base_dir)
    gemini.script(kind, match=image_color(photo_color(1)), times=1)
    first = client.run(job.prompt())
    assert first.status == "success", first.error_message
    assert "001.jpg: failed" in "\n".join(first.outputs["2"]["text"]) and "001.txt" not in job.captions()
    again = job.prompt()
    again["2"]["inputs"]["rpm"] = 600          # another input, so ComfyUI runs the node instead of its cache
    second = client.run(again)
    assert second.status == "success", second.error_message
    assert sorted(job.captions()) == ["000.txt", "001.txt", "002.txt"]
    assert answered_per_image(gemini, job.count) == [1, 1, 1]        # nothing asked twice after a good answer
    tally("faults", f"Gemini {label} on one photo: not cached, captioned on the next run", survived=True)


# --- files the pack keeps ----------------------------------------------------------------------------
def test_a_torn_line_in_the_spend_ledger_does_not_block_a_paid_node(comfy, client, gemini, tally):
    """A crash mid-append left half a line in spend.jsonl: the captioner (a paid node) still checks the budget,
    runs, and records its spending on lines of their own (issue 17, item 15)."""
    ledger = comfy.pack_dir / "spend.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    torn = '{"time": 1, "month": "20'
    with open(ledger, "a", encoding="utf-8") as f:
        f.write(torn)                                              # no newline: the crash came mid-line
    job = CaptionJob(comfy.base_dir)                               # counts the ledger's lines after the torn one
    config = comfy.pack_dir / "config.json"
    config.write_text(json.dumps({"monthly_budget_usd": 1000}), encoding="utf-8")   # the ledger is read
    try:
        result = client.run(job.prompt())
        assert result.status == "success", result.error_message
        assert len(job.captions()) == job.count
        lines = ledger.read_text(encoding="utf-8").splitlines()
        assert torn in lines                                       # the torn part stayed on its own line
        assert job.ledger_entries_per_image() == [1] * job.count
        assert "spend.jsonl line" in comfy.log_text() and "was skipped" in comfy.log_text()
    finally:                                                       # other tests read this session's ledger
        config.unlink(missing_ok=True)
        kept = [line for line in ledger.read_text(encoding="utf-8").splitlines() if line != torn]
        ledger.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    tally("faults", "spend.jsonl with a line torn by a crash: paid node runs, warning logged", survived=True)

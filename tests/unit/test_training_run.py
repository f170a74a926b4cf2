"""train_lora against the fake Replicate server: the whole run, and never a second paid training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.progress import RecordingProgress
from likeness.errors import BudgetError, InputError, ServiceError
from likeness.progress import Interrupted
from likeness.cloud.replicate_client import connect
from likeness.training.training import PollSettings, TrainingSettings, train_lora
from likeness.training.training_ledger import TrainingLedger

FAST = PollSettings(interval=0.001, check_every=0.001)
DEST = "likeness-tester/pelarbues"
CREATE = r"/versions/[0-9a-f]+/trainings$"


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


@pytest.fixture
def api(replicate_api):
    return replicate_api


@pytest.fixture
def run(api, tmp_path):
    def go(dataset, progress=None, **settings):
        settings.setdefault("destination", DEST)
        return train_lora(dataset, TrainingSettings(**settings), user_dir=tmp_path / "user",
                          loras_dir=tmp_path / "loras", progress=progress or RecordingProgress(), api=api, poll=FAST)
    return go


def spend(tmp_path) -> list[dict]:
    path = tmp_path / "user" / "spend.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_happy_path_trains_follows_progress_and_installs_the_lora(fake, run, make_dataset, tmp_path):
    progress = RecordingProgress()
    record = run(make_dataset(3), progress)
    assert fake.count("POST", CREATE) == 1
    training = fake.training(record.id)
    assert training["status"] == "succeeded"
    assert training["input"]["steps"] == 120 and training["input"]["lora_rank"] == 32
    assert training["input"]["input_images"].startswith(f"{fake.url}/v1/files/")
    assert record.lora_file == "pelarbues.safetensors"
    assert Path(record.lora_path).parent == tmp_path / "loras"
    assert record.version.startswith(f"{DEST}:") and record.trigger_word == "pelarbues"
    # progress: step counts from the tqdm lines, rising to the end, with the training's page
    steps = [done for done, total, _ in progress.updates if total == 120]
    assert steps == sorted(steps) and steps[-1] == 120 and any(0 < s < 120 for s in steps)
    assert any("step 60/120 (50%)" in text and f"/p/{record.id}" in text for _, _, text in progress.updates)
    # cost: estimate before, real after (predict_time × H100 price), recorded once
    assert any("about $" in t and "estimate" in t for t in progress.texts)
    assert record.predict_time == training["metrics"]["predict_time"]
    assert record.cost_usd == pytest.approx(record.predict_time * 0.001525)
    assert [(e["ref"], e["service"]) for e in spend(tmp_path)] == [(record.id, "replicate-training")]
    assert all(r.authorized for r in fake.requests)


def test_requeue_reuses_the_finished_lora_without_any_request(fake, run, make_dataset, tmp_path):
    ds = make_dataset(3)
    first = run(ds)
    before = len(fake.requests)
    again = run(ds)
    assert again.reused and again.id == first.id and again.lora_file == first.lora_file
    assert len(fake.requests) == before                 # not even a status check
    assert len(spend(tmp_path)) == 1


def test_a_deleted_lora_is_installed_again_from_the_same_training(fake, run, make_dataset):
    ds = make_dataset(3)
    first = run(ds)
    Path(first.lora_path).unlink()
    again = run(ds)
    assert again.id == first.id and Path(again.lora_path).exists()
    assert fake.count("POST", CREATE) == 1


def test_changing_an_input_is_new_work(fake, run, make_dataset):
    ds = make_dataset(3)
    run(ds)
    second = run(ds, lora_rank=16)
    assert fake.count("POST", CREATE) == 2
    assert second.lora_file == "pelarbues-v2.safetensors" and "kept it" in second.note


def test_a_crash_mid_training_reattaches_to_the_same_training(fake, run, make_dataset):
    ds = make_dataset(3)
    with pytest.raises(KeyboardInterrupt):
        run(ds, RecordingProgress(crash_when=lambda done, total, text: done >= 30))
    (training_id,) = fake.training_ids()
    assert fake.training(training_id)["status"] == "processing"
    record = run(ds)
    assert record.id == training_id and record.reused
    assert fake.count("POST", CREATE) == 1 and fake.count("POST", "/v1/files") == 1


def test_interrupt_cancels_the_training_on_replicate_and_says_so(fake, run, make_dataset, tmp_path):
    progress = RecordingProgress(interrupt_when=lambda done, total, text: done >= 30)
    with pytest.raises(Interrupted, match="canceled training"):
        run(make_dataset(3), progress)
    (training_id,) = fake.training_ids()
    assert fake.training(training_id)["status"] == "canceled"
    assert fake.count("POST", rf"/{training_id}/cancel$") == 1
    assert any("canceled training" in t for t in progress.texts)
    assert [e["ref"] for e in spend(tmp_path)] == [training_id]          # the minutes it ran are billed
    entry = TrainingLedger(tmp_path / "user").find(training_id)
    assert entry["status"] == "canceled"


def test_after_a_cancel_queuing_again_starts_a_new_training(fake, run, make_dataset):
    ds = make_dataset(3)
    with pytest.raises(Interrupted):
        run(ds, RecordingProgress(interrupt_when=lambda *a: True))
    record = run(ds)
    assert fake.count("POST", CREATE) == 2 and fake.training(record.id)["status"] == "succeeded"


def test_a_failed_training_gives_replicates_error_text(fake, run, make_dataset, tmp_path):
    fake.plan_next(outcome="failed", error="CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(ServiceError, match="training failed on Replicate: CUDA out of memory") as info:
        run(make_dataset(3))
    assert "Last log lines" in str(info.value)
    assert list((tmp_path / "loras").glob("*")) == []
    assert len(spend(tmp_path)) == 1


def test_an_aborted_training_which_the_sdk_cannot_parse_is_reported(fake, run, make_dataset):
    fake.plan_next(outcome="aborted")
    with pytest.raises(ServiceError, match="aborted training .* before it started"):
        run(make_dataset(3))


def test_a_training_canceled_elsewhere_is_reported(fake, run, make_dataset):
    progress = RecordingProgress()

    def cancel_on_website(done, total, text):
        if done >= 30 and fake.training_ids():
            fake._cancel(fake.trainings[fake.training_ids()[0]])
        return False

    progress.interrupt_when = cancel_on_website
    with pytest.raises(ServiceError, match="was canceled on Replicate"):
        run(make_dataset(3), progress)


def test_missing_destination_is_created_private(fake, run, make_dataset):
    assert DEST not in fake.models
    run(make_dataset(3))
    assert fake.models[DEST]["visibility"] == "private"
    assert fake.count("POST", r"^/v1/models$") == 1


def test_existing_destination_is_used_as_is(fake, run, make_dataset):
    fake.add_model("likeness-tester", "pelarbues", visibility="public")
    run(make_dataset(3))
    assert fake.count("POST", r"^/v1/models$") == 0


def test_a_bare_model_name_uses_the_accounts_owner(fake, run, make_dataset):
    record = run(make_dataset(3), destination="my-face")
    assert record.destination == "likeness-tester/my-face" and "likeness-tester/my-face" in fake.models


def test_bad_destination_is_refused_before_anything(fake, run, make_dataset):
    with pytest.raises(InputError, match="destination must be"):
        run(make_dataset(3), destination="Me/My Face")
    assert fake.requests == []


def test_schema_invalid_input_is_refused_before_any_upload(fake, run, make_dataset):
    with pytest.raises(InputError, match="wandb_sample_interval: 0 is below the minimum 1"):
        run(make_dataset(3), extra_inputs='{"wandb_sample_interval": 0}')
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_validation_follows_the_live_trainer_schema_not_a_copy(fake, run, make_dataset):
    fake.trainer_schema["components"]["schemas"]["TrainingInput"]["properties"]["steps"]["maximum"] = 100
    with pytest.raises(InputError, match="steps: 120 is above the maximum 100"):
        run(make_dataset(3))
    assert fake.count("POST", "/v1/files") == 0


def test_a_pinned_trainer_version_is_used_and_an_unknown_one_is_refused(fake, run, make_dataset):
    from fakes.replicate import TRAINER_VERSION

    record = run(make_dataset(3), trainer_version=TRAINER_VERSION)
    assert record.trainer_version.endswith(TRAINER_VERSION)
    with pytest.raises(InputError, match="has no version"):
        run(make_dataset(2), trainer_version="0" * 64)


def test_uncaptioned_photos_need_autocaption(fake, run, make_dataset):
    with pytest.raises(InputError, match="no caption"):
        run(make_dataset(3, captions=False))
    assert fake.requests == []
    record = run(make_dataset(3, captions=False, folder_name="auto"), autocaption=True)
    assert fake.training(record.id)["input"]["autocaption"] is True


def test_budget_below_the_estimate_refuses_before_upload(fake, run, make_dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.10")
    with pytest.raises(BudgetError, match="refused before anything was paid"):
        run(make_dataset(3))
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0
    assert spend(tmp_path) == []


def test_throttled_create_is_retried_after_the_time_replicate_names(fake, run, make_dataset, sleeps):
    fake.throttle("POST", CREATE, times=1, retry_after=7)
    record = run(make_dataset(3))
    assert fake.count("POST", CREATE) == 2 and len(fake.training_ids()) == 1
    assert 7.0 in sleeps and fake.training(record.id)["status"] == "succeeded"


def test_a_500_after_the_training_was_created_adopts_it_instead_of_posting_again(fake, run, make_dataset):
    fake.inject("POST", CREATE, 500, after=True)      # Replicate created it, then the answer was lost
    record = run(make_dataset(3))
    assert fake.count("POST", CREATE) == 1 and fake.training_ids() == [record.id]
    assert fake.count("GET", r"^/v1/trainings$") == 1


def test_a_500_before_creation_is_reported_and_the_next_queue_checks_first(fake, run, make_dataset, tmp_path):
    ds = make_dataset(3)
    fake.inject("POST", CREATE, 500)
    with pytest.raises(ServiceError, match="Nothing was started"):
        run(ds)
    assert fake.training_ids() == []
    record = run(ds)
    assert fake.count("GET", r"^/v1/trainings$") == 2    # looked before posting again
    assert fake.training_ids() == [record.id]


def test_server_errors_while_polling_are_retried(fake, run, make_dataset, sleeps):
    fake.inject("GET", r"^/v1/trainings/[a-z0-9]+$", 500, times=2)
    record = run(make_dataset(3))
    assert fake.training(record.id)["status"] == "succeeded" and len(sleeps) >= 2


def test_an_upload_500_is_retried_because_a_file_costs_nothing(fake, run, make_dataset):
    fake.inject("POST", r"^/v1/files$", 500)
    run(make_dataset(3))
    assert fake.count("POST", r"^/v1/files$") == 2


def test_no_weights_url_says_where_to_get_the_lora(fake, run, make_dataset):
    fake.plan_next(weights=False)
    with pytest.raises(ServiceError, match="gave no weights URL"):
        run(make_dataset(3))


def test_a_malicious_tar_installs_nothing_and_requeue_does_not_train_again(fake, run, make_dataset, tmp_path):
    ds = make_dataset(3)
    fake.plan_next(tar="traversal")
    with pytest.raises(ServiceError, match="outside the archive"):
        run(ds)
    assert list((tmp_path / "loras").iterdir()) == []
    with pytest.raises(ServiceError, match="outside the archive"):
        run(ds)                                          # the paid training is not repeated
    assert fake.count("POST", CREATE) == 1


def test_connect_uses_the_token_and_base_url_from_the_environment(fake, monkeypatch, make_dataset, tmp_path):
    monkeypatch.setenv("REPLICATE_API_TOKEN", fake.token)
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)
    record = train_lora(make_dataset(2), TrainingSettings(DEST), user_dir=tmp_path / "u",
                        loras_dir=tmp_path / "l", api=connect(tmp_path / "u"), poll=FAST)
    assert fake.training(record.id)["status"] == "succeeded"
    assert fake.requests[0].user_agent.startswith("replicate-python/")


# --- issue 17 §7: a refusal on starting the training keeps its reason; no re-upload on the requeue ----------
NO_CREDIT = {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model. Go to "
             "https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please "
             "wait a few minutes before trying again.", "status": 402}


def test_no_credit_on_starting_the_training_says_so_and_the_requeue_reuses_the_upload(fake, run, make_dataset):
    """Guards issue 17 §7: a 402 is a refusal (nothing was created): its reason and advice are kept, not reworded
    as "may exist"; queuing again after adding credit starts the training without uploading the zip again."""
    ds = make_dataset(3)
    fake.inject("POST", CREATE, 402, NO_CREDIT)
    with pytest.raises(ServiceError) as info:
        run(ds)
    assert "no credit left" in str(info.value) and "billing" in str(info.value)
    assert "did not confirm" not in str(info.value) and fake.training_ids() == []
    assert fake.count("GET", r"^/v1/trainings$") == 0            # a refusal: nothing to look for
    record = run(ds)
    assert fake.training(record.id)["status"] == "succeeded"
    assert fake.count("POST", r"^/v1/files$") == 1 and fake.count("POST", CREATE) == 2


def test_a_429_storm_beyond_the_retries_says_throttled_and_the_requeue_reuses_the_upload(fake, run, make_dataset,
                                                                                         sleeps):
    """Guards issue 17 §7: throttling that outlasts the retries keeps its own message and advice."""
    ds = make_dataset(3)
    fake.throttle("POST", CREATE, times=8, retry_after=0)
    with pytest.raises(ServiceError) as info:
        run(ds)
    assert "throttling" in str(info.value) and "did not confirm" not in str(info.value)
    fake.injections.clear()
    record = run(ds)
    assert fake.training_ids() == [record.id] and fake.count("POST", r"^/v1/files$") == 1


def test_a_refused_start_after_a_failed_training_starts_anew_on_the_requeue(fake, run, make_dataset):
    """Guards issue 17 §7: the ledger's 'refused' must not send the next queue back to the earlier failed one."""
    ds = make_dataset(3)
    fake.plan_next(outcome="failed")
    with pytest.raises(ServiceError, match="training failed"):
        run(ds)
    fake.inject("POST", CREATE, 402, NO_CREDIT)
    with pytest.raises(ServiceError, match="no credit left"):
        run(ds)
    record = run(ds)
    assert fake.training(record.id)["status"] == "succeeded" and len(fake.training_ids()) == 2


def test_a_refused_start_whose_upload_has_expired_uploads_again(fake, run, make_dataset):
    """Guards issue 17 §7 (the other side): an upload Replicate no longer has is made again, never sent dead."""
    ds = make_dataset(3)
    fake.inject("POST", CREATE, 402, NO_CREDIT)
    with pytest.raises(ServiceError):
        run(ds)
    fake.files.clear()                                           # expired (the Files API keeps them a day)
    record = run(ds)
    assert fake.count("POST", r"^/v1/files$") == 2 and fake.training(record.id)["status"] == "succeeded"


# --- issue 17 §8: a stalled upload gives up, and Cancel works while it hangs -------------------------------
@pytest.mark.timeout(60)
def test_a_stalled_upload_gives_up_with_a_clear_message_and_nothing_paid(fake, run, make_dataset, monkeypatch):
    """Guards issue 17 §8: the SDK's upload has no timeout; a link that stops moving must not hang the node."""
    monkeypatch.setenv("LIKENESS_UPLOAD_STALL_S", "1")
    released = fake.stall("POST", r"^/v1/files$")
    try:
        with pytest.raises(ServiceError, match="stalled") as info:
            run(make_dataset(3))
    finally:
        released.set()
        fake.wait_for(lambda f: any(r.dropped for r in f.requests))       # the stalled request has ended
    assert "nothing was paid" in str(info.value).lower() and "queue again" in str(info.value).lower()
    assert fake.count("POST", CREATE) == 0


@pytest.mark.timeout(60)
def test_cancel_during_a_stalled_upload_stops_at_once(fake, run, make_dataset, monkeypatch):
    """Guards issue 17 §8: Cancel is noticed while the upload hangs (not after the stall timeout)."""
    monkeypatch.setenv("LIKENESS_UPLOAD_STALL_S", "600")
    released = fake.stall("POST", r"^/v1/files$")
    progress = RecordingProgress(interrupt_when=lambda done, total, text: "Uploading" in text)
    try:
        with pytest.raises(Interrupted, match="nothing was paid"):
            run(make_dataset(3), progress)
    finally:
        released.set()
        fake.wait_for(lambda f: any(r.dropped for r in f.requests))
    assert fake.count("POST", CREATE) == 0


# --- issue 17 §10: more than 30 photos is refused unless the user opts in -----------------------------------
def test_more_than_30_photos_is_refused_with_the_cost_difference_unless_opted_in(fake, run, make_dataset):
    """Guards issue 17 §10: the seed found 40–50 photos "lost focus", and auto steps grow with the photos."""
    ds = make_dataset(31)
    with pytest.raises(InputError) as info:
        run(ds)
    message = str(info.value)
    assert "31 photos" in message and "1240 steps" in message and "1200 steps" in message
    assert message.count("$") >= 2 and "allow_over_30_photos" in message
    assert fake.requests == []                                   # refused before anything was asked of Replicate
    record = run(ds, allow_over_30_photos=True)
    assert fake.training(record.id)["input"]["steps"] == 1240


# --- issue 17 §12: only trusted trainers, unless allowed outside the workflow ---------------------------------
def _third_party_trainer(fake) -> str:
    from fakes.replicate import trainer_openapi_schema

    version = "ab" * 32
    fake.add_model("face-collector", "flux-trainer", visibility="public",
                   versions=[fake._version(version, trainer_openapi_schema())])
    return f"face-collector/flux-trainer:{version}"


def test_a_third_party_trainer_is_refused_unless_allowed_outside_the_workflow(fake, run, make_dataset, tmp_path,
                                                                              monkeypatch):
    """Guards issue 17 §12: a shared workflow must not send the user's face photos to someone else's trainer."""
    monkeypatch.delenv("LIKENESS_ALLOWED_TRAINERS", raising=False)
    other = _third_party_trainer(fake)
    with pytest.raises(InputError) as info:
        run(make_dataset(3), trainer_version=other)
    assert "face-collector/flux-trainer" in str(info.value) and "LIKENESS_ALLOWED_TRAINERS" in str(info.value)
    assert fake.requests == []
    (tmp_path / "user").mkdir(exist_ok=True)
    (tmp_path / "user" / "config.json").write_text('{"allowed_trainers": ["face-collector/flux-trainer"]}')
    record = run(make_dataset(3), trainer_version=other)
    assert fake.training(record.id)["model"] == "face-collector/flux-trainer"


def test_replicates_own_trainers_need_no_opt_in(monkeypatch, tmp_path):
    monkeypatch.delenv("LIKENESS_ALLOWED_TRAINERS", raising=False)
    from likeness.training.training import trainer_allowed

    assert trainer_allowed("ostris/flux-dev-lora-trainer", tmp_path)
    assert trainer_allowed("replicate/fast-flux-trainer", tmp_path)
    assert not trainer_allowed("someone/fast-flux-trainer", tmp_path)
    monkeypatch.setenv("LIKENESS_ALLOWED_TRAINERS", "someone/fast-flux-trainer, other/x")
    assert trainer_allowed("someone/fast-flux-trainer", tmp_path)


# --- issue 17 §13: third-party keys go only as the trainer's secret inputs -------------------------------
def test_hf_and_wandb_keys_go_as_secret_inputs_only_when_their_feature_is_asked(fake, run, make_dataset, tmp_path,
                                                                                monkeypatch):
    """Guards issue 17 §13: HF_TOKEN / WANDB_API_KEY from the environment (or the key files) reach the trainer
    only as its secret inputs hf_token / wandb_api_key, only for hf_repo_id / W&B logging, and are never stored."""
    hf, wandb = "hf_" "LIKENESStestHFtoken000000000000000", "wandbLIKENESStest0000000000000000000000000"
    monkeypatch.setenv("HF_TOKEN", hf)
    monkeypatch.setenv("WANDB_API_KEY", wandb)
    plain = run(make_dataset(3))
    assert {"hf_token", "wandb_api_key"}.isdisjoint(fake.training(plain.id)["input"])
    asked = run(make_dataset(3, folder_name="other"),
                extra_inputs='{"hf_repo_id": "me/my-face", "wandb_project": "faces"}')
    sent_input = fake.training(asked.id)["input"]
    assert sent_input["hf_token"] == hf and sent_input["wandb_api_key"] == wandb
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "user").rglob("*") if p.is_file())
    stored += Path(asked.lora_path).read_bytes().decode("latin-1")
    assert hf not in stored and wandb not in stored
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(InputError, match="HF_TOKEN"):
        run(make_dataset(3, folder_name="third"), extra_inputs='{"hf_repo_id": "me/my-face"}')


# --- issue 17 §16: answers that are not Replicate's are wrapped; redirects and foreign hosts refused ----------
def test_an_html_page_instead_of_the_create_answer_looks_before_posting_again(fake, run, make_dataset):
    """Guards issue 17 §16: a proxy's HTML page with status 200 is not a traceback; the training may exist."""
    fake.inject("POST", CREATE, 200, b"<html><body>Access denied by proxy</body></html>",
                {"Content-Type": "text/html"}, after=True)
    record = run(make_dataset(3))
    assert fake.count("POST", CREATE) == 1 and fake.training_ids() == [record.id]


def test_interrupting_a_training_replicate_just_aborted_is_reported_not_a_traceback(fake, run, make_dataset):
    """Guards issue 17 §16: the cancel answer of an aborted training fails the SDK's model (no "aborted")."""
    def abort_then_stop(done, total, text):
        if fake.training_ids():
            fake.abort(fake.training_ids()[0])
            return True
        return False

    with pytest.raises(Interrupted) as info:
        run(make_dataset(3), RecordingProgress(interrupt_when=abort_then_stop))
    assert "aborted" in str(info.value)


def test_a_redirect_is_never_saved_as_the_lora(fake, run, make_dataset, tmp_path):
    """Guards issue 17 §16: a 3xx answer to the weights download is refused by name, nothing is saved."""
    fake.inject("GET", r"trained_model\.tar$", 302, b"<html>Moved</html>",
                {"Location": "https://login.example.net/sso", "Content-Type": "text/html"})
    with pytest.raises(ServiceError, match="redirect") as info:
        run(make_dataset(3))
    assert "login.example.net" in str(info.value)
    assert not (tmp_path / "loras").exists() or list((tmp_path / "loras").iterdir()) == []


def test_a_redirect_to_replicates_own_host_is_followed(fake, run, make_dataset):
    fake.inject("GET", r"trained_model\.tar$", 302, b"", {"Location": "trained_model.tar"})
    record = run(make_dataset(3))
    assert Path(record.lora_path).is_file() and fake.count("GET", r"trained_model\.tar$") == 2


def test_weights_on_another_host_are_not_fetched_with_the_token(fake, run, make_dataset):
    """Guards issue 17 §16: the weights download checks the host (Replicate's delivery hosts only)."""
    fake.plan_next(weights_on="public")
    with pytest.raises(ServiceError, match="not one of Replicate's"):
        run(make_dataset(3))
    assert not [r for r in fake.requests if r.path.startswith("/public/")]

"""Trains the personal FLUX LoRA on Replicate (`ostris/flux-dev-lora-trainer`) and installs it for ComfyUI.

`train_lora(dataset, settings, ...)` is the whole run, in the order a careful person would do it by hand:

1. check the set (captions, at most 30 photos unless the user opted in) and the trainer (a trusted one, unless
   allowed outside the workflow); build the trainer inputs from the seed's defaults and the node's settings,
   and look the work up in the training ledger: a finished training is reused, a running one is re-attached —
   never started twice;
2. resolve the trainer version and validate every input against that version's own schema, estimate the
   cost and check the monthly budget — all before anything is uploaded or paid;
3. create the destination model (private) if it is missing, zip the photos and captions (flat, streamed to
   a temp file) and upload the zip through the Files API (streamed, with a stall timeout; an upload a refused
   start left behind is used again);
4. start the training, then follow it: polite polling, the `flux_train_replicate:` progress lines turned
   into the node's progress bar and text; a ComfyUI interrupt cancels it on Replicate. A refusal (no credit,
   throttling) keeps its reason; only no answer or a 5xx means "it may exist", looked for before any retry;
5. record the real cost (`metrics.predict_time` × the hardware price) and install the LoRA
   (`lora_install`) with the training photos' face reference in its metadata (`lora_reference`: its images
   can be scored for likeness anywhere; a LoRA reused from before that gets it then), and return a
   `TrainingRecord` (the LIKENESS_TRAINING value).
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..dataset import Dataset
from ..errors import InputError, LikenessError, ServiceError
from .lora_install import install_lora, safe_stem
from .lora_reference import attach_reference, reference_note, safe_training_reference
from ..loras.lora_identity import reference_metadata, stored_reference
from ..money.credentials import third_party_token
from ..money.prices import PriceTable, format_usd, load_prices
from ..progress import Interrupted, Progress, SilentProgress
from ..cloud.replicate_client import ReplicateApi, Unconfirmed, is_status, web_url
from ..cloud.replicate_jobs import (TERMINAL, Clock, JobFollower, PollSettings, ReplicateRun, SystemClock, epoch,
                                    find_job, schema_problems)
from ..cloud.replicate_upload import upload
from ..money.spend_ledger import SpendEntry, SpendLedger
from ..storage import read_json, sha256_file
from .training_ledger import ENDED_WITHOUT_LORA, TrainingLedger, training_identity
from .training_status import TrainingStatus

log = logging.getLogger("likeness.training")

TRAINER = "ostris/flux-dev-lora-trainer"
TRAINING_HARDWARE = "gpu-h100"          # "Flux fine-tunes run on H100s" (replicate.com/pricing)
DESTINATION_HARDWARE = "gpu-t4"         # any valid SKU; Replicate picks the hardware for fine-tunes
MAX_ZIP_BYTES = 100 * 1000 * 1000       # Files API: "Files must be less than 100MB in size"
STEPS_PER_IMAGE = 40                    # the seed: "at least 40 steps per image"
MAX_PHOTOS = 30                         # the seed: "Limit the number of images to 30 or fewer"
# Replicate's own FLUX trainers (owner replicate / replicate-internal) and the seed's trainer need no opt-in.
TRUSTED_OWNERS = ("replicate", "replicate-internal")
ALLOWED_TRAINERS_ENV = "LIKENESS_ALLOWED_TRAINERS"
SEED_REGEX = "transformer.single_transformer_blocks.(7|12|16|20).proj_out"
LAYER_PRESETS = {
    "7/12/16/20": SEED_REGEX,
    "7/20": "transformer.single_transformer_blocks.(7|20).proj_out",
    "all": "",
    "custom regex": None,
}
OPTIMIZERS = ["adamw8bit", "prodigy", "adam8bit", "lion8bit", "adam", "adamw", "lion", "adagrad", "adafactor"]
_WIDGET_INPUTS = ("trigger_word", "steps", "lora_rank", "learning_rate", "optimizer", "batch_size", "resolution",
                  "caption_dropout_rate", "autocaption", "layers_to_optimize_regex")
_SECRET_NAME = re.compile(r"token|api_key|secret|password", re.IGNORECASE)
_PROGRESS_LINE = re.compile(r"flux_train_replicate:\s*(\d+)%\|[^|\n]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+)")
_DESTINATION = re.compile(r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$")
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
CLOCK_SKEW_S = 600.0                     # Replicate's clock vs ours, when looking for a just-created training


# --- values in and out ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingSettings:
    """The node's inputs; defaults are the seed's recipe."""
    destination: str
    steps: int = 0                       # 0 = auto: 40 × photos
    lora_rank: int = 32
    learning_rate: float = 4e-4
    layers: str = "7/12/16/20"
    custom_regex: str = ""
    optimizer: str = "adamw8bit"
    batch_size: int = 1
    resolution: str = "1024"
    caption_dropout_rate: float = 0.1
    autocaption: bool = False
    trainer_version: str = ""            # "" = latest ostris/flux-dev-lora-trainer; a 64-hex id or owner/name:id
    extra_inputs: str = ""               # JSON object of any other trainer input
    allow_over_30_photos: bool = False   # the seed keeps sets to 30 or fewer; more only when the user says so


@dataclass(frozen=True)
class RunOptions:
    """What a caller that runs several trainings at once (the training battery) changes about one of them."""
    lora_name: str = ""                  # the installed file's name; "" = the destination model's name
    lora_metadata: dict = field(default_factory=dict)   # more Likeness metadata for the LoRA file
    check_budget: bool = True            # False: the caller checked the monthly budget for all of them at once
    create_inputs: dict = field(default_factory=dict)   # sent with the create call only (monitoring, secrets):
    #                                      never part of the training's identity, the ledger or the LoRA's metadata


@dataclass(frozen=True)
class TrainingRecord:
    """LIKENESS_TRAINING: what a finished training made and cost."""
    id: str
    destination: str
    version: str                         # the destination's new version, "owner/name:<id>"
    trainer_version: str                 # "ostris/flux-dev-lora-trainer:<id>"
    lora_file: str                       # name in models/loras, for LoraLoader and the stack
    lora_path: str
    trigger_word: str
    cost_usd: float                      # metrics.predict_time × price per second (an estimate of the bill)
    estimated_usd: float
    predict_time: float
    urls: dict = field(default_factory=dict)    # web (the training's page), get, weights
    dataset_hash: str = ""
    inputs: dict = field(default_factory=dict)
    reused: bool = False                 # True: no new training was started for this run
    note: str = ""

    def summary(self) -> str:
        text = (f"LoRA {self.lora_file} (trigger word {self.trigger_word}) from training {self.id}: cost "
                f"{format_usd(self.cost_usd)} ({self.predict_time:.0f} s of GPU time; the estimate was "
                f"{format_usd(self.estimated_usd)}). {self.urls.get('web', '')}")
        if self.reused:
            text += "\nNo new training was started for this run (the same work was already on Replicate)."
        return f"{text}\n{self.note}".strip()


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total: int
    percent: int
    elapsed: str
    remaining: str

    def text(self) -> str:
        left = "" if self.remaining in ("?", "") else f", about {self.remaining} left"
        return f"step {self.step}/{self.total} ({self.percent}%), {self.elapsed} elapsed{left}"


def parse_progress(logs: str | None) -> TrainingProgress | None:
    """The last `flux_train_replicate:` tqdm line of the trainer's logs, or None before training starts."""
    last = None
    for last in _PROGRESS_LINE.finditer(logs or ""):
        pass
    if last is None:
        return None
    pct, step, total, elapsed, remaining = last.groups()
    return TrainingProgress(int(step), int(total), int(pct), elapsed, remaining)


# --- the run ------------------------------------------------------------------------------------------
def train_lora(dataset: Dataset, settings: TrainingSettings, *, user_dir: str | Path, loras_dir: str | Path,
               progress: Progress | None = None, api: ReplicateApi | None = None,
               poll: PollSettings | None = None, clock: Clock | None = None,
               status: Callable[[dict[str, Any]], None] | None = None,
               options: RunOptions | None = None) -> TrainingRecord:
    """Trains (or re-attaches to, or reuses) the LoRA for `dataset` with `settings`; installs it.

    `status`, if given, is called with the whole `TrainingStatus.as_dict()` each time it changes (the
    canvas's live status); it must not raise.
    """
    run = _Run(dataset, settings, Path(user_dir), Path(loras_dir), progress or SilentProgress(), api,
               poll or PollSettings.from_env(), clock or SystemClock(), status, options or RunOptions())
    try:
        return run.go()
    except Interrupted:
        run.report("canceled" if run.state.training_id else "stopped")
        raise
    except LikenessError as exc:
        if run.state.phase not in ("failed", "canceled", "aborted"):
            run.report("error", message=str(exc))
        raise


class _Run(ReplicateRun):
    def __init__(self, dataset: Dataset, settings: TrainingSettings, user_dir: Path, loras_dir: Path,
                 progress: Progress, api: ReplicateApi | None, poll: PollSettings, clock: Clock,
                 status: Callable[[dict[str, Any]], None] | None = None, options: RunOptions = RunOptions()):
        self.dataset, self.settings, self.user_dir, self.loras_dir = dataset, settings, user_dir, loras_dir
        self.options = options
        self.progress, self._api, self.poll, self.clock = progress, api, poll, clock
        self.on_status = status
        self.state = TrainingStatus(trigger_word=dataset.trigger_word, started=time.time())
        self._last_status: dict[str, Any] | None = None
        self.ledger = TrainingLedger(user_dir)
        self.prices = load_prices(user_dir)

    def go(self) -> TrainingRecord:
        check_dataset(self.dataset, self.settings.autocaption)
        check_photo_count(self.dataset, self.settings, self.prices)
        check_trainer_allowed(self.settings.trainer_version, self.user_dir)
        inputs = build_inputs(self.dataset, self.settings)
        destination = self.resolve_destination(self.settings.destination)
        identity = training_identity(self.dataset.content_hash(), inputs, destination,
                                     self.settings.trainer_version.strip())
        entry = self.ledger.get(identity)
        if entry:
            reused = self.resume(identity, entry)
            if reused is not None:
                return reused
        return self.start(identity, inputs, destination)

    # -- the ledger said we have seen this work before --
    def resume(self, identity: str, entry: dict) -> TrainingRecord | None:
        status, training_id = entry.get("status"), entry.get("training_id")
        if status == "succeeded" and entry.get("record"):
            record = TrainingRecord(**{**entry["record"], "reused": True})
            path = Path(record.lora_path)
            if path.exists() and sha256_file(path) == entry.get("lora_sha256"):
                self.say(f"Already trained: reusing {record.lora_file} from training {record.id} "
                         "(no new training, nothing paid).")
                added = self.reference_for_older_lora(path)
                if added:
                    record = TrainingRecord(**{**asdict(record), "note": f"{record.note}\n{added}".strip()})
                self.report("reused", training_id=record.id, web_url=record.urls.get("web", ""),
                            cost_usd=record.cost_usd, estimated_usd=record.estimated_usd,
                            lora_file=record.lora_file, message="Already trained: nothing new was paid.")
                return record
            self.say(f"{record.lora_file} is missing or changed in models/loras: installing the LoRA from "
                     f"training {record.id} again (no new training).")
            data = self.api.get_json(f"/v1/trainings/{record.id}", "Reading the finished training")
            return self.finish(identity, data, reused=True)
        if training_id and status not in ENDED_WITHOUT_LORA:
            self.say(f"Re-attaching to training {training_id} on Replicate (already started; not starting "
                     "another).")
            return self.finish(identity, self.follow(identity, training_id), reused=True)
        if status == "creating" and entry.get("input_images"):
            found = self.find_created(entry["input_images"], since=float(entry.get("updated") or 0))
            if found:
                self.ledger.update(identity, training_id=found["id"], status=found["status"],
                                   urls=_urls(found))
                return self.finish(identity, self.follow(identity, found["id"]), reused=True)
        if status in ENDED_WITHOUT_LORA:
            self.say(f"The last training for this dataset and settings ({training_id}) ended "
                     f"{status}: starting a new one.")
        return None

    # -- a new training --
    def start(self, identity: str, inputs: dict, destination: str) -> TrainingRecord:
        trainer_model, version_id, schema = resolve_trainer(self.api, self.settings.trainer_version)
        validate_inputs(inputs, schema, f"{trainer_model}:{version_id[:12]}")
        secrets = trainer_secrets({**inputs, **self.options.create_inputs}, schema, self.user_dir)
        estimate = estimate_cost(inputs["steps"], self.prices)
        what = f"Training a LoRA of {self.dataset.trigger_word} ({inputs['steps']} steps) on Replicate"
        if self.options.check_budget:
            SpendLedger(self.user_dir).check(estimate, what)
        self.say(f"{what}: about {format_usd(estimate)} (estimate; prices as of {self.prices.as_of}).")
        self.report("estimating", estimated_usd=estimate, total=int(inputs["steps"]))
        ensure_destination(self.api, destination)
        earlier = self.ledger.get(identity) or {}
        self.ledger.update(identity, status="preparing", training_id=None, destination=destination, inputs=inputs,
                           trainer=f"{trainer_model}:{version_id}", estimated_usd=estimate,
                           dataset_hash=self.dataset.content_hash(), trigger_word=self.dataset.trigger_word)
        url = self.uploaded_before(earlier) or self.upload(zip_dataset(self.dataset, self.user_dir / "uploads"))
        if self.progress.interrupted():
            self.ledger.update(identity, status="preparing")
            raise Interrupted("Interrupted before the training was started: nothing was paid.")
        self.ledger.update(identity, status="creating", input_images=url)
        data = self.create(identity, trainer_model, version_id,
                           {**inputs, "input_images": url, **self.options.create_inputs}, destination, secrets)
        self.ledger.update(identity, training_id=data["id"], status=data["status"], urls=_urls(data))
        self.say(f"Started training {data['id']}: {_urls(data)['web']}")
        self.report("starting", training_id=data["id"], web_url=_urls(data)["web"])
        return self.finish(identity, self.follow(identity, data["id"]), reused=False)

    def upload(self, zip_path: Path) -> str:
        try:
            self.say(f"Uploading the dataset ({zip_path.stat().st_size / 1e6:.1f} MB) to Replicate…")
            self.report("uploading")
            url = upload_file(self.api, zip_path, f"{safe_stem(self.dataset.trigger_word)}-dataset.zip",
                              self.progress)
        finally:
            zip_path.unlink(missing_ok=True)
        return url

    def uploaded_before(self, entry: dict) -> str | None:
        """The zip uploaded for this same work by a start that Replicate refused (or never confirmed), while
        the Files API still has it: a refusal is no reason to upload it again."""
        url = entry.get("input_images")
        if entry.get("status") not in ("refused", "creating") or not url:
            return None
        match = re.search(r"/v1/files/([^/?#]+)$", str(url))
        found = self.api.get_json(f"/v1/files/{match.group(1)}", "Checking the earlier upload",
                                  missing_ok=True) if match else None
        if not found or (epoch(found.get("expires_at")) or float("inf")) < time.time() + 600:
            return None
        self.say("Using the dataset uploaded for the last attempt (nothing uploaded again).")
        return url

    def create(self, identity: str, trainer_model: str, version_id: str, inputs: dict, destination: str,
               secrets: dict[str, str]) -> dict:
        doing = "Starting the training on Replicate"
        try:
            training = self.api.call(doing, self.api.sdk.trainings.create, model=trainer_model,
                                     version=version_id, input={**inputs, **secrets}, destination=destination,
                                     not_found=f"the destination model {destination} does not exist")
            return {"id": training.id, "status": training.status, "urls": training.urls or {}}
        except Unconfirmed:
            # No answer, a 5xx, a page that is not the API's: the training may exist anyway. Look before anything
            # else; never re-POST.
            found = self.find_created(inputs["input_images"], since=time.time())
            if found:
                return found
            raise ServiceError(f"{doing}: Replicate did not confirm the training, and none with this upload is "
                               "on your account. Nothing was started; queue again to retry (the pack checks "
                               "again for the training before starting one).") from None
        except LikenessError:
            # Refused outright (no credit, throttled, the inputs): nothing exists. Its own message stands, and the
            # upload is kept for the next queue.
            self.ledger.update(identity, status="refused")
            raise

    def find_created(self, input_images: str, since: float = 0.0) -> dict | None:
        """A training on the account whose input is our upload (the upload URL is unique to this run)."""
        return find_job(self.api, "training",
                        lambda item: (item.get("input") or {}).get("input_images") == input_images,
                        since=since - CLOCK_SKEW_S if since else 0.0)

    # -- following it --
    def follow(self, identity: str, training_id: str) -> dict:
        """Polls until the training ends; shows progress; cancels it on interrupt. The last training JSON."""
        last_status = None

        def seen(data: dict) -> None:
            nonlocal last_status
            if data.get("status") != last_status:
                last_status = data.get("status")
                self.ledger.update(identity, status=last_status, training_id=training_id, urls=_urls(data))
            self.show(data, _urls(data)["web"])

        return JobFollower(self.api, self.poll, self.clock, self.progress).follow(
            f"/v1/trainings/{training_id}", "Checking the training",
            not_found=f"training {training_id} is not on your account",
            lost_hint=f"Training {training_id} goes on at Replicate ({web_url(f'p/{training_id}')}); queue "
                      "again to re-attach to it.",
            seen=seen, cancel=lambda: self.cancel(identity, training_id))

    def show(self, data: dict, web: str) -> None:
        status = data.get("status")
        parsed = parse_progress(data.get("logs"))
        total = parsed.total if parsed else int((data.get("input") or {}).get("steps") or 1)
        if status in ("starting", "processing"):
            fields = {"step": parsed.step, "percent": parsed.percent, "elapsed": parsed.elapsed,
                      "remaining": parsed.remaining} if parsed else {}
            self.report(status, training_id=str(data.get("id", "")), web_url=web, total=total,
                        started_at=str(data.get("started_at") or ""), **fields)
        if status == "starting":
            self.progress.update(0, total, f"Waiting for a GPU on Replicate (starting) · {web}")
        elif status == "processing":
            text = f"Training on Replicate: {parsed.text()}" if parsed else "Preparing on Replicate " \
                "(loading FLUX, caching latents)"
            self.progress.update(parsed.step if parsed else 0, total, f"{text} · {web}")
        elif status == "succeeded":
            self.progress.update(total, total, f"Training finished · {web}")

    def cancel(self, identity: str, training_id: str) -> None:
        """The user interrupted ComfyUI: cancel the paid training on Replicate, record it, stop."""
        data = self.cancel_job("training", training_id)
        status = "aborted" if data.get("status") == "aborted" else "canceled"
        self.ledger.update(identity, status=status)
        cost = self.record_cost(identity, data)
        self.report(status, cost_usd=cost, message=f"Interrupted: {status} on Replicate.")
        if status == "aborted":
            message = (f"Interrupted: Replicate had already aborted training {training_id} before it started "
                       f"({_urls(data).get('web', '')}); nothing was billed. Queue again to start a new training.")
        else:
            message = (f"Interrupted: canceled training {training_id} on Replicate ({_urls(data).get('web', '')}); "
                       f"it used about {format_usd(cost)}. Queue again to start a new training.")
        self.say(message)
        raise Interrupted(message)

    # -- the end --
    def finish(self, identity: str, data: dict, *, reused: bool) -> TrainingRecord:
        status, training_id = data.get("status"), data["id"]
        cost = self.record_cost(identity, data)
        web = _urls(data).get("web", "")
        if status in ("failed", "canceled", "aborted"):
            self.report(status, training_id=training_id, web_url=web, cost_usd=cost,
                        message=str(data.get("error") or ""))
        if status == "failed":
            raise ServiceError(f"The training failed on Replicate: {data.get('error') or 'no error text'}. "
                               f"{_log_tail(data.get('logs'))}It used about {format_usd(cost)}. Details: {web}")
        if status == "canceled":
            raise ServiceError(f"Training {training_id} was canceled on Replicate ({web}). Queue again to start "
                               "a new one.")
        if status == "aborted":
            raise ServiceError(f"Replicate aborted training {training_id} before it started (nothing was "
                               f"billed). Queue again to start a new one. {web}")
        return self.install(identity, data, cost, reused)

    def install(self, identity: str, data: dict, cost: float, reused: bool) -> TrainingRecord:
        entry = self.ledger.get(identity) or {}
        output = data.get("output") or {}
        weights = output.get("weights")
        if not weights:
            raise ServiceError(f"Training {data['id']} succeeded but Replicate gave no weights URL (output: "
                               f"{output.get('version', 'none')}). Download the LoRA from the training's page: "
                               f"{_urls(data).get('web', '')}")
        inputs = entry.get("inputs") or {k: v for k, v in (data.get("input") or {}).items()
                                         if k != "input_images" and not _SECRET_NAME.search(k)}
        trainer = entry.get("trainer") or f"{data.get('model', TRAINER)}:{data.get('version', '')}"
        destination = entry.get("destination") or str(output.get("version", "")).split(":")[0]
        reference, no_reference = safe_training_reference(self.dataset, self.user_dir, self.progress)
        metadata = {"likeness_trigger_word": self.dataset.trigger_word,
                    "modelspec.trigger_phrase": self.dataset.trigger_word,
                    "likeness_trainer": trainer, "likeness_inputs": inputs, "likeness_training_id": data["id"],
                    "likeness_destination_version": output.get("version", ""),
                    "likeness_dataset_hash": self.dataset.content_hash(), "likeness_cost_usd": f"{cost:.4f}",
                    **(reference_metadata(reference) if reference is not None else {}),
                    **self.options.lora_metadata}
        self.say(f"Downloading the trained LoRA from training {data['id']}…")
        self.report("downloading", training_id=data["id"], cost_usd=cost)
        name = self.options.lora_name or destination.split("/")[-1] or self.dataset.trigger_word
        installed = install_lora(lambda out, limit: self.api.download(weights, out, max_bytes=limit,
                                                                       doing="Downloading the trained weights"),
                                 self.loras_dir, name, metadata)
        record = TrainingRecord(
            id=data["id"], destination=destination, version=str(output.get("version", "")),
            trainer_version=trainer, lora_file=installed.name, lora_path=str(installed.path),
            trigger_word=self.dataset.trigger_word, cost_usd=cost,
            estimated_usd=float(entry.get("estimated_usd") or 0.0),
            predict_time=float((data.get("metrics") or {}).get("predict_time") or 0.0),
            urls={**_urls(data), "weights": weights}, dataset_hash=self.dataset.content_hash(), inputs=inputs,
            reused=reused, note=f"{installed.note}\n{reference_note(reference, no_reference)}")
        self.ledger.update(identity, status="succeeded", lora_sha256=installed.sha256, record=asdict(record))
        self.say(record.summary())
        self.report("succeeded", training_id=record.id, web_url=record.urls.get("web", ""), cost_usd=cost,
                    estimated_usd=record.estimated_usd, lora_file=record.lora_file,
                    step=self.state.total or self.state.step, percent=100, remaining="")
        return record

    def reference_for_older_lora(self, path: Path) -> str:
        """A LoRA installed before the pack stored face references gets its training photos' one now (what was
        done, for the note; "" when it has one)."""
        try:
            if stored_reference(path) is not None:
                return ""
        except InputError:
            pass                       # a damaged one is replaced
        reference, why = safe_training_reference(self.dataset, self.user_dir, self.progress)
        if reference is None:
            return reference_note(None, why)
        try:
            attach_reference(path, reference, self.user_dir)
        except LikenessError as exc:
            return reference_note(None, str(exc))
        return reference_note(reference)

    def record_cost(self, identity: str, data: dict) -> float:
        """The real cost of an ended training, written to the spend ledger once per training."""
        seconds = float((data.get("metrics") or {}).get("predict_time") or 0.0)
        cost = seconds * self.prices.hardware_per_second(TRAINING_HARDWARE)
        entry = self.ledger.get(identity) or {}
        if data.get("status") in TERMINAL and entry.get("cost_recorded") != data.get("id"):
            SpendLedger(self.user_dir).record(SpendEntry(
                "replicate-training", f"LoRA training of {self.dataset.trigger_word} ({data.get('status')})",
                cost, ref=str(data.get("id", "")), estimated=False))
            self.ledger.update(identity, cost_recorded=data.get("id"), cost_usd=cost, predict_time=seconds)
        return cost

    def resolve_destination(self, destination: str) -> str:
        return resolve_destination(self.api, destination, self.dataset.trigger_word)

    def report(self, phase: str, **fields: Any) -> None:
        """Updates the live status and hands the whole of it to the status callback (when there is one)."""
        if self.on_status is None:
            return
        self.state.phase, self.state.message = phase, str(fields.pop("message", ""))
        for name, value in fields.items():
            setattr(self.state, name, value)
        status = self.state.as_dict()
        if status == self._last_status:
            return                       # polling an unchanged training: nothing new to show or store
        self._last_status = status
        try:
            self.on_status(status)
        except Exception:  # noqa: BLE001 - a broken display must never stop (or re-pay) a training
            log.exception("Likeness: the training status display failed")


# --- the steps, as plain functions ---------------------------------------------------------------------
def check_dataset(dataset: Dataset, autocaption: bool) -> None:
    if not dataset.items:
        raise InputError("The dataset has no photos; point the dataset loader at a folder of 10–30 photos.")
    missing = [Path(dataset.image_path(item)).name for item in dataset.items
               if not Path(dataset.image_path(item)).is_file()]
    if missing:
        raise InputError(f"{len(missing)} prepared photo(s) are gone from {dataset.folder} "
                         f"({', '.join(missing[:3])}…); run the dataset loader again.")
    uncaptioned = [item.image for item in dataset.items if not _caption_text(dataset, item)]
    if uncaptioned and not autocaption:
        raise InputError(f"{len(uncaptioned)} photo(s) have no caption ({', '.join(uncaptioned[:3])}) and "
                         "autocaption is off: caption them (LikenessGeminiCaptioner, or .txt files next to the "
                         "photos) or turn autocaption on.")


def check_photo_count(dataset: Dataset, settings: TrainingSettings, prices: PriceTable) -> None:
    """More than 30 photos is refused unless the user opted in: the seed saw such sets "lose focus", and auto
    steps (40 a photo) make them cost more. The message gives both costs."""
    count = len(dataset.items)
    if count <= MAX_PHOTOS or settings.allow_over_30_photos:
        return
    steps = settings.steps or STEPS_PER_IMAGE * count
    fewer = settings.steps or STEPS_PER_IMAGE * MAX_PHOTOS
    cost = (f"{count} photos → {steps} steps, about {format_usd(estimate_cost(steps, prices))}; {MAX_PHOTOS} "
            f"photos → {fewer} steps, about {format_usd(estimate_cost(fewer, prices))}" if not settings.steps else
            f"steps is set to {steps}, so the cost is the same (about {format_usd(estimate_cost(steps, prices))})")
    raise InputError(f"The set has {count} photos; the seed keeps it to {MAX_PHOTOS} or fewer (\"When I included "
                     f"40–50 images, the LoRA seemed to lose its focus on the subject\"). {cost}. Keep your best "
                     f"{MAX_PHOTOS} (move the others out of the photo folder and run the loader again), or turn on "
                     f"allow_over_30_photos on the trainer to train on all {count}. Nothing was uploaded or paid.")


def trainer_allowed(model: str, user_dir: str | Path | None) -> bool:
    """The seed's trainer and Replicate's own FLUX trainers; anything else only when the user lists it outside
    the workflow (LIKENESS_ALLOWED_TRAINERS, or "allowed_trainers" in the user folder's config.json)."""
    model = model.strip().lower()
    owner, _, name = model.partition("/")
    if model == TRAINER or (owner in TRUSTED_OWNERS and "flux" in name):
        return True
    listed = [m.strip().lower() for m in os.environ.get(ALLOWED_TRAINERS_ENV, "").split(",")]
    if user_dir is not None:
        config = read_json(Path(user_dir) / "config.json", {}) or {}
        extra = config.get("allowed_trainers", []) if isinstance(config, dict) else []
        listed += [str(m).strip().lower() for m in (extra if isinstance(extra, list) else [extra])]
    return model in listed


def check_trainer_allowed(trainer_version: str, user_dir: str | Path | None) -> None:
    """A shared workflow must not send the user's face photos to someone else's model on the user's bill."""
    override = trainer_version.strip()
    model = override.partition(":")[0] if override and not _VERSION_ID.match(override) else TRAINER
    if "/" in model and not trainer_allowed(model, user_dir):
        where = Path(user_dir) / "config.json" if user_dir else "<ComfyUI user dir>/likeness/config.json"
        raise InputError(f"trainer_version names {model}, which is not {TRAINER} or one of Replicate's own FLUX "
                         "trainers: the pack would upload your photos to it and it would run on your bill. If you "
                         f"trust it, allow it outside the workflow: {ALLOWED_TRAINERS_ENV}={model} in the "
                         f"environment that starts ComfyUI, or {{\"allowed_trainers\": [\"{model}\"]}} in {where}. "
                         "Nothing was uploaded or paid.")


def trainer_secrets(inputs: dict[str, Any], schema: dict, user_dir: str | Path | None) -> dict[str, str]:
    """The trainer's secret inputs, from the environment or the user folder's key files (never a widget), only
    for a feature the inputs ask for: hf_token to push to hf_repo_id, wandb_api_key to log to W&B."""
    props = schema.get("properties", {})
    secrets: dict[str, str] = {}
    if inputs.get("hf_repo_id") and "hf_token" in props:
        token = third_party_token("hf", user_dir)
        if not token:
            raise InputError(f"hf_repo_id is set ({inputs['hf_repo_id']}), which needs a Hugging Face token with "
                             "write access: set HF_TOKEN in the environment that starts ComfyUI, or put the token "
                             "alone in the user folder's likeness/hf_token file (never in a widget). Nothing was "
                             "uploaded or paid.")
        secrets["hf_token"] = token
    if any(k.startswith("wandb_") for k in inputs) and "wandb_api_key" in props:
        key = third_party_token("wandb", user_dir)
        if key:
            secrets["wandb_api_key"] = key
        else:
            log.warning("Likeness: W&B inputs are set but there is no WANDB_API_KEY; the trainer will not log "
                        "to W&B")
    return secrets


def build_inputs(dataset: Dataset, settings: TrainingSettings) -> dict[str, Any]:
    """The trainer inputs (all but input_images): the seed's recipe, the node's settings, the extras."""
    steps = settings.steps or STEPS_PER_IMAGE * len(dataset.items)
    inputs: dict[str, Any] = {
        "trigger_word": dataset.trigger_word, "steps": int(steps), "lora_rank": int(settings.lora_rank),
        "learning_rate": float(settings.learning_rate), "optimizer": settings.optimizer,
        "batch_size": int(settings.batch_size), "resolution": settings.resolution.replace(" ", ""),
        "caption_dropout_rate": float(settings.caption_dropout_rate), "autocaption": bool(settings.autocaption),
    }
    regex = layers_regex(settings.layers, settings.custom_regex)
    if regex:
        inputs["layers_to_optimize_regex"] = regex
    extras = parse_extra_inputs(settings.extra_inputs)
    clash = sorted(set(extras) & set(_WIDGET_INPUTS))
    if clash:
        raise InputError(f"extra_inputs sets {', '.join(clash)}, which the node has its own inputs for: set "
                         "them there instead.")
    inputs.update(extras)
    if not re.fullmatch(r"\d+(,\d+)*", inputs["resolution"]):
        raise InputError(f"resolution must be pixel sizes separated by commas, like 1024 or 512,768,1024; "
                         f"got {settings.resolution!r}.")
    return inputs


def layers_regex(preset: str, custom: str) -> str:
    """The layers_to_optimize_regex for a preset ("" = all layers); a custom one must match some layer."""
    if preset not in LAYER_PRESETS:
        raise InputError(f"layers must be one of {', '.join(LAYER_PRESETS)}; got {preset!r}.")
    regex = LAYER_PRESETS[preset]
    if regex is None:
        regex = custom.strip()
        if not regex:
            raise InputError("layers is 'custom regex' but custom_layers_regex is empty; write one, e.g. "
                             f"{SEED_REGEX}")
    if not regex:
        return ""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise InputError(f"The layer regex {regex!r} is not a valid regular expression ({exc}).") from None
    if not any(pattern.search(layer) for layer in flux_layers()):
        raise InputError(f"The layer regex {regex!r} matches none of FLUX's 494 trainable layers (the training "
                         "would fail after you paid for its start). Layer names look like "
                         "transformer.single_transformer_blocks.7.proj_out or "
                         "transformer.transformer_blocks.0.attn.to_q.")
    return regex


def flux_layers() -> list[str]:
    """The 494 Linear layers the trainer can optimize (flux-fine-tuner's layer_match.py)."""
    double = ["norm1.linear", "norm1_context.linear", "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj",
              "attn.add_k_proj", "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj",
              "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"]
    single = ["norm.linear", "proj_mlp", "proj_out", "attn.to_q", "attn.to_k", "attn.to_v"]
    return ([f"transformer.transformer_blocks.{b}.{s}" for b in range(19) for s in double]
            + [f"transformer.single_transformer_blocks.{b}.{s}" for b in range(38) for s in single])


def parse_extra_inputs(text: str | dict) -> dict[str, Any]:
    if isinstance(text, dict):
        extras = dict(text)
    elif not text.strip():
        return {}
    else:
        try:
            extras = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"extra_inputs is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                             f"{exc.colno}); write an object like {{\"cache_latents_to_disk\": true}}.") from None
    if not isinstance(extras, dict):
        raise InputError("extra_inputs must be a JSON object, like {\"cache_latents_to_disk\": true}.")
    if "input_images" in extras:
        raise InputError("extra_inputs cannot set input_images: the node uploads the dataset itself.")
    secret = sorted(k for k in extras if _SECRET_NAME.search(k))
    if secret:
        raise InputError(f"extra_inputs holds {', '.join(secret)}: secrets never go in a widget (workflows and "
                         "images save widget values). Remove it, and set HF_TOKEN (for hf_repo_id) or WANDB_API_KEY "
                         "(for W&B logging) in the environment that starts ComfyUI, or in the user folder's key "
                         "files: the pack sends them as the trainer's secret inputs.")
    return extras


def resolve_destination(api: ReplicateApi, destination: str, trigger_word: str) -> str:
    """`owner/name` of the destination model (a bare name is the account's own model), checked."""
    destination = destination.strip().lower()
    if destination and "/" not in destination:
        account = api.call("Reading your Replicate account", api.sdk.accounts.current, idempotent=True)
        destination = f"{account.username}/{destination}"
    if not _DESTINATION.match(destination):
        raise InputError(f"destination must be <your Replicate username>/<model name> (lowercase letters, "
                         f"digits, '-', '_' or '.'), e.g. yourname/{safe_stem(trigger_word)}-lora; got "
                         f"{destination!r}.")
    return destination


def resolve_trainer(api: ReplicateApi, override: str) -> tuple[str, str, dict]:
    """(model, version id, TrainingInput schema) of the trainer: the latest version, or the one asked for."""
    override = override.strip()
    model, version_id = TRAINER, ""
    if _VERSION_ID.match(override):
        version_id = override
    elif override:
        model, _, version_id = override.partition(":")
        if "/" not in model or (version_id and not _VERSION_ID.match(version_id)):
            raise InputError(f"trainer_version must be empty (latest {TRAINER}), a 64-character version id, or "
                             f"owner/name:<version id>; got {override!r}.")
    doing = f"Looking up the trainer {model}"
    if version_id:
        version = api.get_json(f"/v1/models/{model}/versions/{version_id}", doing,
                               not_found=f"{model} has no version {version_id}")
    else:
        version = (api.get_json(f"/v1/models/{model}", doing, not_found=f"no model {model}") or {}).get(
            "latest_version")
        if not version:
            raise ServiceError(f"{model} has no published version on Replicate; set trainer_version.")
    components = ((version.get("openapi_schema") or {}).get("components") or {}).get("schemas") or {}
    schema = components.get("TrainingInput")
    if not schema:
        raise InputError(f"{model}:{version['id'][:12]} is not a trainer (its schema has no TrainingInput); "
                         "leave trainer_version empty for the latest ostris/flux-dev-lora-trainer.")
    return model, version["id"], {**schema, "_components": components}


def validate_inputs(inputs: dict[str, Any], schema: dict, trainer: str) -> None:
    """Checks every input against the trainer version's own schema (names, types, ranges, choices)."""
    problems = schema_problems(inputs, schema, "this trainer", optional=("input_images",))
    if problems:
        raise InputError(f"The trainer ({trainer}) would refuse these inputs; nothing was uploaded or paid:\n- "
                         + "\n- ".join(problems))


def estimate_cost(steps: int, prices: PriceTable) -> float:
    """(steps × seconds per step + setup) × the hardware's price per second: an estimate, before."""
    return estimate_seconds(steps, prices) * prices.hardware_per_second(TRAINING_HARDWARE)


def estimate_seconds(steps: int, prices: PriceTable) -> float:
    """How long a training of `steps` runs on Replicate (billed time: setup and steps, not the queue)."""
    setup = float(prices.data.get("replicate_training_setup_seconds", 0))
    return steps * prices.training_seconds_per_step(TRAINER) + setup


def ensure_destination(api: ReplicateApi, destination: str) -> bool:
    """Creates the destination model (private) if it does not exist; True when it was created."""
    owner, name = destination.split("/", 1)
    if api.call(f"Looking up the destination model {destination}", api.sdk.models.get, destination,
                idempotent=True, missing_ok=True) is not None:
        return False

    def create() -> None:
        try:
            api.sdk.models.create(owner, name, visibility="private", hardware=DESTINATION_HARDWARE,
                                  description="Personal FLUX.1-dev LoRA trained with Likeness (ComfyUI)")
        except Exception as exc:
            if not is_status(exc, 409):      # 409: it exists (made meanwhile, or by our earlier attempt)
                raise

    api.call(f"Creating the destination model {destination} (private)", create, idempotent=True)
    log.info("Likeness: created the private model %s on Replicate", destination)
    return True


def zip_dataset(dataset: Dataset, folder: str | Path, *, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """The photos and .txt captions, flat, in a zip in `folder` (written file by file: memory stays flat)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="dataset-", suffix=".zip", dir=folder)
    os.close(fd)
    path = Path(name)
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
            for item in dataset.items:
                image = dataset.image_path(item)
                arcname = Path(item.image).name
                if arcname.lower() in seen:
                    raise InputError(f"Two photos are both named {arcname}; rename one and load again.")
                seen.add(arcname.lower())
                zf.write(image, arcname, compress_type=zipfile.ZIP_STORED)   # JPEG/PNG: already compressed
                caption = dataset.caption_path(item)
                if caption.is_file():
                    zf.write(caption, Path(arcname).with_suffix(".txt").name, compress_type=zipfile.ZIP_DEFLATED)
        size = path.stat().st_size
        if size >= max_bytes:
            raise InputError(f"The zipped dataset is {size / 1e6:.0f} MB; Replicate's Files API takes files under "
                             f"{max_bytes / 1e6:.0f} MB. Use fewer photos (the seed recommends 30 or fewer), "
                             "size 1024 in the dataset loader, or JPEG instead of PNG.")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def upload_file(api: ReplicateApi, path: Path, filename: str, progress: Progress | None = None) -> str:
    """Uploads `path` through the Files API (streamed from disk, a stall timeout, Cancel noticed at once; a
    failed attempt is retried: a file costs nothing); its URL for a model input."""
    uploaded = upload(api, path, filename, "application/zip", progress or SilentProgress())
    return uploaded["urls"]["get"]


# --- small helpers ------------------------------------------------------------------------------------
def _caption_text(dataset: Dataset, item: Any) -> str:
    path = dataset.caption_path(item)
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def _urls(data: dict) -> dict:
    urls = dict(data.get("urls") or {})
    urls.setdefault("web", web_url(f"p/{data.get('id', '')}"))
    if "/v1/" in urls.get("web", ""):
        urls["web"] = web_url(f"p/{data.get('id', '')}")
    return urls


def _log_tail(logs: str | None, lines: int = 3) -> str:
    tail = [line for line in (logs or "").splitlines() if line.strip()][-lines:]
    return ("Last log lines: " + " | ".join(tail) + ". ") if tail else ""


"""The training battery: several variants of one dataset trained in parallel on Replicate, under one budget.

`run_battery(dataset, settings, ...)` in the order a careful person would go:

1. plan the variants (`battery_plan`), build each one's trainer inputs, and look each up in the training ledger by
   the single trainer's identity (dataset hash + inputs + destination + trainer version): a finished one is reused,
   a running one re-attached, only the rest are new trainings. Two variants that are the same training are refused;
2. before anything is paid: every variant's inputs checked against the trainer version's own schema, the estimated
   cost and time of the new trainings, the monthly budget checked for the battery **as a whole** (one training at a
   time could leave a half-paid battery), and the user's tick when it starts more than N new trainings (N is
   `battery_confirm_above` in the user's config.json, default 4);
3. the variants run as parallel trainings, at most `battery_concurrency` at once (default 4), each through the
   single trainer (`train_lora`: upload, create, follow, cancel, install), never started twice; each LoRA is
   installed with its variant in its file name and metadata;
4. progress per variant: each variant's status (phase, step, cost so far) goes to `status`, and the node's progress
   bar and text add them up. A ComfyUI interrupt cancels every running training; variants not started yet never
   start.

Why 4 at a time: Replicate limits requests, not trainings — 600 creates and 3000 other calls a minute, but 6 creates a
minute with a burst of 1 for an account with under $5 of credit (replicate-api.md §5.2; a throttled create is retried
after the wait it names, since nothing was created). Four trainings poll 48 times a minute at the 5 s interval, upload
four zips at once (each up to 100 MB) on a home connection, and cap what is running — and paid by the second — at any
moment to what the confirmation threshold lets through without a tick.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..cloud.replicate_client import ReplicateApi, connect
from ..cloud.replicate_jobs import Clock, PollSettings, schema_problems
from ..dataset import Dataset
from ..errors import InputError, LikenessError, ServiceError
from ..money.credentials import THIRD_PARTY, third_party_token
from ..money.prices import PriceTable, format_usd, load_prices
from ..money.spend_ledger import SpendLedger
from ..progress import Interrupted, Progress, ProgressRelay, SilentProgress, run_parallel
from ..storage import json_digest, read_json
from .battery_plan import DEFAULT_BASE, DEFAULT_VARIATIONS, MODES, BatteryPlan, Variant, plan_battery, training_settings
from .training import (TRAINING_HARDWARE, RunOptions, TrainingRecord, TrainingSettings, build_inputs, check_dataset,
                       estimate_cost, estimate_seconds, resolve_destination, resolve_trainer, train_lora)
from .training_ledger import ENDED_WITHOUT_LORA, TrainingLedger, training_identity
from .training_status import ENDED, TrainingStatus

log = logging.getLogger("likeness.battery")

CONFIRM_ABOVE = 4                     # new trainings a battery may start without the user's tick
CONCURRENCY = 4                       # trainings running at once (see the module's docstring)
CONFIG_KEYS = ("battery_confirm_above", "battery_concurrency")
WANDB_INTERVAL = 100                  # the seed's wandb_sample_interval and wandb_save_interval
StatusCallback = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class BatterySettings:
    """The node's inputs."""
    destination: str
    base: str = DEFAULT_BASE
    variations: str = DEFAULT_VARIATIONS
    expand: str = MODES[0]
    confirmed: bool = False              # the user's tick for more than `battery_confirm_above` new trainings
    trainer_version: str = ""
    wandb_project: str = ""              # "" = no W&B monitoring (the seed's wandb_* inputs, with the user's key)


@dataclass
class VariantRun:
    """One variant of the battery: what it trains, what the ledger knew of it, and how it ended."""
    index: int
    variant: Variant
    settings: TrainingSettings
    inputs: dict
    identity: str
    known: str                           # before the run: "new" | "running" | "trained"
    estimated_usd: float
    estimated_seconds: float
    lora_name: str
    record: TrainingRecord | None = None
    outcome: str = "queued"              # trained | reused | re-attached | failed | canceled | not started
    error: str = ""

    @property
    def label(self) -> str:
        return self.variant.label


@dataclass(frozen=True)
class BatteryRecord:
    """LIKENESS_BATTERY: every variant of a battery and how it ended (the report compares the finished ones)."""
    id: str
    dataset: Dataset
    destination: str
    plan: BatteryPlan
    runs: tuple[VariantRun, ...]
    concurrency: int
    estimated_usd: float                 # of the trainings this run started

    @property
    def finished(self) -> list[VariantRun]:
        return [r for r in self.runs if r.record is not None]

    @property
    def cost_usd(self) -> float:
        """What the battery's LoRAs cost (each training's real cost, reused ones included)."""
        return sum(r.record.cost_usd for r in self.finished)

    def summary(self) -> str:
        new = [r for r in self.runs if r.outcome == "trained"]
        lines = [f"Battery {self.id}: {self.plan.describe()}.",
                 f"{len(self.finished)} of {len(self.runs)} LoRAs ready; {len(new)} trained now (estimate "
                 f"{format_usd(self.estimated_usd)}), the LoRAs cost {format_usd(self.cost_usd)} in all."]
        for run in self.runs:
            if run.record is not None:
                done = {"reused": "reused, nothing paid now", "re-attached": "started earlier, re-attached"}.get(
                    run.outcome, "trained")
                lines.append(f"- {run.label}: {run.record.lora_file}, {format_usd(run.record.cost_usd)}, "
                             f"{run.record.predict_time / 60:.1f} min of GPU ({done}) {run.record.urls.get('web', '')}")
            else:
                lines.append(f"- {run.label}: {run.outcome}. {run.error}".rstrip())
        return "\n".join(lines)


def run_battery(dataset: Dataset, settings: BatterySettings, *, user_dir: str | Path, loras_dir: str | Path,
                progress: Progress | None = None, api: ReplicateApi | None = None,
                poll: PollSettings | None = None, clock: Clock | None = None,
                status: StatusCallback | None = None, concurrency: int | None = None) -> BatteryRecord:
    """Plans, checks and runs the battery (see the module's docstring); returns when every variant has ended.

    `status(index, variant_status)` is called whenever a variant's status changes; it must not raise.
    """
    user_dir = Path(user_dir)
    progress = progress or SilentProgress()
    api = api or connect(user_dir)
    config = battery_config(user_dir, concurrency)
    plan = plan_battery(settings.base, settings.variations, settings.expand)
    destination = resolve_destination(api, settings.destination, dataset.trigger_word)
    prices = load_prices(user_dir)
    runs = prepare_runs(dataset, plan, destination, settings.trainer_version.strip(), TrainingLedger(user_dir),
                        prices)
    battery_id = battery_identity(dataset, plan, destination, settings.trainer_version.strip())
    monitoring = wandb_inputs(settings.wandb_project, user_dir)
    new = [r for r in runs if r.known == "new"]
    if new:
        check_against_trainer(api, settings.trainer_version, runs, monitoring)
    estimate = sum(r.estimated_usd for r in new)
    check_confirmation(len(new), config["battery_confirm_above"], settings.confirmed, estimate)
    check_budget(user_dir, len(new), estimate)
    intro = introduction(battery_id, plan, runs, estimate, config["battery_concurrency"], prices)
    _say(progress, intro)
    board = BatteryBoard(battery_id, runs, progress, status, prices, intro.splitlines()[0])
    Runner(dataset, user_dir, Path(loras_dir), api, poll, clock, board, battery_id, plan,
           monitoring).run_all(runs, config["battery_concurrency"])
    record = BatteryRecord(battery_id, dataset, destination, plan, tuple(runs), config["battery_concurrency"],
                           estimate)
    return finish(record, board.relay)


# --- 1. the variants, as the single trainer will see them ----------------------------------------------
def prepare_runs(dataset: Dataset, plan: BatteryPlan, destination: str, trainer_version: str,
                 ledger: TrainingLedger, prices: PriceTable) -> list[VariantRun]:
    check_dataset(dataset, all(v.values["autocaption"] for v in plan.variants))
    runs, problems, seen = [], [], {}
    model_name = destination.split("/")[-1]
    dataset_hash = dataset.content_hash()
    for index, variant in enumerate(plan.variants):
        settings = training_settings(variant.values, len(dataset.items), destination, trainer_version)
        try:
            inputs = build_inputs(dataset, settings)
        except InputError as exc:
            problems.append(f"{variant.label}: {exc}")
            continue
        identity = training_identity(dataset_hash, inputs, destination, trainer_version)
        if identity in seen:
            problems.append(f"{variant.label} is the same training as {seen[identity]} (the same trainer inputs): "
                            "remove one of them.")
            continue
        seen[identity] = variant.label
        steps = int(inputs["steps"])
        runs.append(VariantRun(index, variant, settings, inputs, identity, ledger_state(ledger.get(identity)),
                               estimate_cost(steps, prices), estimate_seconds(steps, prices),
                               f"{model_name}-{variant.file_suffix()}"))
    if problems:
        raise InputError("The battery cannot start; nothing was uploaded or paid:\n- " + "\n- ".join(problems))
    return runs


def ledger_state(entry: dict | None) -> str:
    """What the training ledger says of a variant's training: "trained", "running" or "new"."""
    if not entry:
        return "new"
    if entry.get("status") == "succeeded" and entry.get("record"):
        return "trained"
    if entry.get("training_id") and entry.get("status") not in ENDED_WITHOUT_LORA:
        return "running"
    return "new"


def battery_identity(dataset: Dataset, plan: BatteryPlan, destination: str, trainer_version: str) -> str:
    """A short id for the battery (the same dataset, tables and destination give the same id)."""
    return json_digest({"dataset": dataset.content_hash(), "destination": destination, "trainer": trainer_version,
                        "mode": plan.mode, "variants": [v.values for v in plan.variants]}, 10)


# --- 2. before anything is paid -------------------------------------------------------------------------
def battery_config(user_dir: Path, concurrency: int | None = None) -> dict[str, int]:
    """The user's battery settings from `<user dir>/config.json` (whole numbers of 1 or more)."""
    path = user_dir / "config.json"
    stored = read_json(path, {}) or {}
    config = {"battery_confirm_above": CONFIRM_ABOVE, "battery_concurrency": CONCURRENCY}
    for key in CONFIG_KEYS:
        value = stored.get(key, config[key]) if isinstance(stored, dict) else config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if "confirm" in key else 1):
            raise InputError(f"{key} in {path} must be a whole number ({'0' if 'confirm' in key else '1'} or "
                             f"more); got {value!r}.")
        config[key] = value
    if concurrency is not None:
        config["battery_concurrency"] = max(1, int(concurrency))
    return config


def wandb_inputs(project: str, user_dir: Path) -> dict[str, Any]:
    """The seed's W&B inputs for every variant ({} when off); refused without the user's W&B key."""
    project = project.strip()
    if not project:
        return {}
    if not third_party_token("wandb", user_dir):
        raise InputError(f"wandb_project is set but there is no W&B API key: set WANDB_API_KEY in the environment "
                         f"that starts ComfyUI, or put the key alone in {user_dir / THIRD_PARTY['wandb'][1]} "
                         "(keys never go in a widget), or clear wandb_project. Nothing was paid.")
    # the key itself goes as the trainer's secret input, added by the single trainer (trainer_secrets)
    return {"wandb_project": project, "wandb_sample_interval": WANDB_INTERVAL, "wandb_save_interval": WANDB_INTERVAL}


def check_against_trainer(api: ReplicateApi, trainer_version: str, runs: list[VariantRun],
                          monitoring: dict[str, Any]) -> None:
    """Every variant's inputs (and the W&B ones) against the trainer version's own schema, all problems at once."""
    trainer_model, version_id, schema = resolve_trainer(api, trainer_version)
    problems = [f"{run.label}: {problem}" for run in runs
                for problem in schema_problems({**run.inputs, **monitoring}, schema, "this trainer",
                                               optional=("input_images",))]
    if problems:
        raise InputError(f"The trainer ({trainer_model}:{version_id[:12]}) would refuse these variants; nothing was "
                         "uploaded or paid:\n- " + "\n- ".join(problems))


def check_confirmation(new: int, confirm_above: int, confirmed: bool, estimate: float) -> None:
    if new > confirm_above and not confirmed:
        raise InputError(f"This battery starts {new} new trainings (more than {confirm_above}), about "
                         f"{format_usd(estimate)} in all: tick confirm_large_battery on the node to go ahead. "
                         "(The limit is battery_confirm_above in the pack's config.json.) Nothing was paid.")


def check_budget(user_dir: Path, new: int, estimate: float) -> None:
    """The monthly budget for the battery as a whole: all of its new trainings fit, or none starts."""
    if new:
        SpendLedger(user_dir).check(estimate, f"The battery's {new} new training{'s' if new != 1 else ''}, "
                                              "checked as a whole (none starts unless all fit),")


def introduction(battery_id: str, plan: BatteryPlan, runs: list[VariantRun], estimate: float, concurrency: int,
                 prices: PriceTable) -> str:
    new = [r for r in runs if r.known == "new"]
    counts = [f"{len(new)} new"] + [f"{n} {what}" for what, n in (
        ("running (re-attaching)", sum(r.known == "running" for r in runs)),
        ("already trained (reused)", sum(r.known == "trained" for r in runs))) if n]
    text = f"Battery {battery_id}: {plan.describe()}. {', '.join(counts)}."
    if new:
        text += (f"\nNew trainings: about {format_usd(estimate)} in all (estimate; prices as of {prices.as_of}), "
                 f"about {wall_minutes([r.estimated_seconds for r in new], concurrency):.0f} min with "
                 f"{min(concurrency, len(new))} at a time on Replicate, once it gives them GPUs.")
    return text


def wall_minutes(seconds: list[float], concurrency: int) -> float:
    """Minutes until the last of these trainings ends, run `concurrency` at a time in this order."""
    slots = [0.0] * max(1, min(concurrency, len(seconds) or 1))
    for s in seconds:
        slots[slots.index(min(slots))] += s
    return max(slots) / 60


# --- 3. the runs ----------------------------------------------------------------------------------------
class Runner:
    """Runs each variant through the single trainer in a bounded pool of threads."""

    def __init__(self, dataset: Dataset, user_dir: Path, loras_dir: Path, api: ReplicateApi,
                 poll: PollSettings | None, clock: Clock | None, board: BatteryBoard, battery_id: str,
                 plan: BatteryPlan, monitoring: dict[str, Any]):
        self.dataset, self.user_dir, self.loras_dir, self.api = dataset, user_dir, loras_dir, api
        self.poll, self.clock, self.board, self.battery_id, self.plan = poll, clock, board, battery_id, plan
        self.monitoring = monitoring           # W&B inputs: sent with the create call only

    def run_all(self, runs: list[VariantRun], concurrency: int) -> None:
        """The trainings in worker threads; this thread shows their progress on the node (ProgressRelay)."""
        run_parallel([lambda run=run: self.train(run) for run in runs], self.board.relay, concurrency,
                     self.board.snapshot)

    def train(self, run: VariantRun) -> None:
        if self.board.interrupted():
            run.outcome, run.error = "not started", "Interrupted before it started: nothing was paid."
            self.board.ended(run, "stopped", run.error)
            return
        create = {**self.monitoring, "wandb_run": run.lora_name} if self.monitoring else {}
        options = RunOptions(lora_name=run.lora_name, lora_metadata=self.metadata(run), check_budget=False,
                             create_inputs=create)
        try:
            run.record = train_lora(self.dataset, run.settings, user_dir=self.user_dir, loras_dir=self.loras_dir,
                                    progress=self.board.progress_for(run), api=self.api, poll=self.poll,
                                    clock=self.clock, status=self.board.status_for(run), options=options)
            run.outcome = {"trained": "reused", "running": "re-attached"}.get(run.known, "trained")
            self.board.variant_progress(run, int(run.inputs["steps"]), int(run.inputs["steps"]), "")
        except Interrupted as exc:
            run.outcome, run.error = "canceled", str(exc)
        except LikenessError as exc:
            run.outcome, run.error = "failed", str(exc)
            self.board.ended(run, "error", str(exc))

    def metadata(self, run: VariantRun) -> dict[str, Any]:
        return {"likeness_battery": {"id": self.battery_id, "variant": run.label, "mode": self.plan.mode,
                                     "settings": {name: run.variant.values.get(name) for name in run.variant.factors},
                                     "changed": run.variant.changed}}


def finish(record: BatteryRecord, relay: ProgressRelay) -> BatteryRecord:
    runs, progress = record.runs, relay.progress
    if relay.interrupted() or progress.interrupted() or any(r.outcome in ("canceled", "not started") for r in runs):
        canceled = [r for r in runs if r.outcome == "canceled"]
        message = (f"Interrupted: the battery stopped. {len(canceled)} running training(s) canceled on Replicate"
                   + "".join(f"\n- {r.label}: {r.error}" for r in canceled)
                   + f"\n{len(record.finished)} LoRA(s) are installed; queue again to train the rest (finished ones "
                   "are reused).")
        _say(progress, message)
        raise relay.stopped(message)
    if not record.finished:
        raise ServiceError("No variant of the battery finished:\n- "
                           + "\n- ".join(f"{r.label}: {r.error}" for r in runs))
    _say(progress, record.summary())
    return record


# --- 4. what the node shows -----------------------------------------------------------------------------
class BatteryBoard:
    """Each variant's line and status, and the node's progress bar and text that add them up.

    Workers record their variant's progress here; the thread that started the battery shows `snapshot()` on the
    node and passes the user's interrupt on to the workers, through the relay.
    """

    def __init__(self, battery_id: str, runs: list[VariantRun], progress: Progress, status: StatusCallback | None,
                 prices: PriceTable, header: str):
        self.battery_id, self.runs, self.progress, self.on_status = battery_id, runs, progress, status
        self.price = prices.hardware_per_second(TRAINING_HARDWARE)
        self.header = header
        self._lock = threading.Lock()
        self.relay = ProgressRelay(progress)
        self.lines = {r.index: "queued" for r in runs}
        self.steps = {r.index: (0, int(r.inputs["steps"])) for r in runs}
        self.statuses: dict[int, dict[str, Any]] = {}
        for run in runs:
            first = TrainingStatus(phase="queued", total=int(run.inputs["steps"]), estimated_usd=run.estimated_usd,
                                   trigger_word=str(run.inputs.get("trigger_word", "")), started=time.time())
            self.update_status(run, first.as_dict())

    def interrupted(self) -> bool:
        return self.relay.interrupted()

    def snapshot(self) -> tuple[int, int, str]:
        """The node's bar (every variant's steps) and text (a header, the cost so far, a line per variant)."""
        with self._lock:
            done_all = sum(d for d, _ in self.steps.values())
            total_all = sum(t for _, t in self.steps.values())
            spent = sum(s.get("cost_so_far_usd") or 0.0 for s in self.statuses.values())
            body = "\n".join(f"{r.label}: {self.lines[r.index]}" for r in self.runs)
        return done_all, total_all, f"{self.header}\nCost so far about {format_usd(spent)}.\n{body}"

    def progress_for(self, run: VariantRun) -> VariantProgress:
        return VariantProgress(self, run)

    def status_for(self, run: VariantRun) -> Callable[[dict[str, Any]], None]:
        return lambda status: self.update_status(run, status)

    def ended(self, run: VariantRun, phase: str, message: str) -> None:
        current = self.statuses.get(run.index, {})
        if current.get("phase") not in ENDED:
            self.update_status(run, {**current, "phase": phase, "message": message, "ended": True})

    def update_status(self, run: VariantRun, status: dict[str, Any]) -> None:
        status = {**status, "battery": self.battery_id, "variant": run.index, "label": run.label,
                  "lora_name": run.lora_name, "estimated_usd": status.get("estimated_usd") or run.estimated_usd}
        status["cost_so_far_usd"] = self.cost_so_far(status)
        with self._lock:
            self.statuses[run.index] = status
        if self.on_status is not None:
            try:
                self.on_status(run.index, status)
            except Exception:  # noqa: BLE001 - a broken display must never stop (or re-pay) a training
                log.exception("Likeness: the battery status display failed")

    def cost_so_far(self, status: dict[str, Any]) -> float:
        """The real cost once a training ended; while it runs, its seconds since Replicate started it × price."""
        if status.get("cost_usd") is not None:
            return float(status["cost_usd"])
        if status.get("phase") in ENDED or not status.get("started_at"):
            return 0.0
        try:
            started = datetime.fromisoformat(str(status["started_at"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
        return max(0.0, time.time() - started) * self.price

    def variant_progress(self, run: VariantRun, done: int | None, total: int | None, text: str) -> None:
        with self._lock:
            if done is not None and total:
                self.steps[run.index] = (done, total)
            if text.strip():
                self.lines[run.index] = text.strip().splitlines()[0]
        self.relay.poke()


class VariantProgress:
    """One variant's Progress: its text and steps go to the battery's board; the interrupt comes from it."""

    def __init__(self, board: BatteryBoard, run: VariantRun):
        self.board, self.run = board, run

    def update(self, done: int, total: int, text: str = "") -> None:
        self.board.variant_progress(self.run, done, total, text)

    def text(self, text: str) -> None:
        self.board.variant_progress(self.run, None, None, text)

    def interrupted(self) -> bool:
        return self.board.interrupted()


def _say(progress: Progress, text: str) -> None:
    log.info("Likeness: %s", text)
    if hasattr(progress, "text"):
        progress.text(text)

"""Generating and scoring a strength sweep's images: on this machine one after another, or on Replicate a few
at a time — every image through the samplers' own code, none of them made or paid for twice.

`run_sweep(request, ...)` does, in order:

1. the jobs: one image per cell × prompt × seed (strength_sweep.SweepGrid gives the cells);
2. before anything is paid (Replicate): each image planned as the Replicate sampler plans it (the LoRA rows
   turned into what Replicate can fetch), looked up in its result cache, the new ones' inputs built with the
   sampler's strength → lora_scale conversion and checked against the model's own schema, their cost estimated
   and checked against the monthly budget as one sum. The node shows the number of images, the cost and the
   time before the first one starts;
3. the images: locally, `render(job)` (the node's call into LikenessFluxSampler's own sampling code) for each
   image not already in the seed journal; on Replicate, `remote_generation.generate` — the sampler's run, with
   its result cache (the same inputs never paid twice), journal entry, spend ledger and cancel —
   `REPLICATE_IN_FLIGHT` at a time;
4. each image scored for likeness as it arrives (`identity.score_images`), the node's text showing every cell's
   state; then the recommendation (strength_sweep.recommend), and the sweep stored for the stack's `measured`
   mode (loras/sweep_results.py).

Never twice, per image: a local image is stored in `<user dir>/sweep_images/` and its journal entry carries the
image's key (model, LoRA files and strengths, prompt, seed, settings): a re-run finds it there and generates
nothing. A Replicate image is found by the sampler's own result cache.

In flight on Replicate: 4 predictions at a time (`LIKENESS_SWEEP_IN_FLIGHT` changes it, 1–8). Four gives a
16-image sweep about 4× the speed of one after another, while a Cancel can leave at most four predictions
to cancel (each is billed for the seconds it ran), and accounts still on Replicate's low-credit limit (6
predictions a minute, bursts of 1) see a few 429s that the client waits out rather than a storm.
"""
from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..cloud.replicate_client import ReplicateApi, connect
from ..errors import InputError, LikenessError, ServiceError
from ..identity import Backend, ImageScore, ReferenceIdentity, score_images
from ..loras.sweep_results import SweepRecord, SweepResults
from ..money.prices import format_usd, load_prices
from ..money.spend_ledger import SpendLedger
from ..progress import Interrupted, Progress, ProgressRelay, SilentProgress, run_parallel
from ..storage import atomic_write_bytes, json_digest
from .remote_generation import (SECONDS_PER_STEP, SETUP_SECONDS, GenerationSettings, Plan, ResultCache,
                                build_inputs, cache_key, estimate_cost, fetch_schema, generate, plan_generation,
                                validate_inputs)
from .seed_journal import JournalEntry, SeedJournal
from .strength_sweep import (Cell, CellImage, LoraRef, SweepGrid, SweepResult, likeness_grid, recommend, strength,
                             sweep_id)

log = logging.getLogger("likeness")
REPLICATE_IN_FLIGHT = 4
IMAGES_DIR = "sweep_images"
WHERE = ("local", "replicate")


@dataclass(frozen=True)
class SweepRequest:
    personal: LoraRef
    style: LoraRef
    grid: SweepGrid
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    where: str = "replicate"
    trigger_words: str = ""
    steps: int = 35
    guidance: float = 2.75
    width: int = 1024                    # local
    height: int = 1024
    aspect_ratio: str = "1:1"            # Replicate
    go_fast: bool = True                 # Replicate (flux-dev-lora's own default)
    tolerance: float = 5.0
    tolerance_of: str = "personal only"
    others: tuple[tuple[str, str, float], ...] = ()   # local: other rows (name, key, strength), kept as they are
    left_out: tuple[str, ...] = ()       # Replicate: other rows (it takes one extra LoRA)
    local_identity: str = ""             # local: what identifies the model, text encoders and VAE


@dataclass(frozen=True)
class ImageJob:
    index: int                           # in the sweep's job list
    cell: int                            # index in grid.cells()
    personal: float
    style: float
    prompt_index: int
    prompt: str
    seed: int


Render = Callable[[ImageJob], tuple[np.ndarray, JournalEntry]]


def run_sweep(request: SweepRequest, *, user_dir: str | Path, reference: ReferenceIdentity, backend: Backend,
              progress: Progress | None = None, render: Render | None = None,
              locate: Callable[[str], str | None] | None = None, api: ReplicateApi | None = None,
              in_flight: int | None = None) -> SweepResult:
    """Generates (or reuses), scores and recommends; see the module docstring."""
    if request.where not in WHERE:
        raise InputError(f"where must be one of {', '.join(WHERE)}; got {request.where!r}")
    if not request.prompts or not request.seeds:
        raise InputError("The sweep needs at least one prompt (one per line) and one seed")
    user_dir = Path(user_dir)
    the_id = sweep_id({"request": asdict(request), "reference": reference.content_hash, "backend": backend.name})
    jobs = image_jobs(request)
    cells = [Cell(r, c, p, s) for r, c, p, s in request.grid.cells()]
    tracker = SweepTracker(the_id, request, jobs, progress or SilentProgress())
    if request.left_out:
        tracker.notes.append(f"Left out on Replicate (it takes one extra LoRA): {', '.join(request.left_out)}.")

    def score(pixels: np.ndarray) -> ImageScore:
        return score_images([pixels], reference, backend)[0]

    def arrived(job: ImageJob, image: CellImage) -> None:
        if image.image is not None and image.score is None:
            image.score = score(image.image)
        cells[job.cell].images.append(image)
        tracker.finished(job, image)

    if request.where == "local":
        if render is None:
            raise InputError("A local sweep needs the model, clip and vae inputs connected")
        estimate = 0.0
        generate_locally(request, jobs, user_dir, the_id, render, tracker, arrived)
    else:
        estimate = generate_on_replicate(request, jobs, user_dir, locate, tracker, arrived, score, api,
                                         in_flight or in_flight_setting())
    for cell in cells:
        cell.images.sort(key=lambda i: (i.prompt, request.seeds.index(i.seed)))
    likeness = likeness_grid(request.grid, cells)
    result = SweepResult(the_id, request.personal, request.style, request.grid, cells,
                         recommend(request.grid, likeness, request.tolerance, request.tolerance_of),
                         request.where, request.prompts, request.seeds, backend.name, estimate, tracker.notes)
    SweepResults(user_dir).add(sweep_record(result, request))
    return result


def image_jobs(request: SweepRequest) -> list[ImageJob]:
    jobs = []
    for cell, (_, _, p, s) in enumerate(request.grid.cells()):
        for i, prompt in enumerate(request.prompts):
            for seed in request.seeds:
                jobs.append(ImageJob(len(jobs), cell, p, s, i, prompt, int(seed)))
    return jobs


def in_flight_setting() -> int:
    try:
        value = int(os.environ.get("LIKENESS_SWEEP_IN_FLIGHT", REPLICATE_IN_FLIGHT))
    except ValueError:
        value = REPLICATE_IN_FLIGHT
    return max(1, min(value, 8))


def sweep_record(result: SweepResult, request: SweepRequest) -> SweepRecord:
    rec = result.recommendation
    return SweepRecord(id=result.id, personal_name=request.personal.name, personal_sha256=request.personal.sha256,
                       style_name=request.style.name, style_sha256=request.style.sha256,
                       personal=list(request.grid.personal), style=list(request.grid.style),
                       likeness=result.likeness_grid(), recommended_personal=rec.personal,
                       recommended_style=rec.style, recommended_likeness=rec.likeness,
                       reference_likeness=rec.reference, tolerance=rec.tolerance, text=rec.text,
                       where=request.where, backend=result.backend)


# --- on this machine ------------------------------------------------------------------------------------
def generate_locally(request: SweepRequest, jobs: Sequence[ImageJob], user_dir: Path, the_id: str, render: Render,
                     tracker: SweepTracker, arrived: Callable[[ImageJob, CellImage], None]) -> None:
    """One image after another (one GPU); an image already in the journal is read back, not generated."""
    journal = SeedJournal(user_dir)
    by_key = {e.extra.get("sweep_image"): e for e in journal.entries() if e.extra.get("sweep_image")}
    keys = [local_key(request, job) for job in jobs]
    new = sum(1 for key in keys if _stored_image(by_key.get(key)) is None)
    head = (f"{len(jobs)} images on this machine, one after another (no cost); {len(jobs) - new} of them are "
            "already in the seed journal")
    tracker.start(head)
    made, started = 0, time.monotonic()
    for job, key in zip(jobs, keys):
        tracker.show()
        if tracker.interrupted():
            raise tracker.stop(f"stopped after {job.index} of {len(jobs)} images; they are kept in the seed "
                               "journal, so queuing again goes on from there")
        entry = by_key.get(key)
        image = _stored_image(entry)
        if image is not None:
            arrived(job, CellImage(job.prompt_index, job.seed, image, journal_id=entry.id, reused=True))
            continue
        tracker.working(job, "sampling")
        tracker.show()
        pixels, entry = render(job)
        png = _png(pixels)
        path = atomic_write_bytes(user_dir / IMAGES_DIR / f"{key[:40]}.png", png)
        entry.images = [str(path)]
        entry.extra.update({"sweep": the_id, "sweep_image": key, "sweep_strengths": [job.personal, job.style]})
        journal.record(entry)
        made += 1
        each = (time.monotonic() - started) / made
        left = f", {_duration(each * (new - made))} left" if new > made else ""
        tracker.head = f"Sweep {the_id}: {head}; about {_duration(each)} an image{left}."
        arrived(job, CellImage(job.prompt_index, job.seed, _decode(png), journal_id=entry.id))
    tracker.show()


def local_key(request: SweepRequest, job: ImageJob) -> str:
    """Everything that makes a local image: model identity, LoRA files and strengths, prompt, seed, settings."""
    loras = [[request.personal.key, job.personal], [request.style.key, job.style]]
    loras += [[key, strength] for _, key, strength in request.others]
    what = {"model": request.local_identity, "loras": loras, "prompt": job.prompt,
            "trigger_words": request.trigger_words, "seed": job.seed, "steps": request.steps,
            "guidance": request.guidance, "size": [request.width, request.height],
            "sampler": ["euler", "simple", 1.15, 0.5]}
    return json_digest(what)


def _stored_image(entry: JournalEntry | None) -> np.ndarray | None:
    if entry is None or not entry.images:
        return None
    try:
        return _decode(Path(entry.images[0]).read_bytes())
    except (OSError, ValueError):
        return None


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(pixels) * 255.0 + 0.5, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def _decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


# --- on Replicate -----------------------------------------------------------------------------------------
@dataclass
class _Planned:
    job: ImageJob
    settings: GenerationSettings
    stack: list[tuple[str, float, float]]
    plan: Plan
    stored: bool


def generate_on_replicate(request: SweepRequest, jobs: Sequence[ImageJob], user_dir: Path,
                          locate: Callable[[str], str | None] | None, tracker: SweepTracker,
                          arrived: Callable[[ImageJob, CellImage], None], score: Callable[[np.ndarray], ImageScore],
                          api: ReplicateApi | None, in_flight: int) -> float:
    """Checks, estimates and budgets every new image first; then runs them `in_flight` at a time, each scored by
    the thread that fetched it (the face model holds the interpreter lock while it runs: scoring every image on
    one thread would hold up the others' next requests). The estimate."""
    planned = plan_replicate(request, jobs, user_dir, locate)
    new = [p for p in planned if not p.stored]
    estimate, seconds, api = check_before_paying(new, user_dir, api)
    waves = math.ceil(len(new) / in_flight) if new else 0
    tracker.start(f"{len(jobs)} images on Replicate ({len(new)} new, {len(jobs) - len(new)} stored), {in_flight} at "
                  f"a time: about {format_usd(estimate)} and {_duration(waves * seconds)}")
    errors: list[LikenessError] = []
    interrupted: list[Interrupted] = []

    def one(item: _Planned) -> None:
        job = item.job
        if errors or tracker.interrupted():
            return
        tracker.working(job, "starting" if not item.stored else "stored")
        try:
            result = generate(item.settings, user_dir=user_dir, stack=item.stack, locate=locate, api=api,
                              progress=_CellProgress(tracker, job))
            tracker.working(job, "scoring")
            image = CellImage(job.prompt_index, job.seed, result.images[0], score(result.images[0]),
                              journal_id=result.journal_id, reused=result.reused, cost_usd=result.cost_usd)
        except Interrupted as exc:
            interrupted.append(exc)
            return
        except ServiceError as exc:                    # this image failed on Replicate; the others go on
            image = CellImage(job.prompt_index, job.seed, None, error=str(exc))
            tracker.notes.append(f"personal {strength(job.personal)}, style {strength(job.style)}, seed "
                                 f"{job.seed}: {exc}")
        except LikenessError as exc:                    # a refusal before paying: no new one starts
            errors.append(exc)
            return
        arrived(job, image)

    run_parallel([lambda item=item: one(item) for item in planned], tracker.relay, in_flight, tracker.snapshot)
    kept = tracker.count_done()
    if interrupted or tracker.interrupted():
        canceled = sum(1 for exc in interrupted if "canceled prediction" in str(exc))
        raise tracker.stop(f"canceled: {canceled} prediction(s) in flight canceled on Replicate; {kept} of "
                           f"{len(jobs)} images are kept (queuing again reuses them and pays only for the rest)")
    if errors:
        raise type(errors[0])(f"{errors[0]} ({kept} of {len(jobs)} images are kept; queuing again reuses them)")
    if new and all(c.error for c in tracker.images.values() if not c.reused):
        raise ServiceError("Every new image of the sweep failed on Replicate: " + tracker.notes[-1])
    return estimate


def plan_replicate(request: SweepRequest, jobs: Sequence[ImageJob], user_dir: Path,
                   locate: Callable[[str], str | None] | None) -> list[_Planned]:
    """Each image as the Replicate sampler would run it: flux-dev-lora, the personal LoRA as lora_weights and
    the style LoRA as the one extra LoRA (none in the style-0 column); stored ones found in its result cache."""
    cache = ResultCache(user_dir)
    planned = []
    for job in jobs:
        settings = GenerationSettings(prompt=job.prompt, trigger_words=request.trigger_words, seed=job.seed,
                                      steps=request.steps, guidance=request.guidance,
                                      aspect_ratio=request.aspect_ratio, output_format="png",
                                      lora_strength=job.personal, go_fast=request.go_fast, run_on="flux-dev-lora")
        stack = [(request.personal.name, job.personal, job.personal)]
        if job.style != 0:
            stack.append((request.style.name, job.style, job.style))
        plan = plan_generation(settings, None, stack, locate)
        planned.append(_Planned(job, settings, stack, plan, cache.load(cache_key(plan, settings)) is not None))
    return planned


def check_before_paying(new: Sequence[_Planned], user_dir: Path,
                        api: ReplicateApi | None) -> tuple[float, float, ReplicateApi | None]:
    """(estimated USD, seconds per image, the client the images share) for the new images: the sum checked against
    the monthly budget before any request, then every image's inputs checked against the model's own schema.
    Nothing is created here."""
    if not new:
        return 0.0, 0.0, api
    prices = load_prices(user_dir)
    estimate = sum(estimate_cost(item.plan, {"num_outputs": 1, "num_inference_steps": item.settings.steps}, prices)
                   for item in new)
    SpendLedger(user_dir).check(estimate, f"The strength sweep's {len(new)} new FLUX images on Replicate")
    api = api or connect(user_dir)
    schema = fetch_schema(api, new[0].plan)
    for item in new:
        inputs, _ = build_inputs(item.plan, item.settings, schema)
        validate_inputs(inputs, schema, item.plan.ref)
    per_step = float(prices.data.get("replicate_generation_seconds_per_step", SECONDS_PER_STEP))
    setup = float(prices.data.get("replicate_generation_setup_seconds", SETUP_SECONDS))
    return estimate, setup + per_step * new[0].settings.steps, api


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min"


class _CellProgress:
    """What one image's Replicate run reports, shown in its cell; an interrupt reaches every run."""

    def __init__(self, tracker: SweepTracker, job: ImageJob):
        self.tracker, self.job = tracker, job

    def update(self, done: int, total: int, text: str = "") -> None:
        self.tracker.working(self.job, f"{done}/{total}" if total and "step" in text else "running")

    def interrupted(self) -> bool:
        return self.tracker.interrupted()


# --- progress per cell ------------------------------------------------------------------------------------
class SweepTracker:
    """The node's progress bar (images done) and text: the plan, then every cell's state on the grid.

    Worker threads only record states; the sweep's own thread shows them through the relay (`show`, or
    run_parallel's watch), which keeps an interrupt the host raises from its bar for `stop` to raise at the end."""

    def __init__(self, the_id: str, request: SweepRequest, jobs: Sequence[ImageJob], progress: Progress):
        self.id, self.request, self.jobs, self.progress = the_id, request, list(jobs), progress
        self.images: dict[int, CellImage] = {}
        self.states: dict[int, str] = {}
        self.notes: list[str] = []
        self.head = ""
        self.relay = ProgressRelay(progress)
        self._lock = threading.Lock()

    def start(self, head: str) -> str:
        """Shows `head` above the grid (what the sweep will do, or how it ended); returns it."""
        self.head = f"Sweep {self.id}: {head}."
        log.info("Likeness: %s", self.head)
        self.show()
        return self.head

    def stop(self, summary: str) -> BaseException:
        """What to raise when the user stopped the sweep: the host's own interrupt, or Interrupted."""
        return self.relay.stopped(self.start(summary))

    def interrupted(self) -> bool:
        return self.relay.interrupted() or self.progress.interrupted()

    def working(self, job: ImageJob, state: str) -> None:
        with self._lock:
            self.states[job.index] = state

    def finished(self, job: ImageJob, image: CellImage) -> None:
        with self._lock:
            self.images[job.index] = image
            self.states.pop(job.index, None)

    def count_done(self) -> int:
        with self._lock:
            return sum(1 for i in self.images.values() if i.image is not None)

    def show(self) -> None:
        self.relay.show(*self.snapshot())

    def snapshot(self) -> tuple[int, int, str]:
        with self._lock:
            return len(self.images), len(self.jobs), "\n".join([self.head, self.grid_text()])

    def grid_text(self) -> str:
        grid = self.request.grid
        lines = ["personal \\ style " + " ".join(f"{strength(s):>9}" for s in grid.style)]
        for r, p in enumerate(grid.personal):
            states = [self.cell_state(r * grid.shape[1] + c) for c in range(grid.shape[1])]
            lines.append(f"{strength(p):>16} " + " ".join(f"{state[:9]:>9}" for state in states))
        return "\n".join(lines)

    def cell_state(self, cell: int) -> str:
        jobs = [j for j in self.jobs if j.cell == cell]
        finished = [self.images[j.index] for j in jobs if j.index in self.images]
        if len(finished) == len(jobs):
            numbers = [i.score.likeness for i in finished if i.score is not None and i.score.likeness is not None]
            if numbers:
                return f"{np.mean(numbers):.0f}"
            return "failed" if any(i.error for i in finished) else (finished[0].score.reason if finished[0].score
                                                                   else "done")
        working = [self.states[j.index] for j in jobs if j.index in self.states]
        if working:
            return working[0] if len(jobs) == 1 else f"{len(finished)}/{len(jobs)} {working[0]}"
        return f"{len(finished)}/{len(jobs)}" if finished else "·"

"""The training battery's report: every finished variant on the same prompts and seeds, judged by likeness.

`battery_report(battery, settings, ...)` in order:

1. the prompts: `label | seed | prompt` lines, by default a close-up, a half body and a stylised prompt (the last
   two after the seed's own examples); the trigger word is put first, as the seed says;
2. one image per variant and prompt, all with the same seed per prompt: on Replicate with the variant's trained
   version, through the Replicate sampler's own code (`remote_generation.generate`: result cache, schema check,
   journal, never paid twice), after the images not made yet are estimated and checked against the monthly budget
   as a whole; or, when the node has a local MODEL, through `render` (the local sampler's code) on this machine;
3. every image scored for likeness against the battery's training photos (the identity library), and each
   variant's mean likeness over the images that show one clear face;
4. the comparison sheet (`battery_sheet`): variants as rows, prompts as columns, the score on each image, and per
   variant its mean likeness, training cost, training time and LoRA size; the best variant by mean likeness is
   named, with its margin over the next;
5. the same figures appended to `<output>/likeness/battery_reports.csv`, so batteries can be compared over time.
"""
from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cloud.replicate_client import ReplicateApi, connect
from ..cloud.replicate_jobs import Clock, PollSettings
from ..errors import InputError
from ..identity import ImageScore, load_backend, reference_from_photos, score_images
from ..money.prices import format_usd, load_prices
from ..money.spend_ledger import SpendLedger
from ..progress import Progress, ProgressRelay, SilentProgress, run_parallel
from ..training.battery import BatteryRecord, VariantRun
from .remote_generation import (GenerationSettings, ResultCache, cache_key, estimate_cost, generate,
                                plan_generation)

log = logging.getLogger("likeness.battery_report")

DEFAULT_PROMPTS = "\n".join([
    "close-up | 1 | close-up portrait photo, head and shoulders, looking into the camera, soft window light, "
    "shallow focus, 85mm lens, natural skin texture",
    "half body | 2 | analog upper-body portrait in a collared white shirt, black necktie and black suit jacket, "
    "hands in the pockets, low-key lighting against a gray studio background, visible film grain",
    "stylised | 3 | watercolor painting of a smiling person in vibrant 1960s psychedelic clothes in a field of "
    "wildflowers, loose brush strokes, warm colours",
])
MAX_PROMPTS = 12
CSV_FILE = Path("likeness") / "battery_reports.csv"
CSV_FIELDS = ["time", "battery", "trigger_word", "dataset_hash", "variant", "lora_file", "lora_mb", "training_id",
              "training_min", "training_cost_usd", "mean_likeness", "scored", "images", "scores", "generated_on",
              "backend", "best", "margin_to_next"]
WORKERS = 4                    # Replicate predictions at once (the trainings' reason: polls and the create limit)


@dataclass(frozen=True)
class ReportPrompt:
    label: str
    seed: int
    text: str


@dataclass(frozen=True)
class ReportSettings:
    """The node's inputs (the seed's inference settings by default)."""
    prompts: str = DEFAULT_PROMPTS
    steps: int = 35
    guidance: float = 2.75
    lora_strength: float = 0.9
    backend: str = "auto"


@dataclass
class VariantRow:
    run: VariantRun
    images: list[np.ndarray]
    scores: list[ImageScore] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.run.label

    @property
    def scored(self) -> list[float]:
        return [s.likeness for s in self.scores if s.likeness is not None]

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.scored)) if self.scored else None

    @property
    def lora_mb(self) -> float:
        try:
            return os.path.getsize(self.run.record.lora_path) / 1e6
        except OSError:
            return 0.0

    def figures(self) -> str:
        record = self.run.record
        return f"{format_usd(record.cost_usd)} · {record.predict_time / 60:.1f} min · {self.lora_mb:.1f} MB"


@dataclass
class BatteryReport:
    battery: BatteryRecord
    prompts: list[ReportPrompt]
    rows: list[VariantRow]
    backend: str
    generated_on: str                  # "Replicate" or "this machine"
    images_cost_usd: float = 0.0
    images_estimated_usd: float = 0.0
    new_images: int = 0
    csv_path: Path | None = None
    skipped: list[str] = field(default_factory=list)      # variants without a LoRA, and why
    unscored: str = ""                 # why no image could be scored (no usable reference photo), or ""

    def ranked(self) -> list[VariantRow]:
        """Rows with a mean likeness, best first."""
        return sorted((r for r in self.rows if r.mean is not None), key=lambda r: -r.mean)

    def best(self) -> tuple[VariantRow | None, float | None]:
        """The best variant and its margin over the next (None when there is no next to compare with)."""
        ranked = self.ranked()
        if not ranked:
            return None, None
        return ranked[0], (ranked[0].mean - ranked[1].mean if len(ranked) > 1 else None)

    def best_line(self) -> str:
        best, margin = self.best()
        if self.unscored:
            return f"Not scored: {self.unscored}"
        if best is None:
            return "No variant can be ranked: none of the images shows one clear face (see the reasons on the sheet)."
        if margin is None:
            return f"Only {best.label} can be ranked: mean likeness {best.mean:.1f}."
        runner_up = self.ranked()[1]
        return (f"Best: {best.label}, mean likeness {best.mean:.1f}, {margin:.1f} above {runner_up.label} "
                f"({runner_up.mean:.1f}). LoRA: {best.run.record.lora_file}")

    def table(self) -> str:
        width = max([len("variant")] + [len(r.label) for r in self.rows]) + 2
        heads = [p.label[:12] for p in self.prompts]
        lines = [f"Battery {self.battery.id}: {len(self.rows)} variants × {len(self.prompts)} prompts, generated on "
                 f"{self.generated_on}, scored with {self.backend} (likeness 0–100, 50 = same-person line)",
                 "variant".ljust(width) + "".join(h.rjust(13) for h in heads)
                 + "    mean  training   GPU time     LoRA"]
        for row in self.rows:
            cells = "".join((f"{s.likeness:.1f}" if s.likeness is not None else s.reason[:12]).rjust(13)
                            for s in row.scores)
            mean = f"{row.mean:.1f}" if row.mean is not None else "—"
            record = row.run.record
            lines.append(f"{row.label.ljust(width)}{cells}{mean.rjust(8)}{format_usd(record.cost_usd).rjust(10)}"
                         f"{record.predict_time / 60:7.1f} min{row.lora_mb:6.1f} MB")
        lines.append(self.best_line())
        if self.generated_on == "Replicate":
            reused = len(self.rows) * len(self.prompts) - self.new_images
            lines.append(f"Images: {self.new_images} new for {format_usd(self.images_cost_usd)} (estimate "
                         f"{format_usd(self.images_estimated_usd)}), {reused} reused (nothing paid).")
        lines += [f"Not in the report: {s}" for s in self.skipped]
        if self.csv_path:
            lines.append(f"Figures appended to {self.csv_path}")
        return "\n".join(lines)


Renderer = Callable[[VariantRun, ReportPrompt, ReportSettings], np.ndarray]


def battery_report(battery: BatteryRecord, settings: ReportSettings, *, user_dir: str | Path,
                   output_dir: str | Path, models_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, render: Renderer | None = None,
                   progress: Progress | None = None, api: ReplicateApi | None = None,
                   poll: PollSettings | None = None, clock: Clock | None = None) -> BatteryReport:
    """Generates, scores and compares the battery's finished variants (see the module's docstring)."""
    user_dir, progress = Path(user_dir), progress or SilentProgress()
    prompts = parse_prompts(settings.prompts)
    runs = battery.finished
    if not runs:
        raise InputError("The battery has no finished variant to compare: queue the battery again.")
    report = BatteryReport(battery, prompts, [VariantRow(run, []) for run in runs], backend=settings.backend,
                           generated_on="Replicate" if render is None else "this machine",
                           skipped=[f"{r.label} ({r.outcome})" for r in battery.runs if r.record is None])
    if render is None:
        ReplicateImages(report, settings, user_dir, progress, api, poll, clock).make()
    else:
        for i, row in enumerate(report.rows):
            for j, prompt in enumerate(prompts):
                progress.update(i * len(prompts) + j, len(runs) * len(prompts),
                                f"Drawing {row.label} · {prompt.label} on this machine")
                row.images.append(render(row.run, prompt, settings))
    score(report, settings.backend, models_dir, cache_dir, progress)
    report.csv_path = append_csv(report, Path(output_dir) / CSV_FILE)
    return report


def parse_prompts(text: str) -> list[ReportPrompt]:
    """`label | seed | prompt` lines (or `seed | prompt`, `label | prompt`, or just the prompt)."""
    prompts = []
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        n = len(prompts) + 1
        if len(parts) >= 3:
            label, seed, body = parts[0], parts[1], "|".join(parts[2:]).strip()
        elif len(parts) == 2:
            (label, seed), body = (("", parts[0]) if parts[0].isdigit() else (parts[0], str(n))), parts[1]
        else:
            label, seed, body = "", str(n), parts[0]
        if not seed.isdigit():
            raise InputError(f"prompts line {number}: the seed {seed!r} must be a whole number (label | seed | "
                             "prompt).")
        if not body:
            raise InputError(f"prompts line {number}: the prompt is empty (label | seed | prompt).")
        prompts.append(ReportPrompt(label or f"prompt {n}", int(seed), body))
    if not prompts:
        raise InputError("No prompts: write one per line as label | seed | prompt, e.g. close-up | 1 | close-up "
                         "portrait photo.")
    if len(prompts) > MAX_PROMPTS:
        raise InputError(f"{len(prompts)} prompts: a report compares at most {MAX_PROMPTS} (every one is generated "
                         "for every variant).")
    return prompts


class ReplicateImages:
    """The report's images on Replicate: estimated and budgeted as a whole, then made 4 at a time."""

    def __init__(self, report: BatteryReport, settings: ReportSettings, user_dir: Path, progress: Progress,
                 api: ReplicateApi | None, poll: PollSettings | None, clock: Clock | None):
        self.report, self.settings, self.user_dir, self.progress = report, settings, user_dir, progress
        self.api, self.poll, self.clock = api, poll, clock
        self.cells = [(row, j, prompt) for row in report.rows for j, prompt in enumerate(report.prompts)]
        self.done: dict[tuple[int, int], np.ndarray] = {}
        self.lines: dict[tuple[int, int], str] = {}
        self._lock = threading.Lock()

    def make(self) -> None:
        new, estimate = self.estimate()
        what = f"The report's {new} new image{'s' if new != 1 else ''}, checked as a whole,"
        if new:
            SpendLedger(self.user_dir).check(estimate, what)
        self.report.new_images, self.report.images_estimated_usd = new, estimate
        self.say(f"Report: {len(self.cells)} images ({len(self.report.rows)} variants × {len(self.report.prompts)} "
                 f"prompts) on Replicate; {new} new, about {format_usd(estimate)} (estimate), "
                 f"{len(self.cells) - new} already made (nothing paid).")
        self.api = self.api or connect(self.user_dir)
        relay = ProgressRelay(self.progress)
        run_parallel([lambda cell=cell: self.make_one(cell, relay) for cell in self.cells], relay, WORKERS,
                     self.snapshot)
        if relay.interrupted():
            raise relay.stopped(f"Interrupted: {len(self.done)} of {len(self.cells)} images were made (kept: queuing "
                              "again reuses them, nothing is paid twice).")
        for row in self.report.rows:
            row.images = [self.done[(row.run.index, j)] for j in range(len(self.report.prompts))]

    def estimate(self) -> tuple[int, float]:
        """How many images are not made yet (the result cache), and what they would cost."""
        cache, prices, new, estimate = ResultCache(self.user_dir), load_prices(self.user_dir), 0, 0.0
        for row, _, prompt in self.cells:
            settings = self.generation_settings(row.run, prompt)
            plan = plan_generation(settings, row.run.record)
            if cache.load(cache_key(plan, settings)) is None:
                new += 1
                estimate += estimate_cost(plan, {"num_inference_steps": settings.steps, "num_outputs": 1}, prices)
        return new, estimate

    def generation_settings(self, run: VariantRun, prompt: ReportPrompt) -> GenerationSettings:
        return GenerationSettings(prompt.text, trigger_words=run.record.trigger_word, seed=prompt.seed,
                                  steps=int(self.settings.steps), guidance=float(self.settings.guidance),
                                  lora_strength=float(self.settings.lora_strength), run_on="trained version",
                                  version=run.record.version)

    def make_one(self, cell: tuple[VariantRow, int, ReportPrompt], relay: ProgressRelay) -> None:
        row, j, prompt = cell
        key = (row.run.index, j)
        if relay.interrupted():
            return
        result = generate(self.generation_settings(row.run, prompt), user_dir=self.user_dir, training=row.run.record,
                          progress=CellProgress(self, key, relay), api=self.api, poll=self.poll, clock=self.clock)
        with self._lock:
            self.done[key] = result.images[0]
            self.report.images_cost_usd += result.cost_usd
            self.lines[key] = f"{row.label} · {prompt.label}: " + ("reused" if result.reused else
                                                                   f"{format_usd(result.cost_usd)}")

    def snapshot(self) -> tuple[int, int, str]:
        with self._lock:
            text = "\n".join(self.lines[k] for k in sorted(self.lines))
            return len(self.done), len(self.cells), f"Report images: {len(self.done)} of {len(self.cells)}\n{text}"

    def say(self, text: str) -> None:
        log.info("Likeness: %s", text)
        if hasattr(self.progress, "text"):
            self.progress.text(text)


class CellProgress:
    """One image's Progress: its latest line goes to the report's text; the interrupt comes from the relay."""

    def __init__(self, images: ReplicateImages, key: tuple[int, int], relay: ProgressRelay):
        self.images, self.key, self.relay = images, key, relay

    def update(self, done: int, total: int, text: str = "") -> None:
        self.text(text)

    def text(self, text: str) -> None:
        if text.strip():
            with self.images._lock:
                self.images.lines[self.key] = text.strip().splitlines()[0]
            self.relay.poke()

    def interrupted(self) -> bool:
        return self.relay.interrupted()


def score(report: BatteryReport, backend_name: str, models_dir, cache_dir, progress: Progress) -> None:
    """Every image's likeness to the battery's training photos (their embeddings are cached)."""
    backend = load_backend(backend_name, models_dir)
    report.backend = backend.name
    images = [image for row in report.rows for image in row.images]
    try:
        reference = reference_from_photos(report.battery.dataset, backend, cache_dir)
    except InputError as exc:          # the images are made (and paid): show them, and say why they have no score
        report.unscored = str(exc)
        scores = [ImageScore(None, "not scored", None, backend.name, None) for _ in images]
    else:
        scores = score_images(images, reference, backend, progress)
    per_row = len(report.prompts)
    for i, row in enumerate(report.rows):
        row.scores = scores[i * per_row:(i + 1) * per_row]


def append_csv(report: BatteryReport, path: Path) -> Path:
    """One line per variant, appended (a history across batteries); a file with other columns is left alone
    and the figures go to the next free `battery_reports-N.csv`."""
    path = free_csv_path(path)
    best, margin = report.best()
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        for row in report.rows:
            record = row.run.record
            writer.writerow({
                "time": when, "battery": report.battery.id, "trigger_word": record.trigger_word,
                "dataset_hash": record.dataset_hash[:16], "variant": row.label, "lora_file": record.lora_file,
                "lora_mb": f"{row.lora_mb:.2f}", "training_id": record.id,
                "training_min": f"{record.predict_time / 60:.2f}", "training_cost_usd": f"{record.cost_usd:.4f}",
                "mean_likeness": "" if row.mean is None else f"{row.mean:.1f}", "scored": len(row.scored),
                "images": len(row.scores),
                "scores": "; ".join(f"{p.label} (seed {p.seed})={s.label()}" for p, s in zip(report.prompts,
                                                                                        row.scores)),
                "generated_on": report.generated_on, "backend": report.backend,
                "best": "yes" if best is row else "",
                "margin_to_next": f"{margin:.1f}" if best is row and margin is not None else ""})
    return path


def free_csv_path(path: Path) -> Path:
    header = ",".join(CSV_FIELDS)
    candidate, n = path, 1
    while candidate.exists():
        with open(candidate, encoding="utf-8", newline="") as f:
            if f.readline().strip() == header:
                return candidate
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate

"""Best of N on Replicate: N candidate images packed into as few predictions as the model allows, their whole cost
said and checked before the first one is paid, and each prediction the Replicate sampler's own run.

`generate_candidates(settings, candidates, ...)`, in order:

1. plan as the sampler plans (`remote_generation.plan_generation`) and read the model's own schema for how many
   images one prediction may make (`num_outputs`' maximum: 4 on flux-dev-lora and on trained versions);
2. the predictions: seeds seed, seed+1, …, each making up to that many images until there are N (10 candidates
   on flux-dev-lora: 4 + 4 + 2);
3. each looked up in the sampler's result cache; the new ones' inputs checked against the schema, their cost
   estimated and checked against the monthly budget as one sum, and said, before anything is paid;
4. each prediction through `remote_generation.generate`, one after another: its result cache (queuing the same
   candidates again pays nothing), one journal entry per image, the spend ledger, Cancel. An interrupt between
   predictions keeps the ones made (queuing again pays only for the rest).

Then `score_candidates` scores every image against the reference (sampler_scores.py), into its journal entry (an
image scored before against the same reference is not scored again), and gives them most alike first.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cloud.replicate_client import ReplicateApi, connect
from ..cloud.replicate_jobs import Clock, PollSettings
from ..money.prices import format_usd, load_prices
from ..identity import ImageScore
from ..money.spend_ledger import SpendLedger
from ..progress import Interrupted, Progress, SilentProgress
from .remote_generation import (GenerationResult, GenerationSettings, ResultCache, build_inputs, cache_key,
                                estimate_cost, fetch_schema, generate, plan_generation, validate_inputs)
from .sampler_scores import Scorer, ranked, ranking_text, score_journaled
from .seed_journal import JournalEntry, SeedJournal, nth_seed

log = logging.getLogger("likeness")

@dataclass
class Candidates:
    results: list[GenerationResult]      # one per prediction, in seed order
    estimate: float                      # what the new predictions were estimated to cost, before
    predictions: int
    stored: int                          # predictions found in the result cache (nothing paid for them)

    @property
    def cost(self) -> float:
        return sum(r.cost_usd for r in self.results)

    def summary(self) -> str:
        images = sum(len(r.images) for r in self.results)
        paid = self.predictions - self.stored
        return (f"{images} candidates from {self.predictions} prediction(s) ({self.stored} stored, nothing paid for "
                f"them): cost {format_usd(self.cost)} for {paid} new (the estimate was {format_usd(self.estimate)}).")


def generate_candidates(settings: GenerationSettings, candidates: int, *, user_dir: str | Path, training: Any = None,
                        stack: list | None = None, locate: Callable[[str], str | None] | None = None,
                        progress: Progress | None = None, api: ReplicateApi | None = None,
                        poll: PollSettings | None = None, clock: Clock | None = None,
                        wait_s: int | None = None) -> Candidates:
    """`candidates` images (1: the sampler's one run, as its settings say); see the module's docstring."""
    progress = progress or SilentProgress()
    run = dict(user_dir=user_dir, training=training, stack=stack, locate=locate, progress=progress, poll=poll,
               clock=clock, wait_s=wait_s)
    if candidates <= 1:
        result = generate(settings, api=api, **run)
        return Candidates([result], 0.0 if result.reused else result.estimated_usd, 1, int(result.reused))
    api = api or connect(user_dir)
    plan = plan_generation(settings, training, stack, locate)
    schema = fetch_schema(api, plan)
    runs = candidate_runs(settings, candidates, outputs_per_prediction(schema))
    cache = ResultCache(user_dir)
    new = [r for r in runs if settings.rerun or cache.load(cache_key(plan, r)) is None]
    prices = load_prices(user_dir)
    estimate = 0.0
    for each in new:
        inputs, _ = build_inputs(plan, each, schema)
        validate_inputs(inputs, schema, plan.ref)
        estimate += estimate_cost(plan, inputs, prices)
    what = f"{candidates} candidate FLUX images on Replicate ({plan.model}, {len(runs)} prediction(s))"
    if new:
        SpendLedger(user_dir).check(estimate, what)
    said = (f"{what}: {len(runs) - len(new)} stored; about {format_usd(estimate)} for {len(new)} new (estimate; "
            f"prices as of {prices.as_of}).")
    log.info("Likeness: %s", said)
    if hasattr(progress, "text"):                     # the node's text, as the sampler's own run says its estimate
        progress.text(said)
    results = []
    for n, each in enumerate(runs):
        if progress.interrupted():
            raise Interrupted(f"Stopped after {n} of {len(runs)} predictions of candidates; they are kept (queuing "
                              "again pays only for the rest).")
        results.append(generate(each, api=api, **run))
    return Candidates(results, estimate, len(runs), len(runs) - len(new))


@dataclass
class ScoredCandidates:
    images: list[np.ndarray]             # every image of every prediction, in seed order
    entries: list[JournalEntry | None]   # each image's journal entry, with its score (None: an older stored result)
    reused: list[bool]                   # the image came from the result cache (nothing paid now)
    scores: list[ImageScore | None]      # None: not scored (no reference)
    scored_now: int                      # images scored by this run (the others were scored before)

    def order(self, keep: int = 0) -> list[int]:
        """Most alike first (seed order when not scored); the first `keep` (0: all)."""
        return ranked(self.scores, keep)

    def report(self, made: Candidates, about: str, keep: int) -> str:
        lines = [r.summary() for r in made.results] + ([made.summary()] if len(made.results) > 1 else [])
        if any(s is not None for s in self.scores):
            about += f" Scored {self.scored_now} image(s) now, {len(self.images) - self.scored_now} scored before."
        lines.append(about)
        if len(self.images) > 1:
            lines.append(ranking_text([label(e) for e in self.entries], self.scores, self.order(keep)))
        return "\n".join(lines)


def score_candidates(made: Candidates, scorer: Scorer | None, journal: SeedJournal,
                     progress: Progress | None = None) -> ScoredCandidates:
    """Every image of `made` scored into its journal entry (see `sampler_scores.score_journaled`)."""
    images = [image for r in made.results for image in r.images]
    ids = [entry_id for r in made.results for entry_id in image_entries(r)]
    reused = [r.reused for r in made.results for _ in r.images]
    scores, now = score_journaled(images, ids, scorer, journal, progress) if scorer else ([None] * len(images), 0)
    known = {e.id: e for e in journal.entries()}
    return ScoredCandidates(images, [known.get(i) for i in ids], reused, scores, now)


def image_entries(result: GenerationResult) -> list[str]:
    """Each image's journal entry id (a result stored before each image had its own entry shares one)."""
    ids = result.journal_ids
    return list(ids) if len(ids) == len(result.images) else [result.journal_id] * len(result.images)


def label(entry: JournalEntry | None) -> str:
    """How the ranking names a candidate: "seed 1235 image 2" (the second image of the prediction with seed 1235)."""
    if entry is None:
        return "an image stored before"
    return f"seed {entry.seed}" + (f" image {entry.extra['output'] + 1}" if "output" in entry.extra else "")


def outputs_per_prediction(schema: dict) -> int:
    """How many images one prediction of this model may make (its schema's `num_outputs` maximum)."""
    spec = schema.get("properties", {}).get("num_outputs")
    if not spec:
        return 1
    return max(1, int(spec.get("maximum", spec.get("default", 1)) or 1))


def candidate_runs(settings: GenerationSettings, candidates: int, per_prediction: int) -> list[GenerationSettings]:
    """The predictions that make `candidates` images: seed, seed+1, …, each with up to `per_prediction` images."""
    runs, left = [], candidates
    while left > 0:
        count = min(left, per_prediction)
        runs.append(replace(settings, seed=nth_seed(settings.seed, len(runs)), num_outputs=count))
        left -= count
    return runs

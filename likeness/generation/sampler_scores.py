"""Every image a sampler makes, scored for likeness: whom against, each image's score for the seed journal, and
the best of N candidates first.

    scorer, about = find_scorer(photos=dataset, lora_files=[...], models_dir=..., cache_dir=...)
    scores = scorer.score(images)                     # identity.score_images, after the sampler's own generation
    entry.likeness = scorer.record(scores[0])         # JournalEntry.likeness (seed_journal.py)
    order = ranked(scores, keep)                      # best first; the first `keep` (0: all)

Whom: the photos connected to the sampler (the prepared dataset: embedded once, cached by the photos' sha256, so
a re-run embeds nothing), else the reference the stack's personal LoRA carries in its metadata
(loras/lora_identity.py; the trainer stores it at install): the first LoRA of the stack, in order, whose file
has one. A stored reference is compared with the backend that made it (dlib on every machine; ArcFace where its
models are). No reference: the images are not scored, and the sampler says how to give one.

The Replicate sampler's images are journaled by its run before they are scored: `score_journaled` gives each
entry its score afterwards (an image stored and scored before is not scored again).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError, LikenessError
from ..identity import Backend, ImageScore, ReferenceIdentity, best_first, load_backend, reference_from_photos, \
    score_images
from ..loras.lora_formats import read_header
from ..loras.lora_identity import stored_reference
from ..progress import Progress
from .seed_journal import SeedJournal

NO_REFERENCE = ("Not scored for likeness: no reference person is known. Connect your photos (the prepared "
                "dataset) to the sampler's dataset input, or use a personal LoRA that carries its reference (the "
                "trainer stores it; Likeness Store Reference in LoRA adds it to an older one).")


@dataclass(frozen=True)
class Scorer:
    reference: ReferenceIdentity
    backend: Backend
    against: str                         # where the reference came from, in words

    @property
    def key(self) -> str:
        """Which reference photos, as the journal records it."""
        return self.reference.content_hash[:16]

    def score(self, images: Sequence[Image.Image | Any], progress: Progress | None = None) -> list[ImageScore]:
        return score_images(images, self.reference, self.backend, progress)

    def record(self, score: ImageScore) -> dict[str, Any]:
        """The image's `JournalEntry.likeness`."""
        return {"score": score.likeness, "backend": score.backend, "reason": score.reason,
                "distance": score.distance, "same_person": score.same_person, "reference": self.key,
                "against": self.against}

    def scored_before(self, likeness: dict[str, Any] | None) -> ImageScore | None:
        """The score a journal entry already has against this very reference (nothing to compute again)."""
        if not likeness or likeness.get("reference") != self.key or likeness.get("backend") != self.backend.name:
            return None
        return ImageScore(likeness.get("score"), likeness.get("reason", ""), likeness.get("distance"),
                          self.backend.name, likeness.get("same_person"))

    def describe(self) -> str:
        text = f"Likeness against {self.against} ({self.backend.name}; 50 = the same-person line)"
        if self.reference.embedded or self.reference.reused:
            text += (f"; reference photos: {self.reference.embedded} embedded now, {self.reference.reused} from "
                     "the cache")
        return text + "."


def find_scorer(*, photos: object = None, lora_files: Iterable[str | os.PathLike] = (),
                models_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                progress: Progress | None = None) -> tuple[Scorer | None, str]:
    """Whom the sampler's images are scored against (None when no reference is known) and the line it shows."""
    if photos is not None:
        backend = load_backend("auto", models_dir)
        reference = reference_from_photos(photos, backend, cache_dir, progress)
        scorer = Scorer(reference, backend, f"your {len(reference.names)} photo(s)")
        return scorer, scorer.describe()
    passed_over = []
    for path in lora_files:
        name = Path(path).name
        try:
            reference = stored_reference(path)
            if reference is None:
                continue
            scorer = Scorer(reference, backend_of(reference, models_dir),
                            f"the reference stored in {name} ({len(reference.names)} photos)")
        except InputError as exc:
            passed_over.append(str(exc))
            continue
        return scorer, scorer.describe()
    return None, " ".join([NO_REFERENCE, *passed_over])


def personal_lora_files(*, training: Any = None, stack_names: Iterable[str] = (), version: str = "",
                        locate: Callable[[str], str | None], all_loras: Callable[[], Iterable[str]]) -> list[str]:
    """The LoRA files that may carry the reference of a Replicate generation, personal first: the training's
    installed LoRA, the stack's rows that are files here; else the LoRA Likeness installed from `version` (its
    metadata names it; found by reading the loras folder's headers)."""
    files = [str(getattr(training, "lora_path", "") or "")] if training is not None else []
    files += [path for name in stack_names if (path := locate(name))]
    files = [f for f in files if f and Path(f).is_file()]
    version = (version or str(getattr(training, "version", "") or "")).strip()
    if files or ":" not in version:
        return files
    for path in all_loras():
        try:
            if read_header(path)[1].get("likeness_destination_version") == version:
                return [path]
        except (OSError, ValueError, LikenessError):
            continue
    return []


def score_journaled(images: Sequence[Any], entry_ids: Sequence[str], scorer: Scorer, journal: SeedJournal,
                    progress: Progress | None = None) -> tuple[list[ImageScore], int]:
    """Each image's score, written to its journal entry (`entry_ids[i]`, "" for none); an entry scored against
    this reference before keeps its score and is not scored again. (The scores, how many were computed now.)"""
    known = {e.id: e for e in journal.entries()}
    scores: list[ImageScore | None] = [None] * len(images)
    todo = []
    for i, entry_id in enumerate(entry_ids):
        before = scorer.scored_before(known[entry_id].likeness) if entry_id in known else None
        if before is not None:
            scores[i] = before
        else:
            todo.append(i)
    for i, score in zip(todo, scorer.score([images[i] for i in todo], progress) if todo else []):
        scores[i] = score
        if entry_ids[i] in known and list(entry_ids).count(entry_ids[i]) == 1:
            journal.set_likeness(entry_ids[i], scorer.record(score))
    return scores, len(todo)


def backend_of(reference: ReferenceIdentity, models_dir: str | os.PathLike | None = None) -> Backend:
    """The backend that made `reference`, on this machine."""
    if reference.backend == "dlib":
        return load_backend("dlib")
    try:
        backend = load_backend("arcface", models_dir)
    except InputError:
        backend = None
    if backend is None or backend.name != reference.backend:
        raise InputError(f"The stored reference was made with {reference.backend}, which this machine does not "
                         f"have ({'it has ' + backend.name if backend else 'no ArcFace model in models/insightface'})"
                         ": connect your photos' dataset to score against them instead.")
    return backend


def check_keep(images: int, keep: int, scorer: Scorer | None) -> None:
    """Picking the best `keep` of several images needs a reference: refused before anything is generated."""
    if scorer is None and 0 < keep < images:
        raise InputError(f"keep is {keep} of {images} candidates, but without a reference person the best ones "
                         "cannot be told apart. " + NO_REFERENCE.removeprefix("Not scored for likeness: no reference "
                                                                             "person is known. ")
                         + " Or set keep to 0 to get all of them. Nothing was generated.")


def ranked(scores: Sequence[ImageScore | None], keep: int = 0) -> list[int]:
    """Indices best first (images without a number last, in their order; all in order when none was scored),
    the first `keep` of them (0: all)."""
    order = best_first(scores) if scores and all(s is not None for s in scores) else list(range(len(scores)))
    return order[:keep] if keep > 0 else order


def ranking_text(labels: Sequence[str], scores: Sequence[ImageScore | None], order: Sequence[int]) -> str:
    """The candidates, best first, and which were kept: "1. seed 1235 · likeness 71 · entry 3f2a…"."""
    everything = ranked(scores)
    kept = set(order)
    lines = [f"Best of {len(labels)}, most alike first"
             + (f" (kept the best {len(order)}; all of them are in the seed journal):" if len(order) < len(labels)
                else ":")]
    for rank, i in enumerate(everything, 1):
        score = scores[i]
        mark = "" if i in kept else "  (not kept)"
        lines.append(f"{rank:>3}. {labels[i]} · {score.label() if score is not None else 'not scored'}{mark}")
    return "\n".join(lines)

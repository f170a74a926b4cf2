"""The strength sweep: personal × style LoRA strengths on a grid, every cell scored for likeness, and the
strongest style that keeps the face.

The seed's rule — personal 0.9, a Civitai LoRA at 0.15–0.25, "adjusting based on how I want to balance
concepts" — is tuned by generating, looking and generating again. The sweep makes that one job: this module
holds the grid, the recommendation and what the sweep found (`SweepResult`); `sweep_runs` generates and scores
the cells, `sweep_pictures` draws the contact sheet and the plot.

The grid: `personal_steps` values from `personal_min` to `personal_max` (rows) × `style_steps` values from
`style_min` to `style_max` (columns); an axis with one step (or min = max) is fixed. When the recommendation is
measured against the personal LoRA alone (the default) and the style axis has no 0, a style-0 column is added:
the personal-only images, one per personal strength.

The recommendation (`recommend`), with L(p, s) the mean likeness of cell (p, s):
- the reference R is the likeness with the personal LoRA alone, max over p of L(p, 0) (`tolerance_of`
  "personal only"), or the best cell of the grid ("best cell");
- a cell keeps likeness when L(p, s) ≥ R − tolerance (default 5 points of the 0–100 likeness); a cell without a
  number (no face, failed) keeps nothing;
- a row keeps likeness up to style s when every styled cell of that row up to s keeps it: a noisy cell that
  passes beyond one that fails is not trusted;
- the pick is the largest such s over the rows (the strongest style); ties go to the higher likeness, then to
  the personal strength nearest the seed's 0.9;
- when no styled cell keeps likeness there is no pick, and the text says so plainly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from ..identity import ImageScore
from ..money.prices import format_usd
from ..storage import json_digest

SEED_PERSONAL = 0.9                  # the seed's personal strength: the tie-break
TOLERANCE_OF = ("personal only", "best cell")
DECIMALS = 3


def strength(value: float) -> str:
    """A strength as people write it: 0.9, 1.0, 0.183."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


# --- the grid ---------------------------------------------------------------------------------------
def axis(lo: float, hi: float, steps: int, name: str) -> tuple[float, ...]:
    """`steps` strengths evenly from `lo` to `hi`; one value when steps is 1 or lo equals hi (a fixed axis)."""
    if steps < 1:
        raise InputError(f"{name}_steps must be at least 1 (1 keeps the {name} strength fixed at {name}_min)")
    if steps == 1 or abs(hi - lo) < 10 ** -DECIMALS:
        return (round(float(lo), DECIMALS),)
    values = np.linspace(float(lo), float(hi), int(steps))
    rounded = tuple(dict.fromkeys(round(float(v), DECIMALS) for v in values))
    if len(rounded) < steps:
        raise InputError(f"{name}: {steps} steps from {lo:g} to {hi:g} are closer than 0.001 apart; "
                         "use fewer steps or a wider range")
    return rounded


@dataclass(frozen=True)
class SweepGrid:
    personal: tuple[float, ...]         # rows
    style: tuple[float, ...]            # columns, ascending
    baseline_added: bool = False        # the style-0 column was added for the personal-only reference

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.personal), len(self.style)

    def cells(self) -> list[tuple[int, int, float, float]]:
        """(row, column, personal, style) in reading order."""
        return [(r, c, p, s) for r, p in enumerate(self.personal) for c, s in enumerate(self.style)]


def sweep_grid(personal: tuple[float, float, int], style: tuple[float, float, int],
               tolerance_of: str = "personal only") -> SweepGrid:
    """The grid for (min, max, steps) of each axis; see the module docstring."""
    if tolerance_of not in TOLERANCE_OF:
        raise InputError(f"tolerance_of must be one of {', '.join(TOLERANCE_OF)}; got {tolerance_of!r}")
    rows = axis(*personal, "personal")
    columns = tuple(sorted(axis(*style, "style")))
    if any(p <= 0 for p in rows):
        raise InputError("The personal strengths must be above 0: a sweep measures how your LoRA and a style "
                         "LoRA share the image")
    added = tolerance_of == "personal only" and 0.0 not in columns
    return SweepGrid(rows, ((0.0,) if added else ()) + columns, added)


# --- the recommendation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recommendation:
    personal: float | None              # None: no cell keeps likeness (or nothing could be measured)
    style: float | None
    likeness: float | None              # the picked cell's likeness
    reference: float | None             # R
    tolerance: float
    tolerance_of: str
    text: str

    @property
    def found(self) -> bool:
        return self.personal is not None


def recommend(grid: SweepGrid, likeness: Sequence[Sequence[float | None]], tolerance: float = 5.0,
              tolerance_of: str = "personal only") -> Recommendation:
    """The strongest style that keeps likeness within `tolerance` of the reference (module docstring)."""
    values = [[None if v is None else float(v) for v in row] for row in likeness]
    if [len(row) for row in values] != [len(grid.style)] * len(grid.personal):
        raise ValueError(f"likeness grid {[len(r) for r in values]} does not match the sweep {grid.shape}")
    zero = grid.style.index(0.0) if 0.0 in grid.style else None
    if tolerance_of == "personal only":
        pool = [row[zero] for row in values] if zero is not None else []
        what = "your LoRA alone"
    else:
        pool = [v for row in values for v in row]
        what = "the best cell"
    known = [v for v in pool if v is not None]
    if not known:
        why = ("none of the personal-only images shows a face that could be scored" if what == "your LoRA alone"
               else "no image of the sweep shows a face that could be scored")
        return Recommendation(None, None, None, None, tolerance, tolerance_of,
                              f"Nothing to recommend: {why}. Check the prompt asks for a person's face (a portrait "
                              "or a half-body shot), and that the reference photos are of the same person.")
    reference = max(known)
    floor = reference - tolerance
    best: tuple | None = None
    for r, p in enumerate(grid.personal):
        kept = None
        for c, s in enumerate(grid.style):
            if s == 0.0:
                continue
            v = values[r][c]
            if v is None or v < floor:
                break
            kept = (s, v, -abs(p - SEED_PERSONAL), p)
        if kept is not None and (best is None or kept[:3] > best[:3]):
            best = kept
    styled = [s for s in grid.style if s != 0.0]
    if best is None:
        return Recommendation(None, None, None, reference, tolerance, tolerance_of, _none_kept(
            styled, reference, tolerance, what))
    style, value, _, personal = best
    text = (f"Recommended: personal {strength(personal)} + style {strength(style)} — likeness {value:.0f}, "
            f"within {tolerance:g} of {reference:.0f} ({what}). The strongest style tried that keeps your likeness")
    text += "." if style == max(styled) else f"; {strength(_next_up(grid, style))} and above lose it."
    return Recommendation(personal, style, round(value, 1), round(reference, 1), tolerance, tolerance_of, text)


def _none_kept(styled: list[float], reference: float, tolerance: float, what: str) -> str:
    tried = (f"{strength(min(styled))}–{strength(max(styled))}" if len(styled) > 1
             else strength(styled[0]) if styled else "none")
    return (f"No cell keeps likeness: every style strength tried ({tried}) lowers your likeness by more than "
            f"{tolerance:g} points from {reference:.0f} ({what}), so nothing is recommended. Try a lower style "
            "range, a higher personal strength, or a larger tolerance.")


def _next_up(grid: SweepGrid, style: float) -> float:
    return min(s for s in grid.style if s > style)


# --- what a sweep found ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraRef:
    """A LoRA of the sweep: the name the user gave and, for a local file, its sha256 (what `measured` matches)."""
    name: str
    sha256: str = ""

    @property
    def key(self) -> str:
        return self.sha256 or f"name:{self.name}"


@dataclass
class CellImage:
    """One image of a cell: for one prompt and one seed."""
    prompt: int                          # index into the sweep's prompts
    seed: int
    image: np.ndarray | None             # H×W×3 float32 0..1; None when generating failed
    score: ImageScore | None = None
    journal_id: str = ""
    reused: bool = False                 # from the journal / the result cache: nothing generated or paid
    cost_usd: float = 0.0
    error: str = ""


@dataclass
class Cell:
    row: int
    column: int
    personal: float
    style: float
    images: list[CellImage] = field(default_factory=list)

    @property
    def likeness(self) -> float | None:
        """Mean likeness of the cell's scored images; None when none of them has a number."""
        numbers = [i.score.likeness for i in self.images if i.score is not None and i.score.likeness is not None]
        return round(float(np.mean(numbers)), 1) if numbers else None

    @property
    def label(self) -> str:
        if self.likeness is not None:
            return f"{self.likeness:.0f}"
        reasons = {_reason(i) for i in self.images}
        return reasons.pop() if len(reasons) == 1 else "no number"


def _reason(image: CellImage) -> str:
    if image.error:
        return "failed"
    return image.score.reason if image.score is not None else "not scored"


@dataclass
class SweepResult:
    id: str
    personal: LoraRef
    style: LoraRef
    grid: SweepGrid
    cells: list[Cell]                    # reading order (grid.cells())
    recommendation: Recommendation
    where: str                           # "local" or "replicate"
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    backend: str
    estimate_usd: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def generated(self) -> int:
        return sum(1 for c in self.cells for i in c.images if not i.reused and i.image is not None)

    @property
    def reused(self) -> int:
        return sum(1 for c in self.cells for i in c.images if i.reused)

    @property
    def cost_usd(self) -> float:
        return sum(i.cost_usd for c in self.cells for i in c.images)

    def likeness_grid(self) -> list[list[float | None]]:
        return likeness_grid(self.grid, self.cells)

    def lora_stack(self) -> list[tuple[str, float, float]]:
        """The recommended LORA_STACK (personal first); empty when nothing is recommended."""
        rec = self.recommendation
        if not rec.found:
            return []
        return [(self.personal.name, rec.personal, rec.personal), (self.style.name, rec.style, rec.style)]

    def data(self) -> dict:
        """The scores as data (the node's `scores` output and the stored sweep)."""
        return {"sweep": self.id, "personal_lora": self.personal.name, "style_lora": self.style.name,
                "personal": list(self.grid.personal), "style": list(self.grid.style),
                "likeness": self.likeness_grid(), "backend": self.backend, "where": self.where,
                "cells": [{"personal": c.personal, "style": c.style, "likeness": c.likeness, "label": c.label,
                           "images": [{"prompt": i.prompt, "seed": i.seed, "journal": i.journal_id,
                                       "likeness": i.score.likeness if i.score else None,
                                       "reason": i.error or (i.score.reason if i.score else ""), "reused": i.reused}
                                      for i in c.images]} for c in self.cells],
                "recommendation": {k: v for k, v in asdict(self.recommendation).items()},
                "cost_usd": round(self.cost_usd, 6)}

    def text(self) -> str:
        images = sum(len(c.images) for c in self.cells)
        where = "on Replicate" if self.where == "replicate" else "on this machine"
        money = (f"; cost {format_usd(self.cost_usd)} (estimate {format_usd(self.estimate_usd)})"
                 if self.where == "replicate" else "")
        lines = [self.recommendation.text,
                 f"Sweep {self.id}: {self.personal.name} × {self.style.name}, {images} images {where} "
                 f"({self.generated} generated, {self.reused} reused){money}. Likeness by {self.backend}; "
                 "50 = the same-person line.",
                 likeness_table(self)]
        return "\n".join([*lines, *self.notes])


def likeness_grid(grid: SweepGrid, cells: Sequence[Cell]) -> list[list[float | None]]:
    """[row][column] mean likeness of `cells` (in reading order)."""
    rows, columns = grid.shape
    return [[cells[r * columns + c].likeness for c in range(columns)] for r in range(rows)]


def likeness_table(result: SweepResult) -> str:
    """Rows: personal strengths; columns: style strengths; each cell's likeness or why it has none."""
    head = "personal \\ style " + " ".join(f"{strength(s):>8}" for s in result.grid.style)
    rows = [head]
    columns = result.grid.shape[1]
    for r, p in enumerate(result.grid.personal):
        labels = [result.cells[r * columns + c].label for c in range(columns)]
        rows.append(f"{strength(p):>16} " + " ".join(f"{label[:8]:>8}" for label in labels))
    return "\n".join(rows)


def sweep_id(what: dict) -> str:
    """A short id from everything that makes the sweep: the same sweep queued again keeps its id."""
    return json_digest(what, 10)

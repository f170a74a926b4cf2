"""The `measured` balance mode: strengths from the newest strength sweep of the same LoRA files.

A strength sweep (LikenessStrengthSweep) measures, for the personal LoRA and one style LoRA, the likeness of
each personal × style cell and recommends the strongest style that keeps it. `measured` uses that:

- for each style row, the newest sweep of (personal file, that row's file), matched by the files' sha256 —
  never by name (`sweep_results`);
- a row with a sweep that found a strength gets the sweep's style strength, and the personal row gets the
  sweep's personal strength (from the newest such sweep, when several rows have one);
- the other rows — no sweep for them, or a sweep that found no strength keeping likeness — get the anchor rule
  (strength_balance.py), computed around that personal strength; each such fall-back is said in a note.

With no sweep at all the whole stack is balanced by the anchor rule, with a note. `row_decisions` says, for
every mode, which rule decided each row's strength: what the canvas widget shows next to it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .strength_balance import Balanced, StackRow, balance_strengths
from .sweep_results import SweepRecord, SweepResults


def balance_measured(rows: Sequence[StackRow], results: SweepResults, keys: Sequence[str | None], *,
                     target_total: float = 1.2, clamp: tuple[float, float] = (0.15, 0.25),
                     anchor: int | None = 0) -> tuple[Balanced, list[dict]]:
    """Strengths for `rows` from their sweeps (`keys[i]`: row i's file key, see `sweep_results.lora_key`),
    and each row's decision for the widget."""
    base = balance_strengths(rows, "measured", target_total=target_total, clamp=clamp, anchor=anchor)
    anchor = base.anchor
    if anchor is None or keys[anchor] is None:
        base.notes.append("measured: no personal row to match a sweep against; "
                          + ("strengths scaled proportionally" if anchor is None else "the anchor rule was used"))
        return base, row_decisions(base, rows)
    others = [j for j, row in enumerate(rows) if j != anchor and row.on and row.strength != 0]
    sweeps = {j: results.newest(keys[anchor], keys[j]) for j in others if keys[j] is not None}
    usable = {j: s for j, s in sweeps.items() if s is not None and s.found}
    for j in others:
        sweep = sweeps.get(j)
        if sweep is None:
            base.notes.append(f"measured: no sweep of {rows[anchor].lora} with {rows[j].lora} yet (matched by file "
                              f"content): row {j + 1} uses the anchor rule; run Likeness Strength Sweep to measure it")
        elif not sweep.found:
            base.notes.append(f"measured: sweep {sweep.id} found no strength of {rows[j].lora} that keeps your "
                              f"likeness: row {j + 1} uses the anchor rule")
    if not usable:
        return base, row_decisions(base, rows)

    newest = max(usable.values(), key=lambda s: s.time)
    personal = float(newest.recommended_personal)
    if len({s.recommended_personal for s in usable.values()}) > 1:
        base.notes.append(f"measured: the sweeps recommend different personal strengths; the newest "
                          f"({newest.id}) decides: {personal:g}")
    moved = [replace(row, strength=math.copysign(personal, row.strength)) if i == anchor else row
             for i, row in enumerate(rows)]
    balanced = balance_strengths(moved, "measured", target_total=target_total, clamp=clamp, anchor=anchor)
    balanced.notes = [n for n in base.notes if n.startswith("measured:")] + balanced.notes
    decisions = row_decisions(balanced, rows)
    decisions[anchor] = _measured(newest, newest.recommended_likeness)
    for j, sweep in usable.items():
        balanced.strengths[j] = float(sweep.recommended_style)
        decisions[j] = _measured(sweep, sweep.recommended_likeness)
        balanced.notes.append(f"measured: row {j + 1} from sweep {sweep.id} ({sweep.time[:16]}): personal "
                              f"{sweep.recommended_personal:g} + {rows[j].lora} {sweep.recommended_style:g} → "
                              f"likeness {_number(sweep.recommended_likeness)} (reference "
                              f"{_number(sweep.reference_likeness)}, tolerance {sweep.tolerance:g})")
    balanced.total = sum(abs(balanced.strengths[i]) for i, row in enumerate(rows) if row.on and row.strength != 0)
    return balanced, decisions


def row_decisions(balanced: Balanced, rows: Sequence[StackRow]) -> list[dict]:
    """Which rule decided each row's strength ("off", "typed", "anchor", "proportional" or "effect"), and the mode
    it was decided in (the widget trusts a decision only while its mode is still selected)."""
    decisions = []
    for i, row in enumerate(rows):
        if not row.on:
            rule = "off"
        elif balanced.mode == "off":
            rule = "typed"
        elif balanced.mode == "proportional" or balanced.anchor is None:
            rule = "proportional"
        elif i == balanced.anchor:
            rule = "typed"
        elif balanced.mode == "effect" and i in balanced.overlaps:
            rule = "effect"
        else:
            rule = "anchor"
        decisions.append({"decided_by": rule, "mode": balanced.mode})
    return decisions


def _measured(sweep: SweepRecord, likeness: float | None) -> dict:
    return {"decided_by": "measured", "mode": "measured", "sweep": sweep.id, "sweep_time": sweep.time,
            "sweep_likeness": likeness}


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"

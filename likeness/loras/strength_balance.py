r"""Balancing the strengths of stacked LoRAs: the seed's "about 1.2 in total" rule and sounder variants.

ComfyUI applies a stack as  W' = W + Σᵢ sᵢ·ΔWᵢ  with  ΔWᵢ = (αᵢ/rᵢ)·BᵢAᵢ  (αᵢ/rᵢ = 1 when the file has no
alpha), summed on every weight the LoRAs touch. The seed keeps the personal LoRA at 0.9 and a Civitai
LoRA at 0.15–0.25, "combined strength around 1.2". The modes:

``off``
    sᵢ' = sᵢ, as typed.

``anchor`` (the seed's rule)
    The anchor (personal) row a keeps its strength, and so does every other row typed inside the clamp range
    [lo, hi] (0.15–0.25 by default, on |s|, sign kept): the seed picks "0.15–0.25 … adjusting based on how I
    want to balance concepts", so a typed 0.2 is a choice, not a request to be moved. Only rows typed outside
    the range move: one typed below it is raised to lo; the rows A typed above it share what the others leave
    of the target T, in their typed ratio, clamped into the range:
        s_a' = s_a,   s_k' = s_k (lo ≤ |s_k| ≤ hi),   s_b' = lo (|s_b| < lo),
        s_j' = clamp( s_j · (T − |s_a| − Σ_{k∉A, k≠a} |s_k'|) / Σ_A |s| ,  lo, hi )   (j ∈ A)
    The clamp wins over the total, so the total can differ from T (a single 0.2 next to 0.9 gives 1.1; four
    rows at the 0.15 floor give 1.5): the node and the canvas show the total and its distance from T.

``proportional`` (L1, sum to target)
    sᵢ' = sᵢ · T / Σⱼ |sⱼ| — the ratios the user typed, with Σ|s'| = T.

``effect`` (by the size of each LoRA's actual weight change)
    A strength is not comparable across LoRAs: ‖ΔW‖ depends on rank, alpha, learning rate and steps, so a
    0.2 of one LoRA can outweigh 0.9 of another. `effect` reads the anchor rule in units of the anchor's
    own weight change. On the layers S_j that LoRA j shares with the anchor,
        m_a = ‖ΔW_a‖_F on S_j,   m_j = ‖ΔW_j‖_F on S_j,
    and the anchor-rule strength e_j (with its clamp) becomes
        s_j' = e_j · m_a / m_j,
    so that ‖s_j'·ΔW_j‖ = e_j·‖ΔW_a‖ there: "0.2 next to a personal 0.9" now means the Civitai LoRA moves
    the shared weights by 0.2 of what the personal LoRA would at strength 1 — whatever its rank or alpha.
    This is the L1 budget of the seed in effect units, exact when the deltas are aligned (the worst case).
    A LoRA that shares no layer with the anchor keeps e_j. The result is capped at |s| ≤ `effect_cap`.

    Norms and overlaps come from the low-rank factors, never the dense matrices (r×r Gram trick,
    O(r₁r₂(in+out)) instead of O(in·out·r)):
        ‖BA‖_F² = Σ (BᵀB) ⊙ (AAᵀ),      ⟨B₁A₁, B₂A₂⟩_F = Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ).
    A delta on a slice of a fused weight (FLUX's to_q/to_k/to_v/proj_mlp inside qkv or linear1) covers
    rows [start, start+length); two deltas interact only on the rows both cover (B restricted to them),
    and slices of one LoRA on one weight are disjoint, so their squared norms add. The overlap of the
    anchor with row j is also reported as cos θ = ⟨ΔW_a, ΔW_j⟩ / (‖ΔW_a‖‖ΔW_j‖) on S_j: near 0 the two
    changes add in quadrature; near 1 they add linearly and overshoot; below 0 they cancel.

``measured``
    The strengths a strength sweep measured for these LoRA files (measured_balance.py); here, where nothing
    is measured, it is the anchor rule.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import InputError

MODES = ("off", "anchor", "proportional", "effect", "measured")   # measured: measured_balance.py


@dataclass(frozen=True)
class StackRow:
    """One row of a LoRA stack as the user typed it."""

    lora: str
    strength: float
    on: bool = True
    clip_strength: float | None = None   # None: the same as `strength`
    source: str = "row"                  # "row" (this node) or "stack" (a LORA_STACK input)


@dataclass(frozen=True)
class LowRankDelta:
    """ΔW = scale · up @ down on rows [row_start, row_start + up.shape[0]) of weight `weight`."""

    weight: str
    up: torch.Tensor          # B: out × r
    down: torch.Tensor        # A: r × in
    scale: float = 1.0        # α / r, or 1 without alpha
    row_start: int = 0


@dataclass
class Balanced:
    strengths: list[float]                       # effective model strength per row (0 for rows that are off)
    mode: str
    anchor: int | None
    total: float                                 # Σ|s'| over the rows that are on
    notes: list[str] = field(default_factory=list)
    overlaps: dict[int, float] = field(default_factory=dict)   # row -> cos θ with the anchor (effect mode)


def balance_strengths(rows: Sequence[StackRow], mode: str = "anchor", *, target_total: float = 1.2,
                      clamp: tuple[float, float] = (0.15, 0.25), anchor: int | None = 0,
                      deltas: Sequence[Sequence[LowRankDelta]] | None = None,
                      effect_cap: float = 2.0) -> Balanced:
    """Effective strengths for `rows` (see the module docstring for the maths of each mode).

    `anchor` is the index of the personal row (None: no anchor; anchor/effect then act as proportional);
    `deltas[i]` are row i's low-rank weight changes, needed only by the effect mode.
    """
    if mode not in MODES:
        raise InputError(f"Unknown balance mode {mode!r}; choose one of {', '.join(MODES)}")
    lo, hi = sorted((abs(clamp[0]), abs(clamp[1])))
    typed = [r.strength if r.on else 0.0 for r in rows]
    active = [i for i, r in enumerate(rows) if r.on and r.strength != 0]
    if anchor is not None and anchor not in active:
        anchor = None
    notes: list[str] = []
    if mode == "off" or not active:
        out = typed
    elif mode == "proportional" or anchor is None:
        if mode != "proportional":
            notes.append("no personal (anchor) row is on: strengths scaled proportionally to the target")
        out = _proportional(typed, active, target_total)
    else:
        out = _anchor(typed, active, anchor, target_total, lo, hi, notes)
    result = Balanced([float(s) for s in out], mode, anchor, 0.0, notes)
    if mode == "effect" and anchor is not None:
        _effect(result, active, anchor, deltas, effect_cap, rows)
    result.total = sum(abs(result.strengths[i]) for i in active)
    return result


def _proportional(typed: list[float], active: list[int], target: float) -> list[float]:
    total = sum(abs(typed[i]) for i in active)
    return [s * target / total if total else s for s in typed]


def _anchor(typed, active, anchor, target, lo, hi, notes) -> list[float]:
    others = [i for i in active if i != anchor]
    below = [i for i in others if abs(typed[i]) < lo - 1e-9]
    above = [i for i in others if abs(typed[i]) > hi + 1e-9]
    out = list(typed)
    for i in below:                              # asked for less than the range: its floor, no more
        notes.append(f"row {i + 1}: {abs(typed[i]):.3f} raised to the clamp floor {lo:g}")
        out[i] = math.copysign(lo, typed[i])
    budget = target - abs(typed[anchor]) - sum(abs(out[i]) for i in others if i not in above)
    total = sum(abs(typed[i]) for i in above)
    if above and budget <= 0:
        notes.append(f"the personal strength {typed[anchor]:g} and the other rows already reach the target "
                     f"{target:g}: the rows typed above {hi:g} sit at the clamp floor {lo:g}")
    for i in above:                              # asked for more: its share of what is left, within the range
        scaled = abs(typed[i]) * max(budget, 0.0) / total
        clamped = min(max(scaled, lo), hi)
        if not math.isclose(clamped, scaled, abs_tol=1e-9):
            notes.append(f"row {i + 1}: {scaled:.3f} clamped to {clamped:g}")
        out[i] = math.copysign(clamped, typed[i])
    return out


def describe_total(total: float, target: float) -> str:
    """How far the total is from the target, in words ("on the target", "0.10 below the target 1.2")."""
    gap = total - target
    if abs(gap) < 0.005:
        return f"on the target {target:g}"
    return f"{abs(gap):.2f} {'below' if gap < 0 else 'above'} the target {target:g}"


def _effect(result: Balanced, active, anchor, deltas, cap, rows) -> None:
    if deltas is None or len(deltas) != len(result.strengths):
        result.notes.append("effect mode needs each LoRA's factors; fell back to the anchor rule")
        return
    for j in active:
        if j == anchor:
            continue
        shared = {d.weight for d in deltas[anchor]} & {d.weight for d in deltas[j]}
        if not shared:
            result.notes.append(f"row {j + 1} ({rows[j].lora}) shares no layer with the personal LoRA: "
                                f"anchor-rule strength kept")
            continue
        a = [d for d in deltas[anchor] if d.weight in shared]
        b = [d for d in deltas[j] if d.weight in shared]
        m_a, m_j = math.sqrt(stack_inner(a, a)), math.sqrt(stack_inner(b, b))
        if m_j == 0 or m_a == 0:
            result.notes.append(f"row {j + 1}: zero weight change on the shared layers; strength kept")
            continue
        result.overlaps[j] = stack_inner(a, b) / (m_a * m_j)
        scaled = result.strengths[j] * m_a / m_j
        if abs(scaled) > cap:
            result.notes.append(f"row {j + 1}: {scaled:.3f} capped at {cap:g}")
            scaled = math.copysign(cap, scaled)
        result.strengths[j] = scaled


# --- Frobenius norms and inner products from low-rank factors --------------------------------------
def frobenius_norm(delta: LowRankDelta) -> float:
    """‖scale·BA‖_F via the r×r Gram matrices: ‖BA‖² = Σ (BᵀB) ⊙ (AAᵀ)."""
    return math.sqrt(max(delta_inner(delta, delta), 0.0))


def delta_inner(d1: LowRankDelta, d2: LowRankDelta) -> float:
    """⟨ΔW₁, ΔW₂⟩_F = s₁s₂ Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ), on the rows both deltas cover (0 for different weights)."""
    if d1.weight != d2.weight:
        return 0.0
    start = max(d1.row_start, d2.row_start)
    stop = min(d1.row_start + d1.up.shape[0], d2.row_start + d2.up.shape[0])
    if stop <= start:
        return 0.0
    b1 = _f64(d1.up)[start - d1.row_start: stop - d1.row_start]
    b2 = _f64(d2.up)[start - d2.row_start: stop - d2.row_start]
    a1, a2 = _f64(d1.down), _f64(d2.down)
    if a1.shape[1] != a2.shape[1]:
        return 0.0
    return float(d1.scale * d2.scale * ((b1.T @ b2) * (a1 @ a2.T)).sum())


def stack_inner(first: Iterable[LowRankDelta], second: Iterable[LowRankDelta]) -> float:
    """⟨Σ ΔW, Σ ΔW'⟩ over all pairs (a LoRA's slices of one weight are disjoint, so they add)."""
    second = list(second)
    return sum(delta_inner(d1, d2) for d1 in first for d2 in second)


def _f64(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t.reshape(t.shape[0], -1).to(torch.float64)


# --- rows as a widget sends them --------------------------------------------------------------------
def parse_rows(text: str) -> list[StackRow]:
    """Rows from the `rows` widget: JSON `[{"lora", "strength", "on"}]` (what the canvas widget writes),
    or one row per line, `name.safetensors, 0.9[, off]` (what a person types)."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"The rows are not valid JSON ({exc}); expected "
                             f'[{{"lora": "name.safetensors", "strength": 0.9, "on": true}}]') from exc
        return [_row_from_dict(item, n) for n, item in enumerate(items, 1)]
    return [_row_from_line(line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()
            and not line.lstrip().startswith("#")]


def _row_from_dict(item, n: int) -> StackRow:
    if not isinstance(item, dict) or not str(item.get("lora") or item.get("name") or "").strip():
        raise InputError(f"Row {n} needs a LoRA file name: {item!r}")
    try:
        strength = float(item.get("strength", 1.0))
        clip = item.get("clip_strength")
        return StackRow(str(item.get("lora") or item.get("name")).strip(), strength,
                        bool(item.get("on", True)), None if clip is None else float(clip))
    except (TypeError, ValueError) as exc:
        raise InputError(f"Row {n}: the strength must be a number ({exc})") from exc


def _row_from_line(line: str, n: int) -> StackRow:
    parts = [p.strip() for p in line.split(",")]
    strength, on = 1.0, True
    if len(parts) > 1 and parts[1]:
        try:
            strength = float(parts[1])
        except ValueError as exc:
            raise InputError(f"Row {n} ({line.strip()!r}): write 'name.safetensors, 0.9[, off]'") from exc
    if len(parts) > 2 and parts[2].lower() in ("off", "false", "0", "no"):
        on = False
    return StackRow(parts[0], strength, on)

"""A LoRA stack with no model to patch: the balanced strengths, the LORA_STACK and the trigger words only.

For a sampler that applies the LoRAs itself (Replicate): LikenessLoraStack runs this when its model input is
empty, and the playground's cost estimate runs it to know the exact strengths the sampler will be given. The
balancing is `balance_strengths` (or `balance_measured` for `measured`, given the sweeps and each row's file
key), the same as with a model; `effect` needs each LoRA's weights against a model, so without one it is read
as `anchor`, with a note. An SD 1.5 / SDXL LoRA is left out before balancing, as the stack with a model leaves
it out: both give the sampler the same strengths.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from .lora_formats import LoraInfo
from .measured_balance import balance_measured
from .strength_balance import StackRow, balance_strengths, describe_total
from .sweep_results import SweepResults

NEEDS_A_MODEL = ("effect",)
SD_LEFT_OUT = "an SD 1.5 / SDXL LoRA, not for FLUX: its U-Net keys name no FLUX weight"


@dataclass
class PlannedStack:
    lora_stack: list[tuple[str, float, float]]        # [(lora_name, model_strength, clip_strength)], rows on
    trigger_words: str                                # personal first, comma separated
    strengths: list[float]                            # effective strength per row (0 when off)
    anchor: int | None
    total: float
    lines: list[str] = field(default_factory=list)    # one per row, then the total and the notes

    @property
    def report(self) -> str:
        return "\n".join(self.lines)


def plan_stack(rows: Sequence[StackRow], mode: str, *, target_total: float, clamp: tuple[float, float],
               anchor: int | None, describe: Callable[[str], LoraInfo], sweeps: SweepResults | None = None,
               keys: Sequence[str | None] = ()) -> PlannedStack:
    """Balances `rows` without a model; `describe(name)` reads a row's LoRA header (format, trigger words);
    `measured` reads `sweeps` with each row's file key (`keys`, see `sweep_results.lora_key`)."""
    rows = list(rows)
    notes = []
    used_mode = mode
    if mode in NEEDS_A_MODEL:
        used_mode = "anchor"
        notes.append(f"{mode} balancing measures each LoRA against the model; with no model connected the "
                     "anchor rule was used")
    infos = [describe(row.lora) if row.on else None for row in rows]
    left_out = [info is not None and info.architecture == "sd" for info in infos]
    rows = [replace(row, on=False) if out else row for row, out in zip(rows, left_out)]
    if mode == "measured" and sweeps is not None:
        balanced, _ = balance_measured(rows, sweeps, keys, target_total=target_total, clamp=clamp, anchor=anchor)
    else:
        balanced = balance_strengths(rows, used_mode, target_total=target_total, clamp=clamp, anchor=anchor)
    stack, lines = [], []
    for i, (row, info) in enumerate(zip(rows, infos)):
        strength = balanced.strengths[i]
        personal = " (personal)" if i == balanced.anchor else ""
        if left_out[i]:
            lines.append(f"{i + 1}. {row.lora}: left out — {SD_LEFT_OUT}")
            continue
        if info is None or strength == 0:
            lines.append(f"{i + 1}. {row.lora}{personal}: off")
            continue
        clip = row.clip_strength * strength / row.strength if row.clip_strength is not None and row.strength \
            else strength
        stack.append((row.lora, strength, clip))
        lines.append(f"{i + 1}. {row.lora}{personal}: {row.strength:g} → {strength:.3f}; {info.format_label}; "
                     "applied by the sampler (no model here)")
    lines.append(f"total {balanced.total:.2f}, {describe_total(balanced.total, target_total)} (mode {mode})")
    used = [None if out else info for info, out in zip(infos, left_out)]
    return PlannedStack(stack, ", ".join(_trigger_words(used, balanced.anchor)), list(balanced.strengths),
                        balanced.anchor, balanced.total, lines + notes + balanced.notes)


def _trigger_words(infos: list[LoraInfo | None], anchor: int | None) -> list[str]:
    order = ([anchor] if anchor is not None else []) + [i for i in range(len(infos)) if i != anchor]
    words: list[str] = []
    for i in order:
        for word in (infos[i].trigger_words if infos[i] else ()):
            if word.lower() not in {w.lower() for w in words}:
                words.append(word)
    return words


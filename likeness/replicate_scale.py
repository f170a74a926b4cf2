"""ComfyUI LoRA strength ↔ Replicate `lora_scale`: the same number does not mean the same thing.

ComfyUI adds `strength · ΔW` to each weight (ΔW = up·down·alpha/rank). Replicate's FLUX models do the same
merge, but with their own factor in front (reference `lora-and-performance.md` §3.5, from cog-flux @51e81e0):

- `black-forest-labs/flux-dev-lora` (official). With `go_fast` (its default) it runs the fp8 model and
  multiplies every LoRA scale by 1.5 — the model's own schema says so in `lora_scale`'s description: "For
  go_fast we apply a 1.5x multiplier to this value". Without go_fast (bf16) the factor is 1.
  So effective = lora_scale × 1.5 → send `lora_scale = strength / 1.5` (ComfyUI 0.9 → 0.6).
- A version trained by `ostris/flux-dev-lora-trainer` (the hot-swap trained-model endpoint, and the older
  flux-fine-tuner predictor). Its bf16 diffusers path applies a *single* LoRA's scale twice (adapter weight
  and `joint_attention_kwargs["scale"]`), so effective = lora_scale² → send `lora_scale = √strength`
  (0.81 → 0.9; 0.9 → 0.949). With an `extra_lora` the joint scale is 1.0 and each scale applies once:
  effective = scale. On that endpoint `go_fast` (when its schema has it) switches to the fp8 loader, which
  applies the multiplier stated in the schema once, like flux-dev-lora [inferred from the shared loader].

The multiplier is never hard-coded alone: `multiplier_from_schema` reads it from the schema text of the
version actually called ("1.5x multiplier"), so a model that changes its convention changes ours, and the
report shows which rule was used. A squared scale cannot be negative: a negative strength on that path is
refused with a way out (add an extra LoRA, or use flux-dev-lora).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import InputError

OFFICIAL = "official"      # black-forest-labs/flux-dev-lora
TRAINED = "trained"        # a destination version made by the trainer
_MULTIPLIER = re.compile(r"(\d+(?:\.\d+)?)\s*x\s+multiplier", re.IGNORECASE)


@dataclass(frozen=True)
class ScaleRule:
    """How one call turns ComfyUI strengths into Replicate scales."""
    factor: float            # effective = factor × scale (linear), or factor × scale² (squared)
    squared: bool            # the single-LoRA bf16 path of a trained version
    why: str                 # for the report

    def to_replicate(self, strength: float) -> float:
        if self.squared:
            if strength < 0:
                raise InputError(f"A negative LoRA strength ({strength:g}) cannot be sent to this trained "
                                 "version: it applies a single LoRA's scale twice (scale²), which is never "
                                 "negative. Use a strength ≥ 0, add an extra LoRA, or generate with "
                                 "black-forest-labs/flux-dev-lora and lora_weights instead.")
            return math.sqrt(strength / self.factor)
        return strength / self.factor

    def to_comfy(self, scale: float) -> float:
        return self.factor * scale * scale if self.squared else self.factor * scale


def multiplier_from_schema(description: str | None) -> float:
    """The go_fast multiplier a model's schema states for lora_scale ("… a 1.5x multiplier …"), else 1."""
    match = _MULTIPLIER.search(description or "")
    return float(match.group(1)) if match else 1.0


def scale_rule(target: str, *, go_fast: bool, has_extra: bool, lora_scale_description: str | None,
               schema_has_go_fast: bool) -> ScaleRule:
    """The conversion for a call to `target` (OFFICIAL or TRAINED) with these settings."""
    fast = go_fast and schema_has_go_fast
    multiplier = multiplier_from_schema(lora_scale_description) if fast else 1.0
    if target == OFFICIAL:
        why = (f"flux-dev-lora with go_fast: Replicate multiplies lora_scale by {multiplier:g} (its schema says "
               f"so), so scale = strength / {multiplier:g}" if fast else
               "flux-dev-lora without go_fast (bf16): scale = strength")
        return ScaleRule(multiplier, False, why)
    if fast:
        return ScaleRule(multiplier, False, f"trained version with go_fast (fp8 loader): scale = strength / "
                                            f"{multiplier:g}")
    if has_extra:
        return ScaleRule(1.0, False, "trained version with an extra LoRA: each scale applies once, scale = "
                                     "strength")
    return ScaleRule(1.0, True, "trained version, one LoRA (bf16): Replicate applies the scale twice, so scale "
                                "= √strength")

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

The path is the one the predictor really takes, not the one asked for: cog-flux turns go_fast off ("will run in
bf16") for a custom aspect ratio on a trained version and for an image input on either model, and a version
whose schema has no go_fast always runs bf16. So with go_fast on, a custom size on a trained version with one
LoRA is the squared bf16 rule (0.9 → √0.9), not ÷1.5 (which would land at 0.36).

The multiplier is never hard-coded alone: `multiplier_from_schema` reads it from the schema text of the
version actually called ("1.5x multiplier", for lora_scale and extra_lora_scale each), so a model that changes
its convention changes ours, and the report shows which rule was used. A squared scale cannot be negative: a
negative strength on that path is refused with a way out (add an extra LoRA, or use flux-dev-lora).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError

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


def runs_fast(target: str, *, go_fast: bool, schema_has_go_fast: bool, custom_size: bool = False,
              image_input: bool = False) -> tuple[bool, str]:
    """Whether the predictor really runs fp8, and why not when go_fast was asked for ("" otherwise)."""
    if not go_fast:
        return False, ""
    if not schema_has_go_fast:
        return False, "this version has no go_fast: it always runs bf16"
    if custom_size and target == TRAINED:
        return False, "go_fast is on, but Replicate runs a custom size in bf16"
    if image_input:
        return False, "go_fast is on, but Replicate runs an image input in bf16"
    return True, ""


def scale_rule(target: str, *, go_fast: bool, has_extra: bool, lora_scale_description: str | None,
               schema_has_go_fast: bool, custom_size: bool = False, image_input: bool = False) -> ScaleRule:
    """The conversion for a call to `target` (OFFICIAL or TRAINED) with these settings, on the path the
    predictor will really take (see `runs_fast`)."""
    fast, fell_back = runs_fast(target, go_fast=go_fast, schema_has_go_fast=schema_has_go_fast,
                                custom_size=custom_size, image_input=image_input)
    prefix = f"{fell_back}; " if fell_back else ""
    multiplier = multiplier_from_schema(lora_scale_description) if fast else 1.0
    if target == OFFICIAL:
        why = (f"flux-dev-lora with go_fast (fp8): Replicate multiplies the scale by {multiplier:g} (its schema "
               f"says so), so scale = strength / {multiplier:g}" if fast else
               f"{prefix}flux-dev-lora in bf16: scale = strength")
        return ScaleRule(multiplier, False, why)
    if fast:
        return ScaleRule(multiplier, False, f"trained version with go_fast (fp8 loader): scale = strength / "
                                            f"{multiplier:g}")
    if has_extra:
        return ScaleRule(1.0, False, f"{prefix}trained version in bf16 with an extra LoRA: each scale applies "
                                     "once, scale = strength")
    return ScaleRule(1.0, True, f"{prefix}trained version in bf16, one LoRA: Replicate applies the scale twice, "
                                "so scale = √strength")

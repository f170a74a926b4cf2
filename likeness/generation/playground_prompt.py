"""The playground page's settings → an API-format prompt of the pack's own nodes, and what it will cost.

The page never generates by itself: it queues this prompt on ComfyUI's /prompt, so an image made on a phone
goes through the same nodes, the same journal and the same never-pay-twice rules as one made on the canvas.

- Replicate: LikenessLoraStack (no model: balances and lists) → LikenessReplicateFluxSampler.
- This machine: UNETLoader + DualCLIPLoader + VAELoader → LikenessLoraStack → LikenessFluxSampler.
The samplers save each image themselves (under SAVE_PREFIX), as a PNG carrying its journal entry and score.

Every input of the pack's nodes that the page does not set keeps the node's own default (read from its
schema by the caller), so a node that gains an input (best-of-N `candidates`) needs no change here; the core
loaders get every input they require.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..loras.stack_plan import PlannedStack
from ..money.prices import format_usd, load_prices
from .remote_generation import GenerationSettings, ResultCache, cache_key, estimate_cost, plan_generation

WHERE = ("replicate", "local")
SAVE_PREFIX = "likeness/playground"
MAX_STYLES = 8
MAX_PROMPT_CHARS = 4000
# FLUX's standard sizes per aspect ratio (about one megapixel, multiples of 16): what Replicate renders, and
# what the local sampler is given.
SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832), "2:3": (832, 1216),
         "4:5": (896, 1088), "5:4": (1088, 896), "3:4": (896, 1152), "4:3": (1152, 896), "9:16": (768, 1344),
         "9:21": (640, 1536)}
# Node ids of the prompt (numbers, as the canvas numbers its nodes, so "open on the canvas" keeps them).
UNET, CLIP, VAE, STACK, SAMPLER = "1", "2", "3", "4", "5"


@dataclass(frozen=True)
class StyleRow:
    lora: str
    strength: float = 0.2
    on: bool = True


@dataclass(frozen=True)
class PlaygroundSettings:
    where: str
    personal: str
    prompt: str
    seed: int
    personal_strength: float = 0.9          # the seed: 0.9
    styles: tuple[StyleRow, ...] = ()
    balance: str = "anchor"
    target_total: float = 1.2               # the seed: "around 1.2"
    trigger_word: str = ""
    steps: int = 35                         # the seed: at least 35
    guidance: float = 2.75                  # the seed: 2.5–3
    aspect_ratio: str = "1:1"
    candidates: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["styles"] = [{"lora": s.lora, "strength": s.strength, "on": s.on} for s in self.styles]
        return data

    def rows(self) -> list[dict[str, Any]]:
        """The stack's rows: the personal LoRA first (the anchor), then the style LoRAs."""
        return [{"lora": self.personal, "strength": self.personal_strength, "on": True}] + \
               [{"lora": s.lora, "strength": s.strength, "on": s.on} for s in self.styles]


@dataclass(frozen=True)
class LocalModels:
    """The FLUX.1-dev files of this machine the local graph loads."""
    unet: str
    clip_l: str
    t5: str
    vae: str


@dataclass
class Estimate:
    usd: float
    reused: bool = False                    # the exact image exists: queuing it costs nothing
    model: str = ""
    lines: list[str] = field(default_factory=list)
    local: bool = False

    def text(self) -> str:
        if self.local:
            return "Runs on this machine: no charge"
        if self.reused:
            return "Already generated with these settings: nothing to pay"
        return f"About {format_usd(self.usd)}" + (f" on {self.model}" if self.model else "")


def settings_from_json(body: Any) -> PlaygroundSettings:
    """The page's JSON, checked: every problem is a message the page can show next to its control."""
    if not isinstance(body, dict):
        raise InputError("The settings must be a JSON object")
    where = _choice(body, "where", WHERE, "replicate")
    personal = _text(body, "personal", required=True, what="the personal LoRA")
    prompt = _text(body, "prompt", required=True, what="the prompt", limit=MAX_PROMPT_CHARS)
    styles_raw = body.get("styles") or []
    if not isinstance(styles_raw, list) or len(styles_raw) > MAX_STYLES:
        raise InputError(f"styles must be a list of at most {MAX_STYLES} LoRAs")
    styles = tuple(StyleRow(_text(s, "lora", required=True, what="a style LoRA"),
                            _number(s, "strength", 0.2, -2.0, 5.0), bool(s.get("on", True)))
                   for s in styles_raw if isinstance(s, dict))
    aspect = _choice(body, "aspect_ratio", tuple(SIZES), "1:1")
    return PlaygroundSettings(
        where=where, personal=personal, prompt=prompt, seed=int(_number(body, "seed", 0, 0, 2 ** 53, whole=True)),
        personal_strength=_number(body, "personal_strength", 0.9, -2.0, 5.0), styles=styles,
        balance=_text(body, "balance") or "anchor", target_total=_number(body, "target_total", 1.2, 0.0, 5.0),
        trigger_word=_text(body, "trigger_word", limit=200), steps=int(_number(body, "steps", 35, 1, 50, whole=True)),
        guidance=_number(body, "guidance", 2.75, 0.0, 10.0), aspect_ratio=aspect,
        candidates=int(_number(body, "candidates", 1, 1, 16, whole=True)))


def build_prompt(settings: PlaygroundSettings, defaults: Callable[[str], dict[str, Any]], *,
                 version: str = "", local: LocalModels | None = None) -> dict[str, dict[str, Any]]:
    """The API-format prompt: `defaults(class_type)` gives a node's inputs with their defaults (its schema);
    `version` is the personal LoRA's trained Replicate version; `local` the model files for this machine."""
    stack_defaults = defaults("LikenessLoraStack")
    if settings.balance not in stack_defaults.get("_choices", {}).get("balance", [settings.balance]):
        raise InputError(f"Balance mode {settings.balance!r} is not offered by this LikenessLoraStack; choose one "
                         f"of {', '.join(stack_defaults['_choices']['balance'])}")
    stack = {**_plain(stack_defaults), "rows": json.dumps(settings.rows()), "balance": settings.balance,
             "target_total": settings.target_total, "anchor_row": 1}
    if settings.where == "replicate":
        return _replicate_prompt(settings, defaults, stack, version)
    if local is None:
        raise InputError("This machine has no FLUX.1-dev files (diffusion model, clip_l + t5xxl text encoders and "
                         "the VAE in ComfyUI's models folders); generate on Replicate instead.")
    return _local_prompt(settings, defaults, stack, local)


def _replicate_prompt(settings, defaults, stack, version) -> dict[str, dict[str, Any]]:
    if not version:
        raise InputError(f"{settings.personal} has no Replicate version in its metadata (only LoRAs trained by "
                         "Likeness carry one), so Replicate cannot run it from here. Generate on this machine, or "
                         "use the canvas's Replicate sampler with lora_weights set to the LoRA's URL.")
    width, height = SIZES[settings.aspect_ratio]
    sampler = {**_plain(defaults("LikenessReplicateFluxSampler")), "prompt": settings.prompt,
               "trigger_words": settings.trigger_word, "seed": settings.seed, "steps": settings.steps,
               "guidance": settings.guidance, "aspect_ratio": settings.aspect_ratio, "width": width,
               "height": height, "num_outputs": 1, "lora_strength": settings.personal_strength,
               "run_on": "auto", "version": version, "lora_weights": "", "rerun": False,
               "lora_stack": [STACK, 2], "filename_prefix": SAVE_PREFIX}
    _candidates(sampler, settings)
    return {STACK: _node("LikenessLoraStack", stack, "Likeness LoRA Stack (balance only: Replicate applies them)"),
            SAMPLER: _node("LikenessReplicateFluxSampler", sampler, "Likeness Replicate FLUX Sampler")}


def _local_prompt(settings, defaults, stack, local: LocalModels) -> dict[str, dict[str, Any]]:
    width, height = SIZES[settings.aspect_ratio]
    sampler = {**_plain(defaults("LikenessFluxSampler")), "model": [STACK, 0], "clip": [STACK, 1], "vae": [VAE, 0],
               "prompt": settings.prompt, "trigger_words": settings.trigger_word, "seed": settings.seed,
               "steps": settings.steps, "guidance": settings.guidance, "width": width, "height": height,
               "filename_prefix": SAVE_PREFIX}
    _candidates(sampler, settings)
    return {UNET: _node("UNETLoader", {"unet_name": local.unet, "weight_dtype": "default"}, "Load FLUX.1-dev"),
            CLIP: _node("DualCLIPLoader", {"clip_name1": local.clip_l, "clip_name2": local.t5, "type": "flux"},
                        "FLUX text encoders"),
            VAE: _node("VAELoader", {"vae_name": local.vae}, "FLUX VAE"),
            STACK: _node("LikenessLoraStack", {**stack, "model": [UNET, 0], "clip": [CLIP, 0]}, "Likeness LoRA Stack"),
            SAMPLER: _node("LikenessFluxSampler", sampler, "Likeness FLUX Sampler")}


def _candidates(sampler: dict, settings: PlaygroundSettings) -> None:
    if "candidates" in sampler:                      # best of N, where the sampler has it
        sampler["candidates"] = settings.candidates
    elif settings.candidates != 1:
        raise InputError("This version of the sampler makes one image per run (no candidates input)")


def _node(class_type: str, inputs: dict, title: str) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def _plain(defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in defaults.items() if not k.startswith("_")}


def pick_local_models(unets: list[str], encoders: list[str], vaes: list[str]) -> LocalModels | None:
    """The FLUX.1-dev files among the models folders' lists, by their usual names; None when one is missing."""
    unet = _first(unets, ("flux1-dev", "flux-dev", "flux1_dev", "flux"))
    clip_l = _first(encoders, ("clip_l",))
    t5 = _first(encoders, ("t5xxl", "t5"))
    vae = _first(vaes, ("ae.", "flux", "ae"))
    return LocalModels(unet, clip_l, t5, vae) if unet and clip_l and t5 and vae else None


def _first(names: list[str], hints: tuple[str, ...]) -> str:
    for hint in hints:
        for name in sorted(names):
            if hint in name.replace("\\", "/").rsplit("/", 1)[-1].lower():
                return name
    return ""


def estimate(settings: PlaygroundSettings, sampler_inputs: dict[str, Any], stack: PlannedStack,
             user_dir: str | Path, locate: Callable[[str], str | None]) -> Estimate:
    """What queuing the prompt will cost: Replicate's estimate (the sampler's own), 0 when the exact image is
    in the sampler's store (Again), 0 on this machine."""
    if settings.where == "local":
        return Estimate(0.0, local=True)
    names = {f.name for f in fields(GenerationSettings)}
    generation = GenerationSettings(**{k: v for k, v in sampler_inputs.items() if k in names})
    plan = plan_generation(generation, None, stack.lora_stack, locate)
    if settings.candidates == 1 and not generation.rerun and \
            (ResultCache(user_dir).folder(cache_key(plan, generation)) / "result.json").is_file():
        return Estimate(0.0, True, plan.model, list(plan.notes))
    steps_outputs = {"num_inference_steps": generation.steps, "num_outputs": generation.num_outputs}
    usd = estimate_cost(plan, steps_outputs, load_prices(user_dir)) * settings.candidates
    return Estimate(usd, False, plan.model, list(plan.notes))


def nearest_aspect(width: int, height: int) -> str:
    """The aspect ratio of SIZES closest to a width × height (for an entry made elsewhere)."""
    if width <= 0 or height <= 0:
        return "1:1"
    ratio = math.log(width / height)
    return min(SIZES, key=lambda a: abs(math.log(SIZES[a][0] / SIZES[a][1]) - ratio))


def _text(body: dict, key: str, *, required: bool = False, what: str = "", limit: int = 1000) -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{key} must be text")
    value = value.strip()
    if required and not value:
        raise InputError(f"Choose {what}" if "LoRA" in what else f"Write {what}")
    if len(value) > limit or "\0" in value:
        raise InputError(f"{key} is too long (at most {limit} characters)")
    return value


def _number(body: dict, key: str, default: float, lo: float, hi: float, whole: bool = False) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (whole and value != int(value)):
        raise InputError(f"{key} must be a {'whole ' if whole else ''}number")
    if not lo <= value <= hi:
        raise InputError(f"{key} must be between {lo:g} and {hi:g}")
    return float(value)


def _choice(body: dict, key: str, options: tuple[str, ...], default: str) -> str:
    value = body.get(key, default)
    if value not in options:
        raise InputError(f"{key} must be one of {', '.join(options)}")
    return value


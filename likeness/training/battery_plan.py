"""The training battery's plan: a base configuration and a table of variations, expanded into trainings.

Both are small text tables the user edits on the node, one setting per line:

    base                               variations
    steps_per_image: 40                lora_rank: 16, 32, 64
    lora_rank: 32                      steps_per_image: 30, 40, 50
    layers: 7/12/16/20                 layers: 7/12/16/20, all

The base gives one value per line; what it leaves out is the seed's recipe (`SEED_BASE`). A variations line gives
the values to try, separated by commas (or by semicolons when a value holds commas: `resolution: 1024; 512,768,1024`).
Two ways to expand them (the seed wants "test batteries and careful observation of how parameter settings affect
results"):

- `one factor at a time`: the base, plus one training for each value that differs from the base's, everything
  else kept at the base: 1 + 2 + 2 + 1 = 6 trainings for the table above. Each result says what one knob does.
- `full grid`: every combination: 3 × 3 × 2 = 18 trainings. Interactions show, at the price of many trainings.

Settings: `steps_per_image` (steps = value × photos; the seed: "at least 40 steps per image"), or `steps` (a fixed
count); `lora_rank`, `learning_rate`, `optimizer`, `batch_size`, `resolution`, `caption_dropout_rate`, `autocaption`;
`layers` (`7/12/16/20`, `7/20`, any list of single-block numbers like `7/12`, `all`, or a regular expression); and any
other input of the trainer by its own name (`cache_latents_to_disk: true`), checked against the trainer's schema
before anything is paid.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .training import LAYER_PRESETS, STEPS_PER_IMAGE, TrainingSettings

MODES = ("one factor at a time", "full grid")
MAX_VARIANTS = 64
SEED_BASE: dict[str, Any] = {"steps_per_image": STEPS_PER_IMAGE, "lora_rank": 32, "learning_rate": 0.0004,
                             "layers": "7/12/16/20", "optimizer": "adamw8bit", "batch_size": 1,
                             "resolution": "1024", "caption_dropout_rate": 0.1, "autocaption": False}
DEFAULT_BASE = "\n".join(f"{k}: {'false' if v is False else v}" for k, v in SEED_BASE.items())
DEFAULT_VARIATIONS = "lora_rank: 16, 32, 64"
_WHOLE = frozenset({"steps_per_image", "steps", "lora_rank", "batch_size"})
_NUMBER = frozenset({"learning_rate", "caption_dropout_rate"})
_TEXT = frozenset({"layers", "optimizer", "resolution"})
_NODE_OWNED = {"trigger_word": "the dataset's trigger word is used", "input_images": "the node uploads the photos",
               "destination": "set destination on the node", "trainer_version": "set trainer_version on the node",
               "layers_to_optimize_regex": "write it as layers: <regex>"}
_SHORT = {"steps_per_image": "spi", "lora_rank": "rank", "learning_rate": "lr", "caption_dropout_rate": "dropout",
          "batch_size": "batch", "resolution": "res", "optimizer": "opt"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_BLOCKS = re.compile(r"^\d+(/\d+)*$")


@dataclass(frozen=True)
class Factor:
    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Variant:
    label: str                          # "base", "lora_rank 16", or "lora_rank 16 · layers all" (full grid)
    values: dict[str, Any]              # every setting this variant trains with
    changed: dict[str, Any]             # what differs from the base (empty for the base itself)
    factors: tuple[str, ...] = field(default=())     # the battery's varied settings, in table order

    def file_suffix(self) -> str:
        """The variant in a LoRA file name: each varied setting with this variant's value, e.g. rank16-spi40."""
        return "-".join(f"{_SHORT.get(name, name)}{_slug(self.values.get(name))}" for name in self.factors) \
            or "base"


@dataclass(frozen=True)
class BatteryPlan:
    base: dict[str, Any]
    factors: tuple[Factor, ...]
    mode: str
    variants: tuple[Variant, ...]

    def describe(self) -> str:
        how = "one factor at a time around the base" if self.mode == MODES[0] else "every combination"
        count = len(self.variants)
        return f"{count} training{'s' if count != 1 else ''} ({how}): " + ", ".join(v.label for v in self.variants)


def plan_battery(base_text: str, variations_text: str, mode: str) -> BatteryPlan:
    """The variants of a battery, from the node's base and variations tables (no network, nothing paid)."""
    if mode not in MODES:
        raise InputError(f"expand must be one of {', '.join(MODES)}; got {mode!r}.")
    base = {**SEED_BASE, **parse_table(base_text, "base", several=False)}
    factors = tuple(Factor(name, values) for name, values in parse_table(variations_text, "variations",
                                                                          several=True).items())
    check_steps(base, factors)
    variants = expand(base, factors, mode)
    if len(variants) > MAX_VARIANTS:
        raise InputError(f"The {mode} makes {len(variants)} trainings; one battery runs at most {MAX_VARIANTS}. "
                         "Use one factor at a time, or fewer values.")
    return BatteryPlan(base, factors, mode, tuple(variants))


def parse_table(text: str, what: str, *, several: bool) -> dict[str, Any]:
    """`name: value` lines (`name: v1, v2, …` when `several`); blank lines and lines starting with # are skipped."""
    table: dict[str, Any] = {}
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, rest = line.partition(":")
        name = name.strip().lower().replace(" ", "_").replace("-", "_")
        where = f"{what} line {number} ({raw.strip()!r})"
        if not colon or not rest.strip():
            raise InputError(f"{where}: write a setting and its value{'s' if several else ''}, like "
                             f"{'lora_rank: 16, 32, 64' if several else 'lora_rank: 32'}.")
        if not _NAME.match(name):
            raise InputError(f"{where}: {name!r} is not a setting name (letters, digits and _).")
        if name in _NODE_OWNED:
            raise InputError(f"{where}: {name} is not set in this table: {_NODE_OWNED[name]}.")
        if name in table:
            raise InputError(f"{where}: {name} is already set on an earlier line; keep one.")
        if several:
            splitter = ";" if ";" in rest else ","
            values = [parse_value(name, part.strip(), where) for part in rest.split(splitter) if part.strip()]
            table[name] = tuple(dict.fromkeys(values))          # the same value twice is one training
        else:
            table[name] = parse_value(name, rest.strip(), where)
    return table


def parse_value(name: str, raw: str, where: str = "") -> Any:
    """A table value in the type the trainer wants for `name` (others: true/false, a number, or text)."""
    where = where or name
    if name in _WHOLE:
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not value.is_integer() or value < 1:
            raise InputError(f"{where}: {name} takes whole numbers of 1 or more; got {raw!r}.")
        return int(value)
    if name in _NUMBER:
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"{where}: {name} takes numbers like 0.0004; got {raw!r}.") from None
    if name == "layers":
        return normalise_layers(raw)
    if name in _TEXT:
        return raw.replace(" ", "") if name == "resolution" else raw
    lowered = raw.lower()
    if lowered in ("true", "false", "on", "off", "yes", "no"):
        return lowered in ("true", "on", "yes")
    if name == "autocaption":
        raise InputError(f"{where}: autocaption takes true or false; got {raw!r}.")
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw


def normalise_layers(raw: str) -> str:
    """`all`, a slash list of single-block numbers (`7/12/16/20`), or a regular expression, as written."""
    compact = raw.replace(" ", "")
    if compact.lower() == "all":
        return "all"
    if _BLOCKS.match(compact):
        return "/".join(str(int(n)) for n in compact.split("/"))
    return raw.strip()


def check_steps(base: dict[str, Any], factors: tuple[Factor, ...]) -> None:
    varied = {f.name for f in factors}
    if {"steps", "steps_per_image"} <= varied:
        raise InputError("The variations set both steps and steps_per_image: vary one of them.")
    if "steps_per_image" in varied and base.get("steps"):
        raise InputError(f"The base sets steps: {base['steps']}, which wins over steps_per_image, so varying "
                         "steps_per_image would change nothing: remove steps from the base, or vary steps.")


def expand(base: dict[str, Any], factors: tuple[Factor, ...], mode: str) -> list[Variant]:
    names = tuple(f.name for f in factors)
    if mode == MODES[1]:
        combos = itertools.product(*(f.values for f in factors)) if factors else [()]
        variants = []
        for combo in combos:
            values = {**base, **dict(zip(names, combo))}
            changed = {k: v for k, v in zip(names, combo) if base.get(k) != v}
            label = " · ".join(f"{k} {_shown(v)}" for k, v in zip(names, combo)) or "base"
            variants.append(Variant(label, values, changed, names))
        return variants
    variants = [Variant("base", dict(base), {}, names)]
    for factor in factors:
        for value in factor.values:
            if base.get(factor.name) != value:
                variants.append(Variant(f"{factor.name} {_shown(value)}", {**base, factor.name: value},
                                        {factor.name: value}, names))
    return variants


def training_settings(values: dict[str, Any], photos: int, destination: str,
                      trainer_version: str = "") -> TrainingSettings:
    """The single trainer's settings for one variant (`photos`: the dataset's size, for steps_per_image)."""
    steps = int(values.get("steps") or 0) or int(values["steps_per_image"]) * photos
    layers, custom = layer_settings(str(values["layers"]))
    known = set(SEED_BASE) | {"steps"}
    extras = {k: v for k, v in values.items() if k not in known}
    return TrainingSettings(destination=destination, steps=steps, lora_rank=int(values["lora_rank"]),
                            learning_rate=float(values["learning_rate"]), layers=layers, custom_regex=custom,
                            optimizer=str(values["optimizer"]), batch_size=int(values["batch_size"]),
                            resolution=str(values["resolution"]),
                            caption_dropout_rate=float(values["caption_dropout_rate"]),
                            autocaption=bool(values["autocaption"]), trainer_version=trainer_version,
                            extra_inputs=extras)


def layer_settings(layers: str) -> tuple[str, str]:
    """(layers preset, custom regex) of the trainer for a table's layers value."""
    if layers in LAYER_PRESETS and LAYER_PRESETS[layers] is not None:
        return layers, ""
    if _BLOCKS.match(layers):
        return "custom regex", f"transformer.single_transformer_blocks.({'|'.join(layers.split('/'))}).proj_out"
    return "custom regex", layers


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _slug(value: Any) -> str:
    text = _shown(value).replace("/", ".")
    if len(text) > 16 or not re.fullmatch(r"[A-Za-z0-9._-]*", text):
        return "x" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return text

"""What a LoRA file is, read from its safetensors header only: key format, modules and trigger words.

The header (8-byte length + JSON) names every tensor with its shape and carries the trainer's
`__metadata__`; nothing else of a 100–300 MB FLUX LoRA needs to be read to say which trainer wrote it,
which layers it touches and which word wakes it up.

Key formats (reference: lora-and-performance.md §1.2, §1.7):
- `diffusers`  ai-toolkit / Replicate trainer / SimpleTuner peft names: `transformer.single_transformer_blocks.7.proj_out.lora_A.weight`
- `kohya`      sd-scripts / FluxGym: `lora_unet_single_blocks_7_linear2.lora_down.weight` (+ `.alpha`, `lora_te*` text encoders)
- `bfl`        BFL native / ComfyUI `LoraSave`: `diffusion_model.single_blocks.7.linear2.lora_up.weight`
- `xlabs`      x-flux: `double_blocks.0.processor.qkv_lora1.down.weight` — core LoraLoader (0.3.75) ignores these
               keys; the stack converts them with ComfyUI's own `convert_uso_lora` table
- `onetrainer` `lora_transformer_single_transformer_blocks_7_proj_out.lora_down.weight`
- `unknown`    anything else
`architecture` says whether the file is for FLUX or for an SD 1.5 / SDXL U-Net (which FLUX ignores).
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# Suffixes of the tensors of one LoRA module, longest first (ComfyUI's `LoRAAdapter.load` names + extras).
MODULE_SUFFIXES = (
    ".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight",
    ".lora_B.default.weight", ".lora_A.default.weight",
    ".lora_up.weight", ".lora_down.weight", ".lora_mid.weight",
    ".lora.up.weight", ".lora.down.weight", "_lora.up.weight", "_lora.down.weight",
    ".lora_B.weight", ".lora_A.weight", ".lora_B", ".lora_A",
    ".up.weight", ".down.weight",
    ".dora_scale", ".alpha", ".diff_b", ".diff", ".set_weight", ".w_norm", ".b_norm",
    ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".lokr_w1", ".lokr_w2",
)
FORMATS = ("diffusers", "kohya", "bfl", "xlabs", "onetrainer", "unknown")
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA file as its header describes it."""

    path: str
    format: str                       # one of FORMATS
    architecture: str                 # "flux", "sd" (SD 1.5 / SDXL U-Net), or "unknown"
    modules: tuple[str, ...]          # distinct module prefixes ("keys" in the node's "N of M keys apply")
    has_alpha: bool
    rank: int | None                  # the largest rank seen (rows of the down matrix)
    metadata: dict[str, str] = field(default_factory=dict)
    trigger_words: tuple[str, ...] = ()

    @property
    def format_label(self) -> str:
        label = {"diffusers": "diffusers / ai-toolkit", "kohya": "kohya", "bfl": "BFL / ComfyUI",
                 "xlabs": "XLabs", "onetrainer": "OneTrainer", "unknown": "unknown"}[self.format]
        if self.architecture == "sd":
            label += " (SD 1.5 / SDXL)"
        return label


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """The tensor table ({name: {dtype, shape, data_offsets}}) and `__metadata__` of a safetensors file."""
    try:
        with open(path, "rb") as f:
            start = f.read(512)
            not_lora = stand_in(start)
            if not_lora:
                raise InputError(f"{path} is {not_lora}")
            f.seek(0)
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise InputError(f"{path} is not a safetensors file (too short); re-download it")
            (length,) = struct.unpack("<Q", raw_len)
            if length > MAX_HEADER_BYTES:
                raise InputError(f"{path} is not a safetensors file (header of {length} bytes); re-download it")
            header = json.loads(f.read(length))
    except FileNotFoundError as exc:
        raise InputError(f"LoRA file {path} does not exist; put it into models/loras") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a safetensors file ({exc}); re-download it") from exc
    metadata = header.pop("__metadata__", None) or {}
    return header, {str(k): str(v) for k, v in metadata.items()}


def stand_in(start: bytes) -> str:
    """What a file saved under a .safetensors name really is, from its first bytes, when it is one of the two
    things a failed download leaves behind ("" otherwise): a Git LFS pointer (a clone without `git lfs`) or
    an HTML page (a login, error or "confirm download" page saved in place of the file)."""
    if start.startswith(b"version https://git-lfs.github.com/spec/"):
        size = re.search(rb"\nsize (\d+)", start)
        real = f" of the real {int(size[1]) / (1 << 20):.1f} MB file" if size else ""
        return (f"a Git LFS pointer{real}, not the LoRA itself: run `git lfs pull` in the repository it came from, "
                "or download the file with the site's download button")
    head = start.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")):
        return ("a web page (HTML), not the LoRA: the download saved a login, error or confirmation page; sign "
                "in on the site if it asks (or use an API token), then download the file again")
    return ""


def describe_lora(path: str | os.PathLike) -> LoraInfo:
    """Format, architecture, modules, rank and trigger words of the LoRA at `path` (header + side-cars only)."""
    tensors, metadata = read_header(path)
    keys = list(tensors)
    modules = lora_modules(keys)
    ranks = [min(t["shape"]) for k, t in tensors.items()
             if _is_down(k) and len(t.get("shape", [])) >= 2]
    return LoraInfo(
        path=str(path),
        format=detect_format(keys),
        architecture=detect_architecture(keys),
        modules=tuple(modules),
        has_alpha=any(k.endswith(".alpha") for k in keys),
        rank=max(ranks) if ranks else None,
        metadata=metadata,
        trigger_words=tuple(trigger_words(path, metadata)),
    )


def lora_modules(keys) -> list[str]:
    """Distinct module prefixes of LoRA tensor names, in first-seen order."""
    seen: dict[str, None] = {}
    for key in keys:
        seen.setdefault(module_of(key), None)
    return list(seen)


def module_of(key: str) -> str:
    for suffix in MODULE_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def detect_format(keys) -> str:
    """The trainer family that names keys like these (see the module docstring)."""
    keys = list(keys)
    if not keys:
        return "unknown"

    def share(pred) -> float:
        return sum(1 for k in keys if pred(k)) / len(keys)

    votes = {
        "xlabs": share(lambda k: ".processor." in k and "_lora" in k),
        "onetrainer": share(lambda k: k.startswith("lora_transformer_")),
        "kohya": share(lambda k: k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_"))),
        "bfl": share(lambda k: k.startswith("diffusion_model.")),
        "diffusers": share(lambda k: k.startswith(("transformer.", "text_encoder.", "unet."))
                           or ".lora_A." in k or ".lora_B." in k),
    }
    best = max(votes, key=votes.get)
    return best if votes[best] > 0 else "unknown"


_SD_UNET = re.compile(r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block)")
_FLUX = re.compile(r"(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)")


def detect_architecture(keys) -> str:
    keys = list(keys)
    if any(_SD_UNET.search(k) for k in keys):       # SD attention names contain "transformer_blocks" too
        return "sd"
    if any(_FLUX.search(k) for k in keys):
        return "flux"
    return "unknown"


def _is_down(key: str) -> bool:
    return key.endswith((".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight",
                         ".down.weight", ".lora_A.default.weight", ".lora_linear_layer.down.weight"))


# --- trigger words --------------------------------------------------------------------------------
def trigger_words(path: str | os.PathLike, metadata: dict[str, str]) -> list[str]:
    """The words that activate a LoRA, most trusted source first, without duplicates.

    Sources: Likeness metadata (`likeness_trigger_word`, or `likeness` JSON with `trigger_word`) and the
    side-car `<lora>.likeness.json`; `ss_trigger_words`; ai-toolkit metadata (any `trigger_word` inside its
    JSON values); the side-car `<lora>.txt` (comma or line separated); kohya `ss_tag_frequency` (the most
    frequent tag of each dataset folder, only when nothing better exists).
    """
    found: list[str] = []
    for source in (_likeness_words, _ss_trigger_words, _ai_toolkit_words, _sidecar_txt_words):
        found += source(Path(path), metadata)
    if not found:
        found += _tag_frequency_words(metadata)
    unique: dict[str, None] = {}
    for word in found:
        word = word.strip()
        if word and word.lower() not in {u.lower() for u in unique}:
            unique[word] = None
    return list(unique)


def _likeness_words(path: Path, metadata: dict[str, str]) -> list[str]:
    words = [metadata["likeness_trigger_word"]] if metadata.get("likeness_trigger_word") else []
    blob = _json(metadata.get("likeness"))
    if isinstance(blob, dict) and blob.get("trigger_word"):
        words.append(str(blob["trigger_word"]))
    sidecar = path.with_name(path.stem + ".likeness.json")
    if sidecar.is_file():
        data = _json(sidecar.read_text(encoding="utf-8", errors="replace"))
        if isinstance(data, dict) and data.get("trigger_word"):
            words.append(str(data["trigger_word"]))
    return words


def _ss_trigger_words(path: Path, metadata: dict[str, str]) -> list[str]:
    raw = metadata.get("ss_trigger_words") or metadata.get("modelspec.trigger_phrase") or ""
    value = _json(raw)
    if isinstance(value, list):
        return [str(v) for v in value]
    return _split_words(raw)


def _ai_toolkit_words(path: Path, metadata: dict[str, str]) -> list[str]:
    words: list[str] = []
    for key, raw in metadata.items():
        if key.startswith("ss_"):
            continue
        if key == "trigger_word":
            words += _split_words(raw)
            continue
        value = _json(raw)
        if isinstance(value, (dict, list)):
            words += _find_key(value, "trigger_word")
    return words


def _sidecar_txt_words(path: Path, metadata: dict[str, str]) -> list[str]:
    sidecar = path.with_suffix(".txt")
    if not sidecar.is_file():
        return []
    return _split_words(sidecar.read_text(encoding="utf-8", errors="replace"))


def _tag_frequency_words(metadata: dict[str, str]) -> list[str]:
    freq = _json(metadata.get("ss_tag_frequency"))
    if not isinstance(freq, dict):
        return []
    words = []
    for tags in freq.values():
        if isinstance(tags, dict) and tags:
            words.append(max(tags.items(), key=lambda kv: (kv[1], -len(kv[0])))[0])
    return words


def _find_key(value, name: str) -> list[str]:
    if isinstance(value, dict):
        out = [str(v) for k, v in value.items() if k == name and isinstance(v, str) and v]
        for v in value.values():
            out += _find_key(v, name)
        return out
    if isinstance(value, list):
        return [w for v in value for w in _find_key(v, name)]
    return []


def _split_words(text: str) -> list[str]:
    return [w.strip() for w in re.split(r"[,\n]", text or "") if w.strip()]


def _json(raw):
    if not raw or not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None

"""LikenessLoraStack: rows of (LoRA, strength, on/off), balanced toward a total, applied with ComfyUI's own code."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import comfy.lora
import comfy.lora_convert
import comfy.sd
import comfy.utils
import folder_paths
from comfy_api.v0_0_2 import io

from ..likeness.errors import InputError
from ..likeness.loras.lora_cache import LORA_FILES, file_key
from ..likeness.loras.lora_formats import LoraInfo, describe_lora, lora_modules, module_of
from ..likeness.loras.lora_shapes import fits, target_shape
from ..likeness.storage import is_inside
from ..likeness.loras.measured_balance import balance_measured, row_decisions
from ..likeness.loras.stack_plan import SD_LEFT_OUT, plan_stack
from ..likeness.loras.strength_balance import (MODES, LowRankDelta, StackRow, balance_strengths, describe_total,
                                               parse_rows)
from ..likeness.loras.sweep_results import SweepResults, lora_key, lora_sha256
from .host import NodeProgress, user_dir, user_errors
from .types import LoraStack

# model_options key under which the applied stack travels with the MODEL (read by the samplers' journal)
STACK_OPTION = "likeness_lora_stack"
EXAMPLE_ROWS = json.dumps([{"lora": "my_face.safetensors", "strength": 0.9, "on": True},
                           {"lora": "civitai_style.safetensors", "strength": 0.2, "on": True}])


class LoraStackNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessLoraStack",
            display_name="Likeness LoRA Stack",
            category="Likeness",
            description="Applies your personal LoRA and any number of Civitai LoRAs to FLUX, balancing their "
                        "strengths toward a combined total (the seed's 0.9 personal + 0.15–0.25 others ≈ 1.2). "
                        "Shows each LoRA's format, how many of its keys apply to this model, and the strength "
                        "actually used; outputs the trigger words, personal first.",
            inputs=[
                io.Model.Input("model", optional=True,
                               tooltip="The FLUX model (from Load Diffusion Model) to apply the LoRAs to. Leave it "
                                       "empty for a sampler that applies the LoRAs itself (Replicate): the node "
                                       "then only balances the strengths and outputs LORA_STACK and trigger words."),
                io.String.Input("rows", default=EXAMPLE_ROWS, multiline=True,
                                tooltip='The LoRA rows: JSON [{"lora": "file.safetensors", "strength": 0.9, '
                                        '"on": true}, ...] (the canvas widget writes this), or one row per '
                                        'line: "file.safetensors, 0.9" (add ", off" to disable a row). '
                                        'Subfolders may use / or \\.'),
                io.Combo.Input("balance", options=list(MODES), default="anchor",
                               tooltip="off: strengths as typed. anchor (the seed's rule): the personal row "
                                       "keeps its strength, and so does any row typed inside clamp_min.."
                                       "clamp_max; a row typed below the range gets clamp_min, a row typed "
                                       "above it gets its share of what is left of target_total, kept inside "
                                       "the range. The total and its distance from target_total are shown. "
                                       "proportional: all rows scaled so they sum to target_total. effect: "
                                       "like anchor, but measured in the size of each LoRA's actual weight "
                                       "change on the layers it shares with the personal LoRA. measured: the "
                                       "strengths the newest Likeness Strength Sweep of these LoRA files "
                                       "recommends (anchor where none). A LoRA none of whose keys fit this "
                                       "model is left out of all of them."),
                io.Float.Input("target_total", default=1.2, min=0.0, max=5.0, step=0.05,
                               tooltip="The combined strength to aim for (the seed keeps it around 1.2)."),
                io.Float.Input("clamp_min", default=0.15, min=0.0, max=2.0, step=0.01,
                               tooltip="anchor/effect: the smallest strength a non-personal LoRA gets (a "
                                       "strength typed between clamp_min and clamp_max is kept as typed)."),
                io.Float.Input("clamp_max", default=0.25, min=0.0, max=2.0, step=0.01,
                               tooltip="anchor/effect: the largest strength a non-personal LoRA gets (a "
                                       "strength typed between clamp_min and clamp_max is kept as typed)."),
                io.Int.Input("anchor_row", default=1, min=0, max=64,
                             tooltip="Which row is your personal LoRA (1 = the first row); 0 = none."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Optional text encoder: LoRAs with text-encoder keys patch it too; "
                                      "passed through otherwise."),
                LoraStack.Input("lora_stack", optional=True,
                                tooltip="A LORA_STACK from another pack (Efficiency, Comfyroll, LoRA "
                                        "Manager...) whose rows are added after these rows."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The model with the LoRAs applied."),
                io.Clip.Output(display_name="CLIP", tooltip="The text encoder (patched when a LoRA has "
                                                            "text-encoder keys and a CLIP was connected)."),
                LoraStack.Output(display_name="LORA_STACK",
                                 tooltip="[(lora_name, model_strength, clip_strength)] with the effective "
                                         "strengths, for nodes of other packs and the Replicate sampler."),
                io.String.Output(display_name="trigger_words",
                                 tooltip="The LoRAs' trigger words, the personal LoRA's first, comma separated."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, rows=None) -> bool | str:
        # Named, not **kwargs: with **kwargs ComfyUI leaves every min/max check to this function.
        if not isinstance(rows, str):
            return True                            # linked from another node: checked when it runs
        try:
            missing = [r.lora for r in parse_rows(rows) if r.on and resolve_lora(r.lora) is None]
        except InputError as exc:
            return str(exc)
        if missing:
            return (f"LoRA file(s) not found in models/loras: {', '.join(missing)}. Put them there, fix the "
                    f"name, or switch the row off.")
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> str:
        # A LoRA replaced on disk under the same name must re-run the node.
        try:
            rows = parse_rows(kwargs.get("rows") or "")
        except InputError:
            return ""
        keys = []
        for row in rows:
            path = resolve_lora(row.lora)
            keys.append(list(file_key(path)) if path else None)
        if kwargs.get("balance") == "measured":      # a new sweep changes the measured strengths
            sweeps = SweepResults(user_dir()).path
            keys.append(list(file_key(sweeps)) if sweeps.exists() else None)
        return json.dumps(keys)

    @classmethod
    def execute(cls, rows, balance, target_total, clamp_min, clamp_max, anchor_row, model=None,
                clip=None, lora_stack=None) -> io.NodeOutput:
        with user_errors():
            if model is None:
                return list_stack(cls.hidden.unique_id, rows, lora_stack, balance, target_total,
                                  (clamp_min, clamp_max), anchor_row, clip)
            stack = build_stack(model, clip, parse_rows(rows), lora_stack, balance, target_total,
                                (clamp_min, clamp_max), anchor_row - 1 if anchor_row > 0 else None)
        NodeProgress(cls.hidden.unique_id).text(stack.report)
        return io.NodeOutput(stack.model, stack.clip, stack.lora_stack, stack.trigger_words,
                             ui={"text": [stack.report], "likeness_stack": stack.rows_ui})


def list_stack(node_id, rows, lora_stack, balance, target_total, clamp, anchor_row, clip) -> io.NodeOutput:
    """No model connected: balance the rows and hand them on as LORA_STACK, for a sampler that applies them."""
    rows = parse_rows(rows) + stack_rows(lora_stack)
    planned = plan_stack(rows, balance, target_total=target_total, clamp=clamp,
                         anchor=anchor_row - 1 if anchor_row > 0 else None, describe=describe_row,
                         sweeps=SweepResults(user_dir()), keys=[sweep_key(r) for r in rows])
    NodeProgress(node_id).text(planned.report)
    return io.NodeOutput(None, clip, planned.lora_stack, planned.trigger_words, ui={"text": [planned.report]})


def describe_row(name: str) -> LoraInfo:
    path = resolve_lora(name)
    if path is None:
        raise InputError(f"LoRA file {name!r} is not in models/loras; put it there or switch the row off")
    return describe_lora(path)


class AppliedStack:
    def __init__(self, model, clip, lora_stack, trigger_words, report, rows_ui):
        self.model, self.clip, self.lora_stack = model, clip, lora_stack
        self.trigger_words, self.report, self.rows_ui = trigger_words, report, rows_ui


def build_stack(model, clip, rows: list[StackRow], lora_stack, mode: str, target_total: float,
                clamp: tuple[float, float], anchor: int | None) -> AppliedStack:
    """Reads (or reuses) each LoRA, balances the strengths and applies them with comfy.sd.load_lora_for_models.

    A row none of whose keys fit this model (an SD 1.5 LoRA on FLUX, a LoRA of another width) is left out of
    the balance, the trigger words, the LORA_STACK and the journal, with the reason on its line."""
    rows = rows + stack_rows(lora_stack)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    weights = [model.model]                       # where the weights the LoRA keys name live
    if clip is not None:
        key_map = comfy.lora.model_lora_keys_clip(clip.cond_stage_model, key_map)
        weights.append(clip.cond_stage_model)
    loaded = [load_row(row, key_map, weights, mode == "effect") if row.on else None for row in rows]
    usable = [replace(row, on=False) if entry and entry["left_out"] else row for row, entry in zip(rows, loaded)]
    deltas = [entry["deltas"] if entry else [] for entry in loaded]
    if mode == "measured":
        balanced, decisions = balance_measured(usable, SweepResults(user_dir()), [sweep_key(r) for r in usable],
                                               target_total=target_total, clamp=clamp, anchor=anchor)
    else:
        balanced = balance_strengths(usable, mode, target_total=target_total, clamp=clamp, anchor=anchor,
                                     deltas=deltas if mode == "effect" else None)
        decisions = row_decisions(balanced, usable)
    applied, rows_ui = [], []
    out_model, out_clip = model.clone(), clip
    for i, (row, entry) in enumerate(zip(rows, loaded)):
        strength = balanced.strengths[i]
        clip_strength = _clip_strength(row, strength)
        if entry and strength != 0 and not entry["left_out"]:
            out_model, new_clip = comfy.sd.load_lora_for_models(out_model, out_clip, entry["sd"], strength,
                                                                clip_strength if out_clip is not None else 0)
            out_clip = new_clip if out_clip is not None else None
            applied.append((row.lora, strength, clip_strength))
        rows_ui.append({**_row_ui(i, row, entry, strength, i == balanced.anchor, balanced.overlaps.get(i)),
                        **decisions[i]})
    previous = list(model.model_options.get(STACK_OPTION, []))
    out_model.model_options[STACK_OPTION] = previous + [
        {"lora": name, "strength": s, "clip_strength": c} for name, s, c in applied]
    words = _trigger_words(rows, loaded, balanced.anchor)
    report = "\n".join([r["line"] for r in rows_ui] + [
        f"total {balanced.total:.2f}, {describe_total(balanced.total, target_total)} (mode {mode})"]
        + balanced.notes)
    return AppliedStack(out_model, out_clip, applied, ", ".join(words), report, rows_ui)


def sweep_key(row: StackRow) -> str | None:
    """How sweeps know a row's LoRA: its file's sha256 (measured mode)."""
    path = resolve_lora(row.lora) if row.on else None
    return lora_key(lora_sha256(path), row.lora) if path else None


def stack_rows(lora_stack) -> list[StackRow]:
    """Rows from a LORA_STACK input: [(lora_name, model_strength, clip_strength)] (other packs' type)."""
    rows = []
    for item in lora_stack or []:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            raise InputError(f"The lora_stack input has an entry {item!r}; expected (lora_name, model_strength, "
                             f"clip_strength)")
        name = str(item[0])
        if not name or name.lower() == "none":
            continue
        clip_strength = float(item[2]) if len(item) > 2 else float(item[1])
        rows.append(StackRow(name, float(item[1]), True, clip_strength, source="stack"))
    return rows


def resolve_lora(name: str) -> str | None:
    """The file for a LoRA name; `\\` and `/` both separate subfolders; a bare file name found in a
    subfolder also matches (shared workflows); absolute paths only inside the loras folders."""
    name = (name or "").strip()
    if not name:
        return None
    roots = folder_paths.get_folder_paths("loras")
    if os.path.isabs(name):
        return name if os.path.isfile(name) and any(is_inside(name, r) for r in roots) else None
    normal = name.replace("\\", "/")
    path = folder_paths.get_full_path("loras", normal)
    if path:
        return path
    base = normal.rsplit("/", 1)[-1]
    matches = [f for f in folder_paths.get_filename_list("loras") if f.replace("\\", "/").rsplit("/", 1)[-1] == base]
    return folder_paths.get_full_path("loras", matches[0]) if len(matches) == 1 else None


def load_row(row: StackRow, key_map: dict, weights: list, want_deltas: bool) -> dict:
    """The row's LoRA, read (or reused), and which of its modules change a weight of this model: the name must
    map to a weight and the factors' shapes must fit it (ComfyUI matches names only, then fails at patch
    time). When only some fit, only those are applied, so ComfyUI logs no shape error for the others."""
    path = resolve_lora(row.lora)
    if path is None:
        raise InputError(f"LoRA file {row.lora!r} is not in models/loras; put it there or switch the row off")
    (sd, info), from_disk = LORA_FILES.get(path, _read_lora)
    converted = comfy.lora_convert.convert_lora(dict(sd))
    modules = lora_modules(converted.keys())
    patches = comfy.lora.load_lora(converted, key_map, log_missing=False)
    fitting = {target: patch for target, patch in patches.items() if patch_fits(target, patch, weights)}
    applying = {m for m in modules if m in key_map and key_map[m] in fitting}
    named = sum(1 for m in modules if m in key_map and key_map[m] in patches)
    if applying and len(applying) < named:
        sd = {k: v for k, v in converted.items() if module_of(k) in applying}
    misfits = named - len(applying)
    return {"sd": sd, "info": info, "from_disk": from_disk, "modules": len(modules), "applies": len(applying),
            "misfits": misfits, "left_out": left_out_reason(info, len(applying), misfits),
            "deltas": low_rank_deltas(fitting) if want_deltas else []}


def weight_shape(weights: list, key: str) -> tuple[int, ...] | None:
    """The shape of the weight a LoRA key map names (model or text encoder), or None when neither has it;
    quantized weights keep their logical shape in `tensor_shape`. Looked up per patched key, so the cost
    follows the LoRA's size, not the model's."""
    for module in weights:
        try:
            tensor = comfy.utils.get_attr(module, key)
        except AttributeError:
            continue
        return tuple(getattr(tensor, "tensor_shape", None) or tensor.shape)
    return None


def patch_fits(target, patch, weights: list) -> bool:
    """Whether a loaded patch (a weight adapter, or a ("diff", (w,)) tuple) fits the weight it names."""
    key, offset = (target, None) if isinstance(target, str) else (target[0], target[1])
    shape = weight_shape(weights, key)
    if shape is None:
        return True                                   # a weight we cannot see: trusted by name, as ComfyUI does
    if isinstance(patch, tuple):
        kind, factors = patch[0], patch[1]
    else:
        kind, factors = getattr(patch, "name", ""), getattr(patch, "weights", ())
    return fits(kind, factors, target_shape(shape, offset))


def _read_lora(path: str) -> tuple[dict, LoraInfo]:
    info = describe_lora(path)        # first: an InputError naming the file for anything not safetensors
    try:
        sd = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise their own types; all mean "damaged"
        raise InputError(f"{path} could not be read as a LoRA ({exc}); re-download it") from None
    if info.format == "xlabs":
        # ComfyUI has the XLabs rename table but applies it only to USO files; core LoraLoader ignores the rest
        sd = comfy.lora_convert.convert_uso_lora(sd)
    return sd, info


def low_rank_deltas(patches: dict) -> list[LowRankDelta]:
    """The plain LoRA patches as (B, A, α/r, first row) for the effect mode; LoCon/DoRA/LoHa are skipped."""
    deltas = []
    for target, adapter in patches.items():
        weights = getattr(adapter, "weights", None)
        if type(adapter).__name__ != "LoRAAdapter" or weights is None:
            continue
        up, down, alpha, mid, dora = weights[:5]
        if mid is not None or dora is not None:
            continue
        key, row_start = (target, 0) if isinstance(target, str) else (target[0], target[1][1])
        if not isinstance(target, str) and target[1][0] != 0:
            continue
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        deltas.append(LowRankDelta(key, up.flatten(start_dim=1), down.flatten(start_dim=1), scale, row_start))
    return deltas


def _clip_strength(row: StackRow, strength: float) -> float:
    if row.clip_strength is None:
        return strength
    return row.clip_strength * strength / row.strength if row.strength else row.clip_strength


def _trigger_words(rows, loaded, anchor) -> list[str]:
    order = ([anchor] if anchor is not None else []) + [i for i in range(len(rows)) if i != anchor]
    words: list[str] = []
    for i in order:
        if loaded[i] and not loaded[i]["left_out"]:
            words += [w for w in loaded[i]["info"].trigger_words if w.lower() not in {x.lower() for x in words}]
    return words


def left_out_reason(info: LoraInfo, applies: int, misfits: int) -> str:
    """Why a LoRA is left out of the stack, in the user's words ("" when it takes part): it changes nothing in
    this model, or it is an SD 1.5 / SDXL LoRA (whose text-encoder part may fit FLUX's clip_l, but was trained
    with SD's U-Net, so it would only nudge the prompt's encoding)."""
    if info.architecture == "sd":
        return SD_LEFT_OUT
    if applies:
        return ""
    if misfits:
        return (f"its keys name this model's weights but the shapes differ ({misfits} of them): a LoRA made for "
                "another model or width; use the version made for FLUX.1-dev")
    return "none of its keys name a weight of this model: a LoRA for another model"


def _row_ui(i, row, entry, strength, is_anchor, overlap) -> dict:
    ui = {"row": i + 1, "lora": row.lora, "on": row.on, "strength": row.strength, "effective": strength,
          "personal": is_anchor, "source": row.source}
    if entry is None:
        ui["line"] = f"{i + 1}. {row.lora}: off"
        return ui
    info = entry["info"]
    ui.update(format=info.format, format_label=info.format_label, keys=entry["modules"], keys_applied=entry["applies"],
              trigger_words=list(info.trigger_words), read_from_disk=entry["from_disk"], overlap=overlap)
    applies = f"{entry['applies']} of {entry['modules']} keys apply to this model"
    ui["left_out"] = entry["left_out"]
    if ui["left_out"]:
        ui["line"] = f"{i + 1}. {row.lora}: left out ({applies}) — {ui['left_out']}"
        return ui
    line = f"{i + 1}. {row.lora}{' (personal)' if is_anchor else ''}: {row.strength:g} → {strength:.3f}; " \
           f"{info.format_label}; {applies}"
    if entry["misfits"]:
        line += f" ({entry['misfits']} named a weight of another shape: left out)"
    if info.format == "xlabs":
        line += " (XLabs keys converted here; core LoraLoader ignores them)"
    if overlap is not None:
        line += f"; cos with personal {overlap:+.2f}"
    ui["line"] = line
    return ui


NODES = [LoraStackNode]

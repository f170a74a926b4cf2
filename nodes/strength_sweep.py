"""LikenessStrengthSweep: personal × style strengths generated, scored for likeness, and the balance recommended."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import folder_paths
import torch
from comfy_api.v0_0_2 import io
from comfy_execution.graph_utils import ExecutionBlocker

from ..likeness.dataset.dataset_prep import typed_folder
from ..likeness.errors import InputError
from ..likeness.generation.remote_generation import ASPECT_RATIOS
from ..likeness.generation.strength_sweep import TOLERANCE_OF, LoraRef, sweep_grid
from ..likeness.generation.sweep_pictures import contact_sheet, likeness_plot
from ..likeness.generation.sweep_runs import SweepRequest, run_sweep
from ..likeness.identity import BACKENDS, load_backend, reference_from_photos
from ..likeness.loras.lora_cache import file_key
from ..likeness.loras.lora_formats import describe_lora
from ..likeness.loras.lora_identity import stored_reference
from ..likeness.loras.strength_balance import StackRow, parse_rows
from ..likeness.loras.sweep_results import lora_sha256
from .flux_sampler import generate_image, journal_entry
from .host import NodeProgress, input_dir, user_dir, user_errors
from .lora_stack import EXAMPLE_ROWS, STACK_OPTION, build_stack, resolve_lora, stack_rows
from .types import Dataset, LoraStack

WHERE = ["auto", "replicate", "local"]
PROMPT = ("An analog portrait of a 40-year-old man with short hair and a trimmed beard, in a white shirt and a black "
          "suit jacket, gazing thoughtfully downward; low-key light, gray studio background, visible film grain")


class StrengthSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessStrengthSweep",
            display_name="Likeness Strength Sweep",
            category="Likeness",
            description="Finds the balance between your likeness and a style LoRA by measurement: generates a grid "
                        "of personal × style strengths (default 0.7–1.0 × 0.10–0.35, 4×4, plus your LoRA alone), "
                        "on Replicate (flux-dev-lora, 4 at a time) or on this machine, scores every image's "
                        "likeness to your photos, and recommends the strongest style that keeps it. Outputs a "
                        "contact sheet, a likeness-vs-style plot and the recommended LORA_STACK. Says the number of "
                        "images, cost and time before anything is paid; images already made are never made or "
                        "paid for again. LikenessLoraStack's `measured` mode uses the newest sweep of the same files.",
            inputs=[
                io.String.Input("rows", default=EXAMPLE_ROWS, multiline=True,
                                tooltip='The LoRAs, as on Likeness LoRA Stack: JSON [{"lora", "strength", "on"}] or '
                                        'one "file.safetensors, 0.9" per line. On Replicate a row may also be a '
                                        "Civitai / Hugging Face URL or a Replicate model."),
                io.Int.Input("personal_row", default=1, min=1, max=64,
                             tooltip="Which row is your personal LoRA (1 = the first)."),
                io.Int.Input("style_row", default=0, min=0, max=64,
                             tooltip="Which row is the style LoRA to sweep; 0 = the first other row that is on. "
                                     "Other rows keep their strength locally and are left out on Replicate."),
                io.Float.Input("personal_min", default=0.7, min=0.0, max=2.0, step=0.05,
                               tooltip="The lowest personal strength of the grid (the seed uses 0.9)."),
                io.Float.Input("personal_max", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="The highest personal strength."),
                io.Int.Input("personal_steps", default=4, min=1, max=8,
                             tooltip="How many personal strengths (rows); 1 keeps it fixed at personal_min."),
                io.Float.Input("style_min", default=0.10, min=0.0, max=2.0, step=0.01,
                               tooltip="The lowest style strength of the grid (the seed: 0.15–0.25)."),
                io.Float.Input("style_max", default=0.35, min=0.0, max=2.0, step=0.01,
                               tooltip="The highest style strength."),
                io.Int.Input("style_steps", default=4, min=1, max=8,
                             tooltip="How many style strengths (columns); 1 keeps it fixed at style_min."),
                io.String.Input("prompts", multiline=True, default=PROMPT,
                                tooltip="One prompt per line; every cell is generated for each prompt and seed. "
                                        "Ask for a visible face (portrait, half body): likeness needs one."),
                io.String.Input("trigger_words", default="",
                                tooltip="Your trigger word, put first in every prompt; empty: read from your "
                                        "LoRA file."),
                io.String.Input("seeds", default="1234",
                                tooltip="Fixed seeds, comma separated (each one multiplies the images)."),
                io.Combo.Input("where", options=WHERE, default="auto",
                               tooltip="replicate: flux-dev-lora with your LoRA + the style LoRA (paid per image). "
                                       "local: the connected model, clip and vae (the FLUX sampler's own code). "
                                       "auto: local when any of them is connected, else Replicate."),
                io.Float.Input("tolerance", default=5.0, min=0.0, max=50.0, step=0.5,
                               tooltip="How many likeness points (0–100) the style may cost and still be kept."),
                io.Combo.Input("tolerance_of", options=list(TOLERANCE_OF), default="personal only",
                               tooltip="personal only: measured from your LoRA alone (adds a style-0 column when "
                                       "the range has none). best cell: from the best cell of the grid."),
                io.Int.Input("steps", default=35, min=1, max=50, tooltip="Sampling steps (the seed: 35)."),
                io.Float.Input("guidance", default=2.75, min=0.0, max=10.0, step=0.05,
                               tooltip="FLUX guidance (the seed: 2.5–3)."),
                io.Int.Input("width", default=1024, min=16, max=4096, step=16,
                             tooltip="Image width on this machine."),
                io.Int.Input("height", default=1024, min=16, max=4096, step=16,
                             tooltip="Image height on this machine."),
                io.Combo.Input("aspect_ratio", options=ASPECT_RATIOS[:-1], default="1:1",
                               tooltip="The images' shape on Replicate."),
                io.Boolean.Input("go_fast", default=True,
                                 tooltip="flux-dev-lora's fast fp8 mode (its default); strengths are converted to "
                                         "its lora_scale either way."),
                io.Combo.Input("backend", options=list(BACKENDS), default="auto",
                               tooltip="The face model that scores likeness: dlib (offline, default) or ArcFace "
                                       "when its models are in models/insightface; auto picks ArcFace if present."),
                io.String.Input("reference_photos", default="",
                                tooltip="A folder of your photos (inside input/, or absolute) to score against; "
                                        "empty: the connected dataset, or the reference stored in your LoRA."),
                io.Model.Input("model", optional=True, tooltip="FLUX.1-dev (UNETLoader), for a local sweep."),
                io.Clip.Input("clip", optional=True, tooltip="The FLUX text encoders, for a local sweep."),
                io.Vae.Input("vae", optional=True, tooltip="The FLUX VAE, for a local sweep."),
                LoraStack.Input("lora_stack", optional=True,
                                tooltip="A LORA_STACK whose rows are added after `rows`."),
                Dataset.Input("dataset", optional=True,
                              tooltip="The prepared training set: the photos likeness is scored against."),
            ],
            outputs=[
                io.Image.Output(display_name="contact_sheet",
                                tooltip="Every cell's images with the strengths on the axes and the likeness "
                                        "printed on each cell; the recommended one framed."),
                io.Image.Output(display_name="plot",
                                tooltip="Likeness against style strength, one line per personal strength."),
                LoraStack.Output(display_name="LORA_STACK",
                                 tooltip="The recommended stack (personal, style). When no cell keeps likeness "
                                         "there is none, and what is connected here does not run."),
                io.String.Output(display_name="recommendation", tooltip="The recommendation, in words."),
                io.String.Output(display_name="scores", tooltip="The grid's likeness scores as JSON."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, rows=None) -> bool | str:
        if not isinstance(rows, str):
            return True
        try:
            missing = [r.lora for r in parse_rows(rows) if r.on and is_file_name(r.lora) and not resolve_lora(r.lora)]
        except InputError as exc:
            return str(exc)
        if missing:
            return f"LoRA file(s) not found in models/loras: {', '.join(missing)}. Put them there or fix the name."
        return True

    @classmethod
    def fingerprint_inputs(cls, rows="", reference_photos="", **kwargs) -> str:
        # a LoRA file or a reference photo replaced under the same name must run the sweep again
        try:
            paths = [resolve_lora(r.lora) for r in parse_rows(rows or "")]
        except InputError:
            return ""
        keys = [list(file_key(p)) if p else None for p in paths]
        return json.dumps([keys, folder_state(reference_photos)])

    @classmethod
    def execute(cls, rows, personal_row, style_row, personal_min, personal_max, personal_steps, style_min,
                style_max, style_steps, prompts, trigger_words, seeds, where, tolerance, tolerance_of, steps,
                guidance, width, height, aspect_ratio, go_fast, backend, reference_photos, model=None, clip=None,
                vae=None, lora_stack=None, dataset=None) -> io.NodeOutput:
        with user_errors():
            all_rows = parse_rows(rows) + stack_rows(lora_stack)
            personal, style = pick_rows(all_rows, personal_row, style_row)
            connected = [x is not None for x in (model, clip, vae)]
            local = where == "local" or (where == "auto" and any(connected))
            if local and not all(connected):
                raise InputError("A local sweep needs model, clip and vae all connected (or set where to replicate "
                                 "and disconnect them)")
            scorer = load_backend(backend, folder_paths.models_dir)
            reference = sweep_reference(dataset, reference_photos, all_rows[personal], scorer)
            request = SweepRequest(
                personal=lora_ref(all_rows[personal]), style=lora_ref(all_rows[style]),
                grid=sweep_grid((personal_min, personal_max, personal_steps), (style_min, style_max, style_steps),
                                tolerance_of),
                prompts=tuple(line.strip() for line in prompts.splitlines() if line.strip()),
                seeds=parse_seeds(seeds), where="local" if local else "replicate",
                trigger_words=trigger_words.strip() or personal_trigger(all_rows[personal]), steps=steps,
                guidance=guidance, width=width, height=height, aspect_ratio=aspect_ratio, go_fast=go_fast,
                tolerance=tolerance, tolerance_of=tolerance_of,
                others=tuple((r.lora, lora_ref(r).key, r.strength) for i, r in enumerate(all_rows)
                             if r.on and i not in (personal, style)) if local else (),
                left_out=() if local else tuple(r.lora for i, r in enumerate(all_rows)
                                                if r.on and i not in (personal, style)),
                local_identity=weights_identity(model, clip, vae) if local else "")
            render = LocalRender(model, clip, vae, all_rows, personal, style, request) if local else None
            result = run_sweep(request, user_dir=user_dir(), reference=reference, backend=scorer,
                               progress=NodeProgress(cls.hidden.unique_id), render=render, locate=resolve_lora)
        sheet = torch.from_numpy(contact_sheet(result))[None]
        plot = torch.from_numpy(likeness_plot(result))[None]
        stack = result.lora_stack() or ExecutionBlocker(None)       # no pick: what builds on it does not run
        return io.NodeOutput(sheet, plot, stack, result.recommendation.text, json.dumps(result.data()),
                             ui={"text": [result.text()]})


class LocalRender:
    """One sweep image on this machine: the stack at the cell's strengths, then LikenessFluxSampler's sampling."""

    def __init__(self, model, clip, vae, rows: list[StackRow], personal: int, style: int, request: SweepRequest):
        self.model, self.clip, self.vae, self.rows = model, clip, vae, rows
        self.personal, self.style, self.request = personal, style, request

    def __call__(self, job):
        strengths = {self.personal: job.personal, self.style: job.style}
        rows = [replace(row, strength=strengths.get(i, row.strength)) for i, row in enumerate(self.rows)]
        stacked = build_stack(self.model, self.clip, rows, None, "off", 1.2, (0.15, 0.25), self.personal)
        r = self.request
        entry = journal_entry(stacked.model, job.prompt, r.trigger_words, job.seed, r.steps, r.guidance, r.width,
                              r.height, "euler", "simple", 1.15, 0.5, None)
        images, _ = generate_image(stacked.model, stacked.clip, self.vae, entry)
        return images[0].float().cpu().numpy(), entry


def pick_rows(rows: list[StackRow], personal_row: int, style_row: int) -> tuple[int, int]:
    """(personal, style) row indices, counted over all rows as typed; both must be switched on."""
    personal = personal_row - 1
    if not 0 <= personal < len(rows) or not rows[personal].on:
        raise InputError(f"personal_row is {personal_row}, but row {personal_row} is not a LoRA row that is on "
                         f"({len(rows)} rows): point it at your personal LoRA")
    others = [i for i, row in enumerate(rows) if row.on and i != personal]
    style = style_row - 1 if style_row > 0 else (others[0] if others else -1)
    if style not in others:
        raise InputError("The sweep needs a style LoRA row that is on besides your personal one"
                         + (f" (style_row {style_row} is not one)" if style_row > 0 else ""))
    return personal, style


def lora_ref(row: StackRow) -> LoraRef:
    path = resolve_lora(row.lora) if is_file_name(row.lora) else None
    return LoraRef(row.lora, lora_sha256(path) if path else "")


def is_file_name(name: str) -> bool:
    """A row naming a file in models/loras (not a URL or a Replicate model, which only Replicate fetches)."""
    return not name.startswith(("http://", "https://")) and (
        name.lower().endswith((".safetensors", ".ckpt", ".pt", ".bin")) or "/" not in name)


def personal_trigger(row: StackRow) -> str:
    path = resolve_lora(row.lora) if is_file_name(row.lora) else None
    return ", ".join(describe_lora(path).trigger_words) if path else ""


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in text.replace(";", ",").split(",") if s.strip()))
    except ValueError:
        raise InputError(f"seeds must be whole numbers separated by commas, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise InputError("Give at least one seed (0 or more), e.g. 1234 or 1234, 5678")
    return seeds


def sweep_reference(dataset, folder: str, personal: StackRow, backend):
    """Whom likeness is measured against: the dataset, the photo folder, or the reference in the LoRA file."""
    cache = user_dir() / "identity"
    if dataset is not None:
        return reference_from_photos(dataset, backend, cache)
    if folder.strip():
        return reference_from_photos(typed_folder(folder.strip(), input_dir(), "reference photo folder", "input"),
                                     backend, cache)
    path = resolve_lora(personal.lora) if is_file_name(personal.lora) else None
    stored = stored_reference(path) if path else None
    if stored is not None and stored.backend == backend.name:
        return stored
    raise InputError("The sweep scores likeness against your photos: connect the prepared dataset, or set "
                     "reference_photos to the folder of your photos (inside input/)"
                     + (f" — your LoRA's stored reference was made with {stored.backend}, not {backend.name}"
                        if stored is not None else ""))


def folder_state(text: str) -> list:
    try:
        folder = typed_folder(text.strip(), input_dir(), "reference photo folder", "input") if text.strip() else None
    except InputError:
        return []
    if folder is None or not folder.is_dir():
        return []
    return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in folder.iterdir() if p.is_file())


def weights_identity(*parts) -> str:
    """What identifies the model, text encoders and VAE of a local image (its journal key's `model`): each one's
    class, parameter shapes and the original values of a few tensors, plus the LoRAs already on the model."""
    digest = hashlib.sha256()
    for part in parts:
        module = _module_of(part)
        digest.update(type(module).__name__.encode())
        backup = getattr(getattr(part, "patcher", part), "backup", {}) or {}
        named = list(module.named_parameters()) if module is not None else []
        for name, tensor in named:
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
        for name, tensor in named[:4] + named[-4:]:
            original = backup.get(name)
            sample = getattr(original, "weight", tensor) if original is not None else tensor
            try:
                digest.update(sample.detach().flatten()[:64].float().cpu().numpy().tobytes())
            except (RuntimeError, TypeError, ValueError):
                pass                                 # a quantised tensor: its shape above has to do
        options = getattr(part, "model_options", None) or {}
        digest.update(json.dumps(options.get(STACK_OPTION, []), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _module_of(part):
    if hasattr(part, "cond_stage_model"):            # CLIP
        return part.cond_stage_model
    if hasattr(part, "first_stage_model"):           # VAE
        return part.first_stage_model
    return getattr(part, "model", None)              # ModelPatcher


NODES = [StrengthSweep]

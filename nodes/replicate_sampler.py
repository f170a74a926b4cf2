"""LikenessReplicateFluxSampler: FLUX.1-dev with the personal LoRA on Replicate — no GPU, no local model file."""
from __future__ import annotations

import uuid
from dataclasses import replace

import folder_paths
import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..likeness.errors import InputError
from ..likeness.generation.candidates import generate_candidates, score_candidates
from ..likeness.generation.remote_generation import (ASPECT_RATIOS, OUTPUT_FORMATS, RUN_ON, GenerationSettings,
                                                     refuse_url_tokens, stack_rows)
from ..likeness.generation.sampler_scores import check_keep, find_scorer, personal_lora_files
from ..likeness.generation.seed_journal import SeedJournal
from .flux_sampler import MAX_CANDIDATES, save_images
from .host import NodeProgress, identity_cache_dir, models_dir, user_dir, user_errors
from .lora_stack import resolve_lora
from .types import Dataset, LoraStack, Training


class ReplicateFluxSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessReplicateFluxSampler",
            display_name="Likeness Replicate FLUX Sampler",
            category="Likeness",
            description="Generates with your personal FLUX.1-dev LoRA on Replicate, for machines without a GPU: "
                        "runs your trained model (connect the trainer's training, or set version) or "
                        "black-forest-labs/flux-dev-lora with lora_weights, plus one extra LoRA from a LORA_STACK. "
                        "Seed's settings by default (35 steps, guidance 2.75, trigger word first). Costs money: "
                        "the estimate is shown before and the real cost after; the same prompt, seed and inputs "
                        "queued again reuse the stored image instead of paying again (unless rerun is on). "
                        "Every image is scored for likeness to you (0–100, on this machine) when a reference is "
                        "known: your photos connected, or the one your personal LoRA carries; candidates > 1 "
                        "makes several and gives the most alike first. "
                        "The API token comes from REPLICATE_API_TOKEN (never a widget).",
            inputs=[
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What to draw. Detailed, natural sentences work best with FLUX; the "
                                        "trigger word is put first for you."),
                io.String.Input("trigger_words", default="",
                                tooltip="Your LoRA's trigger word (empty: the connected training's). The first "
                                        "one goes at the start of the prompt."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The seed: the same seed and settings give the same image (and reuse the "
                                     "stored one instead of paying again)."),
                io.Int.Input("steps", default=35, min=1, max=50,
                             tooltip="Inference steps; the seed uses at least 35 (Replicate allows up to 50)."),
                io.Float.Input("guidance", default=2.75, min=0.0, max=10.0, step=0.05,
                               tooltip="FLUX guidance; the seed prefers 2.5–3 (lower looks more realistic)."),
                io.Combo.Input("aspect_ratio", options=ASPECT_RATIOS, default="1:1",
                               tooltip="The image's shape (about 1 megapixel). custom uses width and height "
                                       "(trained versions only)."),
                io.Int.Input("width", default=1024, min=256, max=1440, step=16,
                             tooltip="Width in pixels, used only when aspect_ratio is custom."),
                io.Int.Input("height", default=1024, min=256, max=1440, step=16,
                             tooltip="Height in pixels, used only when aspect_ratio is custom."),
                io.Int.Input("num_outputs", default=1, min=1, max=4,
                             tooltip="Images per run (each one is paid for)."),
                io.Combo.Input("output_format", options=OUTPUT_FORMATS, default="png",
                               tooltip="The format Replicate returns; png is lossless."),
                io.Float.Input("lora_strength", default=0.9, min=-2.0, max=5.0, step=0.05,
                               tooltip="Your LoRA's strength in ComfyUI terms (the seed: 0.9): the image gets "
                                       "what a local LoRA at this strength gives, on every Replicate path. The "
                                       "node sends Replicate's lora_scale for the path the model really takes: "
                                       "fp8 (go_fast) multiplies the scale by 1.5, so 0.9 is sent as 0.6; bf16 "
                                       "on your trained version applies one LoRA's scale twice, so 0.9 is sent "
                                       "as √0.9 = 0.949 (with an extra LoRA each applies once: 0.9); "
                                       "flux-dev-lora in bf16 takes it as it is. A custom aspect ratio runs in "
                                       "bf16 even with go_fast on. The report shows both numbers. A personal "
                                       "row in the LORA_STACK overrides it."),
                io.Boolean.Input("go_fast", default=False,
                                 tooltip="Off (your trained version's own default): the original bf16 weights, "
                                         "closest to a local ComfyUI run. On: Replicate's fp8 mode, faster (and "
                                         "cheaper per second on a trained version); flux-dev-lora's own default. "
                                         "A custom aspect ratio always runs in bf16. Strengths are converted for "
                                         "the path either way."),
                io.Combo.Input("run_on", options=RUN_ON, default="auto",
                               tooltip="auto: lora_weights set → flux-dev-lora, else your trained version. "
                                       "trained version: your destination model's version. flux-dev-lora: "
                                       "the official model with your LoRA as lora_weights."),
                io.String.Input("version", default="",
                                tooltip="Your trained model's version, owner/name:<version id> (the trainer "
                                        "shows it); empty: the connected training's."),
                io.String.Input("lora_weights", default="",
                                tooltip="For flux-dev-lora: a Replicate model (owner/name or owner/name/<version>), "
                                        "a Hugging Face or Civitai URL, or a .safetensors URL."),
                io.Boolean.Input("rerun", default=False,
                                 tooltip="On: pay for a new prediction even when these exact inputs were "
                                         "generated before. Off: reuse the stored image."),
                Training.Input("training", optional=True,
                               tooltip="The trainer's training record: its version and trigger word are used."),
                LoraStack.Input("lora_stack", optional=True,
                                tooltip="A LORA_STACK: its first non-personal row becomes Replicate's one extra "
                                        "LoRA (rows must be URLs, Replicate models, or files with a "
                                        ".civitai.info); the others are reported as left out."),
                io.Int.Input("candidates", default=1, min=1, max=MAX_CANDIDATES, optional=True,
                             tooltip="Best of N: this many images, scored for likeness and given most alike "
                                     "first. They are packed into as few predictions as the model allows (4 "
                                     "images each on flux-dev-lora and trained versions; seeds seed, seed+1, …), "
                                     "so num_outputs is not used. Every image is paid for: the cost of all of "
                                     "them is shown before. Each one is journaled and stored: queuing them again "
                                     "pays nothing."),
                io.Int.Input("keep", default=0, min=0, max=MAX_CANDIDATES, optional=True,
                             tooltip="How many images go out of IMAGE, best first; 0 = all of them, most alike "
                                     "first. Picking fewer needs a reference person."),
                Dataset.Input("dataset", optional=True,
                              tooltip="Your photos (the prepared dataset), whom each image is scored against. "
                                      "Without it the reference stored in your personal LoRA (the training's, or "
                                      "a stack row's) is used; without either the images are not scored."),
                io.String.Input("filename_prefix", default="likeness/replicate", optional=True,
                                tooltip="The sampler saves each image in ComfyUI's output folder under this "
                                        "prefix, as a PNG whose metadata holds that image's own journal entry "
                                        "with its likeness score (and the workflow, as Save Image does). Empty: "
                                        "not saved (the image stays in the journal and the sampler's store)."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The generated image(s), as a batch, most alike "
                                                               "first when they were scored."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, lora_weights, version) -> bool | str:
        # A token pasted into a URL would be saved into the workflow and the PNG: refused when queued.
        try:
            refuse_url_tokens([("lora_weights", lora_weights if isinstance(lora_weights, str) else ""),
                               ("version", version if isinstance(version, str) else "")])
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, rerun=False, **kwargs) -> str:
        return uuid.uuid4().hex if rerun else ""      # rerun: run every time, whatever ComfyUI has cached

    @classmethod
    def execute(cls, prompt, trigger_words, seed, steps, guidance, aspect_ratio, width, height, num_outputs,
                output_format, lora_strength, go_fast, run_on, version, lora_weights, rerun, training=None,
                lora_stack=None, candidates=1, keep=0, dataset=None,
                filename_prefix="likeness/replicate") -> io.NodeOutput:
        settings = GenerationSettings(prompt, trigger_words, seed, steps, guidance, aspect_ratio, width, height,
                                      num_outputs, output_format, lora_strength, go_fast, run_on, version,
                                      lora_weights, rerun)
        progress = NodeProgress(cls.hidden.unique_id)
        with user_errors():
            scorer, about = find_scorer(photos=dataset, lora_files=personal_lora_files(
                training=training, stack_names=[row[0] for row in stack_rows(lora_stack)], version=version,
                locate=resolve_lora, all_loras=all_lora_files), models_dir=models_dir(),
                cache_dir=identity_cache_dir(), progress=progress)
            check_keep(candidates if candidates > 1 else num_outputs, keep, scorer)
            made = generate_candidates(settings, candidates, user_dir=user_dir(), training=training, stack=lora_stack,
                                       locate=resolve_lora, progress=progress)
            scored = score_candidates(made, scorer, SeedJournal(user_dir()), progress)
            batch = image_batch([scored.images[i] for i in scored.order(keep)])
        everything = scored.order()
        # each image saved with its own entry and score (the entry's `images` are the sampler's store: not in a PNG)
        saved = [save_images(image_batch([scored.images[i]]), filename_prefix, replace(scored.entries[i], images=[]),
                             cls.hidden.prompt, cls.hidden.extra_pnginfo) if scored.entries[i] else []
                 for i in everything]
        text = scored.report(made, about, keep)
        # likeness_journal: each image's entry id, most alike first, as the local sampler gives its entries (the
        # playground and the canvas's journal panel find the images by them; a reused result names the entries
        # that paid for it)
        return io.NodeOutput(batch, ui={"text": [text], "images": [f for files in saved for f in files],
                                        "likeness_journal": [{"id": scored.entries[i].id if scored.entries[i] else "",
                                                              "reused": scored.reused[i]} for i in everything]})


def all_lora_files() -> list[str]:
    return [path for name in folder_paths.get_filename_list("loras")
            if (path := folder_paths.get_full_path("loras", name))]


def image_batch(images: list[np.ndarray]) -> torch.Tensor:
    sizes = {img.shape for img in images}
    if len(sizes) != 1:
        raise InputError(f"Replicate returned images of different sizes ({', '.join(map(str, sizes))}); "
                         "generate them one at a time.")
    return torch.from_numpy(np.stack(images))


NODES = [ReplicateFluxSampler]

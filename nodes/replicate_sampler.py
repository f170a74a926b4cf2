"""LikenessReplicateFluxSampler: FLUX.1-dev with the personal LoRA on Replicate — no GPU, no local model file."""
from __future__ import annotations

import uuid

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..likeness.errors import InputError
from ..likeness.remote_generation import ASPECT_RATIOS, OUTPUT_FORMATS, RUN_ON, GenerationSettings, generate
from .host import NodeProgress, user_dir, user_errors
from .lora_stack import resolve_lora
from .types import LoraStack, Training


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
                               tooltip="Your LoRA's strength in ComfyUI terms (the seed: 0.9). It is converted "
                                       "to Replicate's lora_scale, which means something else (×1.5 with "
                                       "go_fast on flux-dev-lora; squared on a trained version): the report "
                                       "shows both. A personal row in the LORA_STACK overrides it."),
                io.Boolean.Input("go_fast", default=True,
                                 tooltip="Replicate's fast fp8 mode where the model has it (flux-dev-lora: on by "
                                         "default). Off: the original bf16 weights, slower, closest to a local "
                                         "ComfyUI run."),
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
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The generated image(s), as a batch."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, rerun=False, **kwargs) -> str:
        return uuid.uuid4().hex if rerun else ""      # rerun: run every time, whatever ComfyUI has cached

    @classmethod
    def execute(cls, prompt, trigger_words, seed, steps, guidance, aspect_ratio, width, height, num_outputs,
                output_format, lora_strength, go_fast, run_on, version, lora_weights, rerun, training=None,
                lora_stack=None) -> io.NodeOutput:
        settings = GenerationSettings(prompt, trigger_words, seed, steps, guidance, aspect_ratio, width, height,
                                      num_outputs, output_format, lora_strength, go_fast, run_on, version,
                                      lora_weights, rerun)
        with user_errors():
            result = generate(settings, user_dir=user_dir(), training=training, stack=lora_stack,
                              locate=resolve_lora, progress=NodeProgress(cls.hidden.unique_id))
            images = image_batch(result.images)
        return io.NodeOutput(images, ui={"text": [result.summary()]})


def image_batch(images: list[np.ndarray]) -> torch.Tensor:
    sizes = {img.shape for img in images}
    if len(sizes) != 1:
        raise InputError(f"Replicate returned images of different sizes ({', '.join(map(str, sizes))}); "
                         "generate them one at a time.")
    return torch.from_numpy(np.stack(images))


NODES = [ReplicateFluxSampler]

"""LikenessFluxSampler: FLUX.1-dev text-to-image with the seed's settings, and the seed journal nodes.

Sampling is the core custom-sampler graph (CLIPTextEncode → FluxGuidance → ModelSamplingFlux →
BasicGuider → RandomNoise → BasicScheduler → SamplerCustomAdvanced → VAEDecode) written with public
comfy functions, so the same seed gives the same pixels as that graph.
"""
from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import latent_preview
import node_helpers
import numpy as np
import torch
from comfy.cli_args import args
from comfy_api.v0_0_2 import io
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..likeness.errors import InputError, LikenessError
from ..likeness.generation.sampler_scores import check_keep, find_scorer, ranked, ranking_text
from ..likeness.generation.seed_journal import JournalEntry, SeedJournal, nth_seed, put_trigger_first
from ..likeness.identity import ImageScore
from ..likeness.progress import Interrupted
from .host import NodeProgress, identity_cache_dir, models_dir, user_dir, user_errors
from .lora_stack import STACK_OPTION, resolve_lora
from .types import Dataset, LoraStack
from .users import prompt_user

JournalEntryType = io.Custom("LIKENESS_JOURNAL_ENTRY")
MAX_CANDIDATES = 16


class FluxSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessFluxSampler",
            display_name="Likeness FLUX Sampler",
            category="Likeness",
            description="Generates an image with FLUX.1-dev on this machine using the seed's settings (35 steps, "
                        "guidance 2.75, euler/simple), with your trigger word first in the prompt. Every image's "
                        "prompt, seed, settings and LoRA stack go into the seed journal, and the sampler saves "
                        "each image as a PNG that carries its own journal entry, so a good one can be made again "
                        "(Likeness Journal Replay). Every image is scored for likeness to you (0–100, on this "
                        "machine) when a reference is known: your photos connected, or the one your personal "
                        "LoRA carries. candidates > 1 makes several seeds and gives the most alike first.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1-dev, usually with LoRAs applied by Likeness LoRA Stack."),
                io.Clip.Input("clip", tooltip="The FLUX text encoders (DualCLIPLoader: clip_l + t5xxl, type flux)."),
                io.Vae.Input("vae", tooltip="The FLUX VAE (ae.safetensors)."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What to draw. Detailed, natural sentences work best with FLUX."),
                io.String.Input("trigger_words", default="",
                                tooltip="The LoRAs' trigger words (connect the stack's trigger_words). The first "
                                        "one is put at the start of the prompt when it is not already there."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The noise seed: the same seed and settings give the same image."),
                io.Int.Input("steps", default=35, min=1, max=200,
                             tooltip="Sampling steps; the seed uses at least 35."),
                io.Float.Input("guidance", default=2.75, min=0.0, max=100.0, step=0.05,
                               tooltip="FLUX guidance; the seed prefers 2.5–3 (lower looks more realistic)."),
                io.Int.Input("width", default=1024, min=16, max=16384, step=16, tooltip="Image width in pixels."),
                io.Int.Input("height", default=1024, min=16, max=16384, step=16, tooltip="Image height in pixels."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                               tooltip="The sampler (euler is the usual FLUX choice)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple",
                               tooltip="The noise schedule (simple is the usual FLUX choice)."),
                io.Float.Input("max_shift", default=1.15, min=0.0, max=100.0, step=0.01,
                               tooltip="FLUX's resolution-dependent shift at 4096 image tokens."),
                io.Float.Input("base_shift", default=0.5, min=0.0, max=100.0, step=0.01,
                               tooltip="FLUX's shift at 256 image tokens."),
                JournalEntryType.Input("replay", optional=True,
                                       tooltip="A journal entry from Likeness Journal Replay: its prompt, seed "
                                               "and settings are used instead of the widgets above."),
                io.String.Input("filename_prefix", default="likeness/flux", optional=True,
                                tooltip="The sampler saves each image in ComfyUI's output folder under this "
                                        "prefix, as a PNG whose metadata holds that image's own journal entry "
                                        "(and the workflow, as Save Image does). Empty: not saved (the image is "
                                        "still in the journal). A Save Image after the sampler saves a copy "
                                        "without the entry."),
                io.Int.Input("candidates", default=1, min=1, max=MAX_CANDIDATES, optional=True,
                             tooltip="Best of N: generate this many images (seeds seed, seed+1, …), score each "
                                     "for likeness and give them most alike first. Each is saved and journaled "
                                     "with its score. Each costs a full sampling run."),
                io.Int.Input("keep", default=0, min=0, max=MAX_CANDIDATES, optional=True,
                             tooltip="How many of the candidates go out of IMAGE and LATENT, best first; 0 = all "
                                     "of them, most alike first. Picking fewer needs a reference person."),
                Dataset.Input("dataset", optional=True,
                              tooltip="Your photos (the prepared dataset), whom each image is scored against. "
                                      "Without it the stack's personal LoRA's stored reference is used; without "
                                      "either the images are not scored."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The decoded image."),
                io.Latent.Output(display_name="LATENT", tooltip="The sampled latent, before decoding."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,   # it saves its images (each with its own journal entry) and shows them
        )

    @classmethod
    def execute(cls, model, clip, vae, prompt, trigger_words, seed, steps, guidance, width, height,
                sampler_name, scheduler, max_shift, base_shift, replay=None,
                filename_prefix="likeness/flux", candidates=1, keep=0, dataset=None) -> io.NodeOutput:
        progress = NodeProgress(cls.hidden.unique_id)
        with user_errors():
            if clip is None:
                raise InputError("The clip input is empty: connect DualCLIPLoader (clip_l + t5xxl, type flux)")
            first = journal_entry(model, prompt, trigger_words, seed, steps, guidance, width, height,
                                  sampler_name, scheduler, max_shift, base_shift, replay)
            scorer, about = find_scorer(photos=dataset, lora_files=stack_files(first.stack), models_dir=models_dir(),
                                        cache_dir=identity_cache_dir(), progress=progress)
            check_keep(candidates, keep, scorer)
        made = []
        for n in range(candidates):
            entry = first if n == 0 else candidate_entry(first, n)
            with user_errors():
                if n and progress.interrupted():
                    raise Interrupted(f"Stopped after {n} of {candidates} candidates (they are in the seed journal)")
            made.append(cls.make_one(model, clip, vae, entry, replay, filename_prefix, scorer, progress,
                                     f"candidate {n + 1} of {candidates}: " if candidates > 1 else ""))
        scores = [m.score for m in made]
        order = ranked(scores, keep)
        images = torch.cat([made[i].images for i in order])
        latent = {"samples": torch.cat([made[i].latent["samples"] for i in order])}
        everything = ranked(scores)
        text = "\n".join([m.entry.summary() for m in made] + [about]
                         + ([ranking_text([f"seed {m.entry.seed}" for m in made], scores, order)] if candidates > 1
                            else []))
        return io.NodeOutput(images, latent, ui={"text": [text],
                                                 "likeness_journal": [made[i].entry.to_dict() for i in everything],
                                                 "images": [s for i in everything for s in made[i].saved]})

    @classmethod
    def make_one(cls, model, clip, vae, entry: JournalEntry, replay, filename_prefix, scorer, progress,
                 which: str) -> Candidate:
        """One image through the one local generation path, then scored, saved with its entry and journaled."""
        images, latent = generate_image(model, clip, vae, entry)
        entry.extra["note"] = stack_note(entry, replay)
        score = None
        if scorer is not None:
            progress.text(f"{which}scoring the image's likeness…")
            with user_errors():
                (score,) = scorer.score([images[0].float().cpu().numpy()])
            entry.likeness = scorer.record(score)
        # Each image carries its own entry: the prompt's shared extra_pnginfo would give every image of the
        # prompt the entry of whichever sampler ran last (two samplers, or one run over a list of seeds).
        saved = save_images(images, filename_prefix, entry, cls.hidden.prompt, cls.hidden.extra_pnginfo)
        entry.images = [f"{s['subfolder']}/{s['filename']}" if s["subfolder"] else s["filename"] for s in saved]
        SeedJournal(user_dir(), prompt_user()).record(entry)
        return Candidate(entry, images, latent, score, saved)


@dataclass
class Candidate:
    entry: JournalEntry
    images: torch.Tensor
    latent: dict
    score: ImageScore | None
    saved: list[dict]


def candidate_entry(first: JournalEntry, n: int) -> JournalEntry:
    """The n-th candidate: the first one's settings with the n-th next seed (a new entry of its own)."""
    return JournalEntry(**{**first.settings(), "seed": nth_seed(first.seed, n)}, replay_of=first.replay_of)


def stack_files(stack: list[dict]) -> list[str]:
    """The LoRA files of a journal entry's stack, in its order (the personal LoRA's reference is looked for there)."""
    return [path for row in stack if row.get("strength") and (path := resolve_lora(str(row.get("lora", ""))))]


def save_images(images: torch.Tensor, filename_prefix: str, entry: JournalEntry, prompt, extra_pnginfo) -> list[dict]:
    """The images as PNGs in ComfyUI's output folder, each with the entry (plus the prompt and the workflow, as
    core Save Image writes them); nothing when the prefix is empty. No metadata under --disable-metadata."""
    prefix = (filename_prefix or "").strip()
    if not prefix:
        return []
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_output_directory(), images[0].shape[1], images[0].shape[0])
    saved = []
    for batch_number, image in enumerate(images):
        metadata = None
        if not args.disable_metadata:
            metadata = PngInfo()
            if prompt is not None:
                metadata.add_text("prompt", json.dumps(prompt))
            for key, value in (extra_pnginfo or {}).items():
                if key != "likeness":
                    metadata.add_text(key, json.dumps(value))
            metadata.add_text("likeness", json.dumps(entry.to_dict()))
        pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
        file = f"{name.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        Image.fromarray(pixels).save(os.path.join(folder, file), pnginfo=metadata, compress_level=4)
        saved.append({"filename": file, "subfolder": subfolder, "type": "output"})
        counter += 1
    return saved


def journal_entry(model, prompt, trigger_words, seed, steps, guidance, width, height, sampler_name,
                  scheduler, max_shift, base_shift, replay: JournalEntry | None) -> JournalEntry:
    stack = list(model.model_options.get(STACK_OPTION, []))
    if replay is not None:
        settings = replay.settings()
        settings.pop("extra", None)
        return JournalEntry(**{**settings, "stack": stack, "source": "local"}, replay_of=replay.id)
    return JournalEntry(prompt=put_trigger_first(prompt, trigger_words), seed=seed, steps=steps,
                        guidance=guidance, width=width, height=height, sampler=sampler_name, scheduler=scheduler,
                        max_shift=max_shift, base_shift=base_shift, stack=stack, trigger_words=trigger_words)


def generate_image(model, clip, vae, entry: JournalEntry) -> tuple[torch.Tensor, dict]:
    """The image (and latent) of a journal entry's settings: the one local generation path, which the sampler
    and the strength sweep both call."""
    latent = sample_flux(model, clip, entry)
    return decode(vae, latent), latent


def sample_flux(model, clip, entry: JournalEntry) -> dict:
    """The core custom-sampler graph, step by step, with the same calls in the same order."""
    conditioning = encode_prompt(clip, entry.prompt)                                   # CLIPTextEncode
    conditioning = node_helpers.conditioning_set_values(conditioning, {"guidance": entry.guidance})  # FluxGuidance
    model = flux_shift(model, entry.max_shift, entry.base_shift, entry.width, entry.height)  # ModelSamplingFlux
    guider = PositiveGuider(model)                                                      # BasicGuider
    guider.set_conds(conditioning)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"),  # BasicScheduler
                                             entry.scheduler, entry.steps).cpu()
    sigmas = sigmas[-(entry.steps + 1):]
    sampler = comfy.samplers.sampler_object(entry.sampler)                             # KSamplerSelect
    latent_image = torch.zeros([1, 16, entry.height // 8, entry.width // 8],           # EmptySD3LatentImage
                               device=comfy.model_management.intermediate_device())
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent_image)         # SamplerCustomAdvanced
    noise = comfy.sample.prepare_noise(latent_image, entry.seed, None)                 # RandomNoise
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1, {})
    samples = guider.sample(noise, latent_image, sampler, sigmas, denoise_mask=None, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=entry.seed)
    return {"samples": samples.to(comfy.model_management.intermediate_device())}


# The last few (CLIP object, prompt) → conditioning. In the core graph CLIPTextEncode is its own node, so a
# seed-only change reuses its output from ComfyUI's cache; this keeps the sampler from re-running T5 then.
# A CLIP patched differently (a LoRA's text-encoder keys) is a different object, so it never hits.
_ENCODED: list[tuple[weakref.ref, str, list]] = []
ENCODE_CACHE_SIZE = 4


def encode_prompt(clip, prompt: str) -> list:
    for ref, text, conditioning in _ENCODED:
        if ref() is clip and text == prompt:
            return conditioning
    conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    _ENCODED.insert(0, (weakref.ref(clip), prompt, conditioning))
    del _ENCODED[ENCODE_CACHE_SIZE:]
    return conditioning


def decode(vae, latent: dict) -> torch.Tensor:
    images = vae.decode(latent["samples"])                                              # VAEDecode
    if len(images.shape) == 5:
        images = images.reshape(-1, images.shape[-3], images.shape[-2], images.shape[-1])
    return images


def flux_shift(model, max_shift: float, base_shift: float, width: int, height: int):
    """ModelSamplingFlux: the resolution-dependent timestep shift, as an object patch on a clone."""
    m = model.clone()
    x1, x2 = 256, 4096
    mm = (max_shift - base_shift) / (x2 - x1)
    b = base_shift - mm * x1
    shift = (width * height / (8 * 8 * 2 * 2)) * mm + b

    class ModelSamplingAdvanced(comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST):
        pass

    sampling = ModelSamplingAdvanced(model.model.model_config)
    sampling.set_parameters(shift=shift)
    m.add_object_patch("model_sampling", sampling)
    return m


class PositiveGuider(comfy.samplers.CFGGuider):
    """A guider with only a positive conditioning (FLUX dev is guidance-distilled: no CFG)."""

    def set_conds(self, positive):
        self.inner_set_conds({"positive": positive})


def stack_note(entry: JournalEntry, replay: JournalEntry | None) -> str:
    if replay is None or _stack_key(replay.stack) == _stack_key(entry.stack):
        return ""
    return "the model's LoRA stack differs from the replayed entry's; the image will differ"


def _stack_key(stack) -> list:
    return [(s.get("lora"), round(float(s.get("strength", 0)), 6)) for s in stack]


class JournalReplay(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessJournalReplay",
            display_name="Likeness Journal Replay",
            category="Likeness",
            description="Picks an image from the seed journal (by id, the newest, or the newest favourite) and "
                        "gives its settings to Likeness FLUX Sampler and its LoRAs to Likeness LoRA Stack, to "
                        "make the same image again or explore around it.",
            inputs=[
                io.String.Input("entry", default="",
                                tooltip="The journal id shown by the sampler (a unique prefix is enough); empty "
                                        "= the newest image; 'favourite' = the newest favourite."),
            ],
            outputs=[
                JournalEntryType.Output(display_name="replay", tooltip="Connect to the sampler's replay input."),
                LoraStack.Output(display_name="LORA_STACK",
                                 tooltip="The entry's LoRAs at their effective strengths (use balance off)."),
                io.String.Output(display_name="prompt", tooltip="The entry's prompt."),
                io.Int.Output(display_name="seed", tooltip="The entry's seed."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, entry) -> str:
        # the entry it resolves to: "newest" moves with the journal, an id never does
        try:
            return SeedJournal(user_dir(), prompt_user()).find(entry).id
        except LikenessError:
            return f"missing:{entry}"

    @classmethod
    def execute(cls, entry) -> io.NodeOutput:
        with user_errors():
            found = SeedJournal(user_dir(), prompt_user()).find(entry)
        stack = [(s["lora"], s["strength"], s.get("clip_strength", s["strength"])) for s in found.stack]
        return io.NodeOutput(found, stack, found.prompt, found.seed, ui={"text": [found.summary()]})


class JournalFavourite(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessJournalFavourite",
            display_name="Likeness Journal Favourite",
            category="Likeness",
            description="Marks (or unmarks) a seed-journal image as a favourite, without sampling again.",
            inputs=[
                io.String.Input("entry", default="", tooltip="The journal id (a unique prefix is enough); "
                                                             "empty = the newest image."),
                io.Boolean.Input("favourite", default=True, tooltip="On: mark as favourite; off: unmark."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, entry, favourite) -> io.NodeOutput:
        with user_errors():
            found = SeedJournal(user_dir(), prompt_user()).set_favourite(entry, favourite)
        return io.NodeOutput(ui={"text": [found.summary()]})


NODES = [FluxSampler, JournalReplay, JournalFavourite]

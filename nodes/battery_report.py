"""LikenessBatteryReport: the battery's variants on the same prompts and seeds, compared by likeness."""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io, ui

from ..likeness.errors import InputError
from ..likeness.generation.battery_report import DEFAULT_PROMPTS, ReportSettings, battery_report
from ..likeness.generation.battery_sheet import draw_sheet
from ..likeness.generation.seed_journal import SeedJournal
from ..likeness.identity import BACKENDS
from .flux_sampler import journal_entry, generate_image
from .host import NodeProgress, identity_cache_dir, models_dir, output_dir, user_dir, user_errors
from .lora_stack import build_stack
from .types import Battery


class BatteryReport(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessBatteryReport",
            display_name="Likeness Battery Report",
            category="Likeness",
            description="Compares the variants of a training battery: every finished variant draws the same prompts "
                        "with the same seeds (on Replicate with its trained version, or on this machine when a "
                        "FLUX model is connected), every image is scored for likeness to your training photos, and "
                        "a comparison sheet shows variants as rows and prompts as columns with the score on each "
                        "image, each variant's mean likeness, training cost, training time and LoRA size. The best "
                        "variant is named with its margin over the next. The figures are appended to "
                        "output/likeness/battery_reports.csv. Replicate images cost money: the estimate is shown "
                        "before, the same images are never paid twice.",
            inputs=[
                Battery.Input("battery", tooltip="The training battery's result (Likeness Training Battery)."),
                io.String.Input("prompts", default=DEFAULT_PROMPTS, multiline=True,
                                tooltip="One prompt per line as 'label | seed | prompt'; every variant draws each "
                                        "one with that seed. The trigger word is put first for you. By default a "
                                        "close-up, a half body and a stylised prompt."),
                io.Int.Input("steps", default=35, min=1, max=50,
                             tooltip="Sampling steps; the seed uses at least 35."),
                io.Float.Input("guidance", default=2.75, min=0.0, max=10.0, step=0.05,
                               tooltip="FLUX guidance; the seed prefers 2.5–3."),
                io.Float.Input("lora_strength", default=0.9, min=0.0, max=2.0, step=0.05,
                               tooltip="The variant LoRA's strength (the seed: 0.9), the same for every variant."),
                io.Int.Input("size", default=1024, min=256, max=2048, step=64,
                             tooltip="Image width and height on this machine (Replicate draws 1:1, about 1 MP)."),
                io.Combo.Input("backend", options=list(BACKENDS), default="auto",
                               tooltip="The face model that scores likeness: auto (ArcFace when models/insightface "
                                       "has it, else dlib), dlib, or arcface."),
                io.Model.Input("model", optional=True,
                               tooltip="Connect FLUX.1-dev to draw on this machine instead of Replicate (free, "
                                       "needs a GPU); clip and vae are then needed too."),
                io.Clip.Input("clip", optional=True, tooltip="The FLUX text encoders, for drawing on this machine."),
                io.Vae.Input("vae", optional=True, tooltip="The FLUX VAE, for drawing on this machine."),
            ],
            outputs=[
                io.Image.Output("sheet", display_name="sheet",
                                tooltip="The comparison sheet: variants as rows, prompts as columns, likeness on "
                                        "every image, the best variant framed."),
                io.String.Output("table", display_name="table",
                                 tooltip="The same figures as text: scores, means, cost, training time, LoRA "
                                         "size, the best variant and its margin."),
                io.String.Output("best_lora", display_name="best_lora",
                                 tooltip="The best variant's LoRA file in models/loras (empty when no variant "
                                         "could be ranked); connect it to a LoRA loader."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, battery, prompts, steps, guidance, lora_strength, size, backend, model=None, clip=None,
                vae=None) -> io.NodeOutput:
        settings = ReportSettings(prompts, steps, guidance, lora_strength, backend)
        with user_errors():
            render = local_renderer(model, clip, vae, size) if model is not None else None
            report = battery_report(battery, settings, user_dir=user_dir(), output_dir=output_dir(),
                                    models_dir=models_dir(), cache_dir=identity_cache_dir(), render=render,
                                    progress=NodeProgress(cls.hidden.unique_id))
        sheet = torch.from_numpy(draw_sheet(report))[None]
        best, _ = report.best()
        table = report.table()
        return io.NodeOutput(sheet, table, best.run.record.lora_file if best else "",
                             ui={"text": [table], **ui.PreviewImage(sheet, cls=cls).as_dict()})


def local_renderer(model, clip, vae, size: int):
    """Draws a variant's image on this machine: its LoRA on the model (the stack's code), then the local
    sampler's own graph; every image goes into the seed journal, as the sampler's do."""
    if clip is None or vae is None:
        raise InputError("To draw on this machine connect clip (DualCLIPLoader: clip_l + t5xxl, type flux) and vae "
                         "(ae.safetensors) as well as model; or disconnect model to draw on Replicate.")
    stacks: dict[int, object] = {}

    def render(run, prompt, settings) -> np.ndarray:
        record = run.record
        if run.index not in stacks:
            stacks[run.index] = build_stack(model, clip, [], [(record.lora_file, settings.lora_strength,
                                                               settings.lora_strength)],
                                            "off", settings.lora_strength, (0.0, 0.0), None)
        stack = stacks[run.index]
        entry = journal_entry(stack.model, prompt.text, record.trigger_word, prompt.seed, settings.steps,
                              settings.guidance, size, size, "euler", "simple", 1.15, 0.5, None)
        images, _ = generate_image(stack.model, stack.clip, vae, entry)
        entry.extra["battery"] = {"training": record.id, "variant": run.label, "prompt": prompt.label}
        SeedJournal(user_dir()).record(entry)
        return images[0].cpu().numpy().astype(np.float32)

    return render


NODES = [BatteryReport]

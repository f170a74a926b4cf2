"""LikenessLoraReference: stores your photos' face reference in a personal LoRA installed before the pack did."""
from __future__ import annotations

import folder_paths
from comfy_api.v0_0_2 import io

from ..likeness.errors import InputError
from ..likeness.training.lora_reference import attach_reference, training_reference
from .host import NodeProgress, models_dir, user_dir, user_errors
from .lora_stack import resolve_lora
from .score import _reference_photos
from .types import Dataset


class LoraReference(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessLoraReference",
            display_name="Likeness Store Reference in LoRA",
            category="Likeness",
            description="Writes the face reference of your photos (their face embeddings, not the photos) into "
                        "your personal LoRA's metadata, so the samplers score every image it makes for likeness, "
                        "on any machine. The trainer does this at install; use this node for a LoRA trained "
                        "before, or elsewhere. The weights are not changed. Runs on this machine, costs nothing.",
            inputs=[
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras"),
                               tooltip="Your personal LoRA (in models/loras)."),
                Dataset.Input("dataset", optional=True,
                              tooltip="The prepared training set (Likeness Dataset Loader): its photos are the "
                                      "reference person."),
                io.String.Input("reference_folder", default="", optional=True,
                                tooltip="Or a folder of photos of the person (absolute, or relative to ComfyUI's "
                                        "input folder); used when no dataset is connected."),
                io.Combo.Input("backend", options=["dlib", "arcface"], default="dlib", optional=True,
                               tooltip="dlib (default): works on every machine with the pack, so the LoRA scores "
                                       "wherever it goes. arcface: ArcFace's yardstick, only where "
                                       "models/insightface has antelopev2 or buffalo_l."),
            ],
            outputs=[
                io.String.Output("lora_name_out", display_name="lora_name",
                                 tooltip="The LoRA's name, for the LoRA stack."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, lora_name, dataset=None, reference_folder="", backend="dlib") -> io.NodeOutput:
        with user_errors():
            path = resolve_lora(lora_name)
            if path is None:
                raise InputError(f"No LoRA {lora_name} in models/loras: pick your personal LoRA")
            reference = training_reference(_reference_photos(dataset, reference_folder), user_dir(),
                                           NodeProgress(cls.hidden.unique_id), backend, models_dir())
            written = attach_reference(path, reference, user_dir())
        what = f"the face reference of {len(reference.names)} photo(s) ({reference.backend})"
        text = (f"Stored {what} in {lora_name}: the samplers score its images for likeness from now on." if written
                else f"{lora_name} already carries {what}: nothing was written.")
        if reference.skipped:
            text += "\nPhotos not used: " + "; ".join(f"{n} ({r})" for n, r in reference.skipped.items())
        return io.NodeOutput(lora_name, ui={"text": [text]})


NODES = [LoraReference]

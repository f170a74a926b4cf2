"""LikenessDatasetLoader: a folder of photos → an upright, square, checked training set."""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from ..likeness.dataset.dataset_prep import (OUTPUT_ANYWHERE_ENV, check_trigger_word, default_destination,
                                             folder_fingerprint, prepare_dataset)
from ..likeness.errors import InputError
from ..likeness.storage import read_json
from .host import (NodeProgress, env_flag, identity_cache_dir, input_dir, models_dir, output_dir, user_dir,
                   user_errors)
from .types import Dataset


class DatasetLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessDatasetLoader",
            display_name="Likeness Dataset Loader",
            category="Likeness",
            description="Reads a folder of photos of one person (and any .txt captions), makes each upright, "
                        "square and 1024 px, checks the set against the seed's rules (and that every face is "
                        "the same person) and writes a training set into ComfyUI's output folder. Your "
                        "originals are never changed.",
            inputs=[
                io.String.Input("folder", default="likeness/photos",
                                tooltip="Folder of photos: absolute, or relative to ComfyUI's input folder."),
                io.String.Input("trigger_word", default="pelarbues",
                                tooltip="A rare word that will stand for the person; one word, no spaces or "
                                        "commas. Captions must start with it."),
                io.Combo.Input("crop", options=["face", "center", "none"], default="face",
                               tooltip="face: square crop centred on the detected face with head room "
                                       "(centre when no face is found); center: square centre crop; "
                                       "none: keep the aspect ratio, long side = size."),
                io.Int.Input("size", default=1024, min=256, max=2048, step=64,
                             tooltip="Side of the square training images in pixels (FLUX trains at 1024)."),
                io.Boolean.Input("convert", default=True,
                                 tooltip="Convert .webp, .heic, .tif, .bmp and .gif photos to JPEG: Replicate's "
                                         "trainer accepts only .jpg, .jpeg and .png."),
                io.String.Input("output_folder", default="", optional=True,
                                tooltip="Where to write the prepared set, inside ComfyUI's output folder; empty: "
                                        "output/likeness/datasets/<trigger word>. (A folder elsewhere needs "
                                        "LIKENESS_DATASET_OUTPUT_ANYWHERE=1 where ComfyUI starts.)"),
            ],
            outputs=[
                io.Image.Output("images", display_name="images", is_output_list=True,
                                tooltip="The prepared photos, one image each, for preview and review."),
                io.String.Output("captions", display_name="captions", is_output_list=True,
                                 tooltip="Each photo's caption from its .txt side-car (empty when none)."),
                Dataset.Output("dataset", display_name="dataset",
                               tooltip="The prepared set (folder, files, trigger word, content hashes) for "
                                       "the captioner and the trainer."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,   # it writes the set and shows its report: it may be queued on its own
        )

    @classmethod
    def validate_inputs(cls, trigger_word) -> bool | str:
        # A bad trigger word is refused when the prompt is queued, before anything runs.
        try:
            check_trigger_word(trigger_word)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, folder, trigger_word, crop, size, convert, output_folder="") -> str:
        # Re-run when a photo or caption in the folder changes (or the prepared set is deleted), even though
        # the inputs are the same; ComfyUI's cache answers otherwise.
        return folder_fingerprint(folder, input_dir(), default_destination(trigger_word, output_folder, output_dir()))

    @classmethod
    def execute(cls, folder, trigger_word, crop, size, convert, output_folder="") -> io.NodeOutput:
        with user_errors():
            prepared = prepare_dataset(folder, trigger_word, crop=crop, size=size, convert=convert,
                                       input_root=input_dir(), output_root=output_dir(),
                                       output_folder=output_folder or None,
                                       progress=NodeProgress(cls.hidden.unique_id),
                                       models_dir=models_dir(), identity_cache=identity_cache_dir(),
                                       output_anywhere=output_anywhere())
        images = [torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None] for img in prepared.images]
        dataset = prepared.dataset
        return io.NodeOutput(images, dataset.captions, dataset, ui={"text": [prepared.report.text()]})


def output_anywhere() -> bool:
    """The user's own opt-in, outside any workflow: the environment, or the pack's config.json."""
    if env_flag(OUTPUT_ANYWHERE_ENV):
        return True
    config = read_json(user_dir() / "config.json", {}) or {}
    return isinstance(config, dict) and config.get("dataset_output_anywhere") is True


NODES = [DatasetLoader]

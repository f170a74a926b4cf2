"""LikenessScore: how much each image looks like the person of the training set, images sorted best first."""
from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io, ui
from PIL import Image

from ..likeness.dataset.dataset_prep import folder_fingerprint, resolve_source
from ..likeness.errors import InputError
from ..likeness.identity import (BACKENDS, best_first, find_arcface_model, load_backend, reference_from_photos,
                                score_images, score_table)
from ..likeness.identity.annotate import annotated
from .host import NodeProgress, identity_cache_dir, input_dir, models_dir, user_errors
from .types import Dataset

NO_SCORE = -1.0


class LikenessScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessScore",
            display_name="Likeness Score",
            category="Likeness",
            description="Scores how much the face in each image looks like the person in your training photos "
                        "(0–100; 50 is the face model's same-person line) and sorts the images best first. "
                        "Runs on this machine: dlib by default, ArcFace when models/insightface has antelopev2 "
                        "or buffalo_l. Images with no face or several faces get no number, and say so.",
            inputs=[
                io.Image.Input("images", tooltip="The images to score (a batch)."),
                Dataset.Input("dataset", optional=True,
                              tooltip="The prepared training set (from Likeness Dataset Loader): its photos are "
                                      "the reference person."),
                io.String.Input("reference_folder", default="", optional=True,
                                tooltip="Or a folder of photos of the person (absolute, or relative to ComfyUI's "
                                        "input folder); used when no dataset is connected."),
                io.Combo.Input("backend", options=list(BACKENDS), default="auto",
                               tooltip="auto: ArcFace when its models are in models/insightface (antelopev2 or "
                                       "buffalo_l) and onnxruntime is installed, else dlib. dlib works offline "
                                       "out of the box."),
            ],
            outputs=[
                io.Image.Output("sorted_images", display_name="images", tooltip="The images, most alike first."),
                io.Float.Output("scores", display_name="scores", is_output_list=True,
                                tooltip="Each sorted image's likeness (0–100, 50 = same-person line); -1 when it "
                                        "has no face or several faces."),
                io.String.Output("table", display_name="table",
                                 tooltip="The ranking as text: likeness, distance and verdict per image, and "
                                         "which backend scored."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="The sorted images with the scored face boxed and its likeness written "
                                        "on it."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,   # it shows the ranking on the node
        )

    @classmethod
    def fingerprint_inputs(cls, backend="auto", reference_folder="", **_) -> str:
        # Score again when a reference photo in the folder changes, or when ArcFace models appear ('auto'
        # then switches backend); ComfyUI's cache answers otherwise.
        folder = folder_fingerprint(reference_folder, input_dir()) if (reference_folder or "").strip() else ""
        return f"{folder}|{find_arcface_model(models_dir()) if backend != 'dlib' else ''}"

    @classmethod
    def execute(cls, images, backend, dataset=None, reference_folder="") -> io.NodeOutput:
        progress = NodeProgress(cls.hidden.unique_id)
        pictures = [Image.fromarray(np.clip(255.0 * image.cpu().numpy() + 0.5, 0, 255).astype(np.uint8))
                    for image in images]
        with user_errors():
            scorer = load_backend(backend, models_dir())
            reference = reference_from_photos(_reference_photos(dataset, reference_folder), scorer,
                                              identity_cache_dir(), progress)
            scores = score_images(pictures, reference, scorer, progress)
        order = best_first(scores)
        table = score_table(scores, reference, scorer)
        preview = torch.stack([torch.from_numpy(np.asarray(annotated(pictures[i], scores[i], rank), np.float32)
                                                / 255.0) for rank, i in enumerate(order, 1)])
        values = [scores[i].likeness if scores[i].likeness is not None else NO_SCORE for i in order]
        best = scores[order[0]]
        progress.text(f"{scorer.name}: best image {order[0] + 1}, " + (f"likeness {best.likeness:.0f}"
                      if best.likeness is not None else best.reason) + f" (50 = same person; {len(scores)} scored)")
        shown = {"text": [table], **ui.PreviewImage(preview, cls=cls).as_dict()}
        return io.NodeOutput(images[order], values, table, preview, ui=shown)


def _reference_photos(dataset, reference_folder: str):
    if dataset is not None:
        return dataset
    if (reference_folder or "").strip():
        return resolve_source(reference_folder, input_dir())
    raise InputError("No reference person: connect the prepared dataset (Likeness Dataset Loader) or type the "
                     "folder of the person's photos in reference_folder")


NODES = [LikenessScore]

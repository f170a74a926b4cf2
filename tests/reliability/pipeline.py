"""The pipeline the reliability tests drive: workflows/full-pipeline.json as saved (photos → Gemini captions →
review gate, reviewed → Replicate training → Replicate generation, which saves its PNGs) and local sampling with the trained LoRA on tiny FLUX."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from comfy_test_pack.graphs import sampler_node, stack_node
from harness import photos
from harness.comfy_server import REPO
from harness.workflows import workflow_prompt

OWNER = "likeness-tester"
TRAINING_CREATE = r"/versions/[0-9a-f]+/trainings$"
PREDICTION_CREATE = r"^/v1/(predictions|models/[^/]+/[^/]+/predictions)$"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Pipeline:
    """One user's run of the full pipeline: their photos, trigger word and destination."""
    base_dir: Path
    tag: str
    prompt: dict
    ids: dict[str, str]          # class_type -> node id

    @property
    def trigger(self) -> str:
        return f"tok{self.tag}"

    @property
    def destination(self) -> str:
        return f"pipeline-{self.tag}"

    @property
    def lora_name(self) -> str:
        return f"{self.destination}.safetensors"

    @property
    def dataset_dir(self) -> Path:
        return self.base_dir / "output" / "likeness" / "datasets" / self.tag

    @property
    def photos_dir(self) -> Path:
        return self.base_dir / "input" / f"photos-{self.tag}"

    def node(self, class_type: str) -> str:
        return self.ids[class_type]


def full_pipeline(base_dir: Path, object_info: dict, photo_count: int = 3, **sampler: object) -> Pipeline:
    """The shipped full-pipeline workflow with what its note asks the user to set, for a fresh set of photos."""
    workflow = json.loads((REPO / "workflows" / "full-pipeline.json").read_text(encoding="utf-8"))
    prompt = workflow_prompt(workflow, object_info)
    ids = {n["class_type"]: k for k, n in prompt.items()}
    tag = uuid.uuid4().hex[:8]
    pipeline = Pipeline(Path(base_dir), tag, prompt, ids)
    photos.photo_set(pipeline.photos_dir, photo_count, width=320, height=240)
    prompt[ids["LikenessDatasetLoader"]]["inputs"].update(
        folder=pipeline.photos_dir.name, trigger_word=pipeline.trigger, crop="center", size=256,
        output_folder=f"likeness/datasets/{tag}")
    prompt[ids["LikenessReplicateTrainer"]]["inputs"]["destination"] = pipeline.destination
    prompt[ids["LikenessReviewGate"]]["inputs"]["reviewed"] = True       # the note's second queue: reviewed
    prompt[ids["LikenessReplicateFluxSampler"]]["inputs"]["filename_prefix"] = f"likeness/replicate-{tag}"
    prompt[ids["LikenessReplicateFluxSampler"]]["inputs"].update(sampler)
    return pipeline


def local_generation(lora_name: str, prefix: str, *, seed: int = 7, size: int = 32, steps: int = 1,
                     prompt: str = "a portrait in a green field") -> dict:
    """Tiny FLUX + the LoRA stack (the trained LoRA as its row) + the local sampler → SaveImage (PNG + journal)."""
    return {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "stack": stack_node(["model", 0], f"{lora_name}, 0.9", clip=["clip", 0]),
        "sampler": sampler_node(["stack", 0], ["stack", 1], ["vae", 0], prompt, trigger_words=["stack", 3],
                                seed=seed, steps=steps, width=size, height=size),
        "save": {"class_type": "SaveImage", "inputs": {"images": ["sampler", 0], "filename_prefix": prefix}},
    }


def ui_text(result, node: str) -> str:
    """A node's ui text, from its `executed` event (/history can lag behind execution_success)."""
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == node:
            return "\n".join((event["data"].get("output") or {}).get("text", []))
    return "\n".join(result.outputs.get(node, {}).get("text", []))

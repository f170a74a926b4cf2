"""The shared workflows agree with each other: what one installs is what the next one loads."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def nodes(name: str) -> list[dict]:
    return json.loads((REPO / "workflows" / name).read_text(encoding="utf-8"))["nodes"]


def test_workflow_3_loads_the_lora_that_workflow_2_installs():
    """Workflow 2's trainer installs models/loras/<destination model name>.safetensors; workflow 3's stack must
    name that file as its personal row (issue 17, item 20: it expected pelarbues.safetensors)."""
    (trainer,) = [n for n in nodes("2-train-on-replicate.json") if n["type"] == "LikenessReplicateTrainer"]
    destination = trainer["widgets_values"][0]
    installed = destination.rsplit("/", 1)[-1].split(":", 1)[0] + ".safetensors"
    (stack,) = [n for n in nodes("3-generate-local.json") if n["type"] == "LikenessLoraStack"]
    rows = json.loads(stack["widgets_values"][0])
    assert rows[0]["lora"] == installed

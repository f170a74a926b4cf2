"""The whole pipeline from workflows/full-pipeline.json, as saved, through a real ComfyUI: photos → Gemini captions
→ Replicate training → Replicate generation (which saves its PNGs), with no local model file at all."""
from __future__ import annotations

import io
import json
import uuid

from PIL import Image

from harness import photos
from harness.comfy_server import REPO
from harness.workflows import workflow_prompt

PIPELINE = ["LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessReviewGate", "LikenessReplicateTrainer",
            "LikenessReplicateFluxSampler"]


def test_the_full_pipeline_workflow_runs_photos_to_image_without_a_local_model(comfy, client, gemini,
                                                                                replicate_fake):
    workflow = json.loads((REPO / "workflows" / "full-pipeline.json").read_text())
    types = [n["type"] for n in workflow["nodes"]]
    assert set(PIPELINE) <= set(types) and "MarkdownNote" in types
    assert not {"UNETLoader", "CheckpointLoaderSimple", "DualCLIPLoader", "VAELoader", "LoraLoader",
                "LikenessFluxSampler"} & set(types)                        # nothing local to download
    note = next(n for n in workflow["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert "REPLICATE_API_TOKEN" in note and "GEMINI_API_KEY" in note and "environment" in note
    assert len(workflow["groups"]) == 4                                 # photos, review, train, generate

    prompt = workflow_prompt(workflow, client.get("/object_info"))
    ids = {n["class_type"]: k for k, n in prompt.items()}
    assert prompt[ids["LikenessGeminiCaptioner"]]["inputs"]["dataset"] == [ids["LikenessDatasetLoader"], 2]
    assert prompt[ids["LikenessReviewGate"]]["inputs"]["dataset"] == [ids["LikenessGeminiCaptioner"], 0]
    assert prompt[ids["LikenessReplicateTrainer"]]["inputs"]["dataset"] == [ids["LikenessReviewGate"], 0]
    assert prompt[ids["LikenessReplicateFluxSampler"]]["inputs"]["training"] == [ids["LikenessReplicateTrainer"], 2]
    assert prompt[ids["LikenessReplicateFluxSampler"]]["inputs"]["filename_prefix"] == "likeness/replicate"
    assert "SaveImage" not in ids, "the sampler saves each PNG with its journal entry and score itself"

    # What the note asks the user to set: the photos, the trigger word, the destination.
    tag = uuid.uuid4().hex[:8]
    folder, trigger, destination = f"photos-{tag}", f"tok{tag}", f"pipeline-{tag}"
    photos.photo_set(comfy.base_dir / "input" / folder, 3, width=320, height=240)
    prompt[ids["LikenessDatasetLoader"]]["inputs"].update(folder=folder, trigger_word=trigger, crop="center",
                                                          size=256, output_folder=f"likeness/datasets/{tag}")
    prompt[ids["LikenessReplicateTrainer"]]["inputs"]["destination"] = destination

    # Queued as shipped, it stops after the captions for the review the seed insists on: nothing is trained.
    assert "review" in note.lower() and "reviewed" in note
    first = client.run(prompt)
    assert first.status == "success", first.error_message
    assert len(gemini.generate_calls()) == 3                              # one caption per photo
    assert replicate_fake.training_ids() == [] and replicate_fake.requests == []
    gate = next(e["data"]["output"]["text"][0] for e in first.events
                if e["type"] == "executed" and e["data"]["node"] == ids["LikenessReviewGate"])
    assert "review" in gate.lower() and "3 captions" in gate

    # Reviewed: the note's second queue trains and generates, and pays for no caption again.
    prompt[ids["LikenessReviewGate"]]["inputs"]["reviewed"] = True
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert len(gemini.generate_calls()) == 3
    (training_id,) = replicate_fake.training_ids()
    (prediction_id,) = replicate_fake.prediction_ids()
    prediction = replicate_fake.prediction(prediction_id)
    trained = replicate_fake.models[f"likeness-tester/{destination}"]["versions"][0]["id"]
    assert prediction["version"] == trained                               # the new LoRA's own version
    assert prediction["input"]["prompt"].startswith(f"{trigger}, ")       # its trigger word first
    images = next(e["data"]["output"]["images"] for e in result.events
                  if e["type"] == "executed" and e["data"]["node"] == ids["LikenessReplicateFluxSampler"])
    image = Image.open(io.BytesIO(client.view(images[0])))
    assert image.size == (43, 64)                                         # the workflow's 2:3
    assert training_id and (comfy.base_dir / "output" / images[0]["subfolder"] / images[0]["filename"]).is_file()

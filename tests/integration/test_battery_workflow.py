"""workflows/6-training-battery.json: prepared set → battery of 3 variants → report sheet, its note's cost figures
made by the pack's own estimates, and its widget values queued against the fakes."""
from __future__ import annotations

import json
import uuid

from harness import photos
from harness.comfy_server import REPO
from harness.workflows import widget_values
from likeness.generation.remote_generation import TRAINED, Plan, estimate_cost as image_cost
from likeness.money.prices import format_usd, load_prices
from likeness.training.training import estimate_cost as training_cost

WORKFLOW = REPO / "workflows" / "6-training-battery.json"


def test_the_battery_workflow_states_its_cost_and_its_values_run(comfy, client, replicate_fake):
    workflow = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    info = client.get("/object_info")
    by_type = {n["type"]: n for n in workflow["nodes"]}
    assert {"LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessTrainingBattery", "LikenessBatteryReport",
            "SaveImage", "MarkdownNote"} <= set(by_type)
    ids = {n["id"]: n["type"] for n in workflow["nodes"]}
    wired = {(ids[src], ids[dst]) for _, src, _, dst, _, _ in workflow["links"]}
    assert {("LikenessGeminiCaptioner", "LikenessTrainingBattery"), ("LikenessTrainingBattery", "LikenessBatteryReport"),
            ("LikenessBatteryReport", "SaveImage")} <= wired
    battery = widget_values(by_type["LikenessTrainingBattery"], info["LikenessTrainingBattery"])
    report = widget_values(by_type["LikenessBatteryReport"], info["LikenessBatteryReport"])
    status, plan = client.request("POST", "/likeness/battery/plan", {k: battery[k] for k in
                                                                     ("base", "variations", "expand")})
    assert status == 200 and plan["count"] == 3                        # "a battery of 3 variants"

    # the note's figures are the pack's own estimates for the defaults: 26 photos × 40 steps, 3 × 3 images
    prices = load_prices(None)
    train = training_cost(26 * 40, prices)
    image = image_cost(Plan(TRAINED, "me/face", "0" * 64, "p", None, None), {"num_inference_steps": report["steps"],
                                                                              "num_outputs": 1}, prices)
    note = by_type["MarkdownNote"]["widgets_values"][0]
    for figure in (train, 3 * train, 9 * image, 3 * train + 9 * image):
        assert format_usd(figure) in note, (format_usd(figure), note)
    assert "REPLICATE_API_TOKEN" in note and prices.as_of in note

    # its widget values, queued (captions from .txt files instead of Gemini)
    trigger = f"tok{uuid.uuid4().hex[:6]}"
    folder = f"wf6-{uuid.uuid4().hex[:6]}"
    photos.photo_set(comfy.base_dir / "input" / folder, 4, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    loader = widget_values(by_type["LikenessDatasetLoader"], info["LikenessDatasetLoader"])
    destination = f"wf6-{uuid.uuid4().hex[:6]}"
    prompt = {
        "1": {"class_type": "LikenessDatasetLoader", "inputs": {**loader, "folder": folder, "trigger_word": trigger,
                                                                 "crop": "center", "size": 256}},
        "3": {"class_type": "LikenessTrainingBattery", "inputs": {**battery, "dataset": ["1", 2],
                                                                  "destination": destination}},
        "4": {"class_type": "LikenessBatteryReport", "inputs": {**report, "battery": ["3", 0], "backend": "dlib"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": f"likeness/{destination}"}}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert replicate_fake.count("POST", r"/trainings$") == 3
    assert replicate_fake.count("POST", r"^/v1/predictions$") == 9
    assert len(list((comfy.base_dir / "output" / "likeness").glob(f"{destination}_*.png"))) == 1
    table = "\n".join(next(e["data"]["output"]["text"] for e in result.events
                           if e["type"] == "executed" and e["data"]["node"] == "4"))
    assert "Not scored: None of the 4 reference photos shows one clear face" in table   # drawn photos: no face
    loras = sorted(p.name for p in (comfy.base_dir / "models" / "loras").glob(f"{destination}-*.safetensors"))
    assert loras == [f"{destination}-rank{r}.safetensors" for r in (16, 32, 64)]

"""LikenessBatteryReport through the real server: a battery trained on the fake Replicate, then its variants drawn on
Replicate (the fake answers with real face photos that depend on the trained version) or on the tiny FLUX, scored,
put on a sheet, named best, and written to the CSV history."""
from __future__ import annotations

import csv
import io
import uuid

import pytest
from PIL import Image, ImageOps

from tools import real_faces
from likeness.generation.battery_sheet import CELL, HEADER, LEFT, TITLE

OWNER = "likeness-tester"
PREDICT = r"^/v1/predictions$"
FACES = {16: "obama3.jpg", 32: "biden.jpg", 64: "astronaut"}   # what each variant's trained version draws


@pytest.fixture(scope="module")
def battery_inputs(comfy):
    """Photos of one person in ComfyUI's input folder, and the loader + battery nodes that train on them."""
    trigger, folder = f"tok{uuid.uuid4().hex[:6]}", f"report-photos-{uuid.uuid4().hex[:6]}"
    path = comfy.base_dir / "input" / folder
    path.mkdir(parents=True)
    for i, name in enumerate(("obama.jpg", "obama2.jpg")):
        ImageOps.contain(real_faces.image(name), (768, 768)).save(path / f"{i:03d}.jpg", quality=92)
        (path / f"{i:03d}.txt").write_text(f"{trigger}, a portrait photo {i}", encoding="utf-8")
    return {
        "1": {"class_type": "LikenessDatasetLoader",
              "inputs": {"folder": folder, "trigger_word": trigger, "crop": "none", "size": 512, "convert": True,
                         "output_folder": ""}},
        "2": {"class_type": "LikenessTrainingBattery",
              "inputs": {"dataset": ["1", 2], "destination": f"{OWNER}/report-{uuid.uuid4().hex[:6]}",
                         "base": "", "variations": "lora_rank: 16, 32, 64", "expand": "one factor at a time",
                         "confirm_large_battery": False, "trainer_version": "", "wandb_project": ""}}}


def report_node(**inputs) -> dict:
    return {"class_type": "LikenessBatteryReport",
            "inputs": {"battery": ["2", 0], "prompts": "close-up | 1 | a close-up portrait photo\n"
                                                       "half body | 2 | an upper-body portrait\n"
                                                       "stylised | 3 | a watercolor painting",
                       "steps": 35, "guidance": 2.75, "lora_strength": 0.9, "size": 256, "backend": "dlib",
                       **inputs}}


def faces_by_trained_version(fake):
    photos = {rank: real_faces.astronaut() if name == "astronaut" else real_faces.image(name)
              for rank, name in FACES.items()}

    def draw(model, version, inputs, index):
        (rank,) = [t["input"]["lora_rank"] for t in fake.trainings.values() if t.get("output_version") == version]
        photo = ImageOps.contain(photos[rank], (384, 384))
        return ImageOps.mirror(photo) if int(inputs["seed"]) % 2 == 0 else photo
    return draw


def node_output(result, node: str) -> dict:
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == node:
            return event["data"].get("output") or {}
    return {}


def csv_rows(comfy) -> list[dict]:
    with open(comfy.base_dir / "output" / "likeness" / "battery_reports.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_report_on_replicate_names_the_variant_that_looks_like_the_person(comfy, client, replicate_fake,
                                                                               battery_inputs):
    replicate_fake.use_images(faces_by_trained_version(replicate_fake))
    before = len(csv_rows(comfy)) if (comfy.base_dir / "output" / "likeness" / "battery_reports.csv").exists() else 0
    result = client.run({**battery_inputs, "3": report_node()})
    assert result.status == "success", result.error_message

    assert replicate_fake.count("POST", PREDICT) == 9
    shown = node_output(result, "3")
    table = "\n".join(shown["text"])
    assert "Best: lora_rank 16, mean likeness" in table and "above" in table
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("lora_rank") else ""): line
             for line in table.splitlines()[2:5]}
    assert set(lines) == {"base", "lora_rank 16", "lora_rank 64"}
    (sheet_file,) = shown["images"]
    sheet = Image.open(io.BytesIO(client.view(sheet_file)))
    assert sheet.size == (LEFT + 3 * CELL, TITLE + HEADER + 3 * CELL)         # 3 variants × 3 prompts
    rows = csv_rows(comfy)[before:]
    assert [r["variant"] for r in rows] == ["base", "lora_rank 16", "lora_rank 64"]
    assert [r["best"] for r in rows] == ["", "yes", ""] and float(rows[1]["mean_likeness"]) > 50
    assert float(rows[0]["mean_likeness"]) < 50 and float(rows[1]["margin_to_next"]) > 10
    assert all(r["generated_on"] == "Replicate" and r["backend"] == "dlib" for r in rows)

    again = client.run({**battery_inputs, "3": report_node(guidance=2.8)})   # the report runs again, not cached
    assert again.status == "success", again.error_message
    assert replicate_fake.count("POST", PREDICT) == 18                       # new guidance: new images, paid once
    third = client.run({**battery_inputs, "3": report_node(guidance=2.8, lora_strength=0.9, backend="auto")})
    assert third.status == "success" and replicate_fake.count("POST", PREDICT) == 18    # the same images: reused


def test_the_report_on_this_machine_draws_every_variant_with_the_local_sampler(comfy, client, replicate_fake,
                                                                              battery_inputs):
    prompt = {**battery_inputs,
              "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
              "clip": {"class_type": "TinyFluxClip", "inputs": {}},
              "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
              "3": report_node(steps=2, model=["model", 0], clip=["clip", 0], vae=["vae", 0])}
    journal_before = client.get("/likeness/journal?limit=100")["entries"]
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert replicate_fake.count("POST", PREDICT) == 0
    table = "\n".join(node_output(result, "3")["text"])
    assert "generated on this machine" in table and table.count("no face") == 9
    assert "No variant can be ranked" in table
    journal = client.get("/likeness/journal?limit=100")["entries"]
    drawn = [e for e in journal if e["id"] not in {j["id"] for j in journal_before}]
    assert len(drawn) == 9 and {e["seed"] for e in drawn} == {1, 2, 3} and {e["steps"] for e in drawn} == {2}
    assert {e["extra"]["battery"]["variant"] for e in drawn} == {"base", "lora_rank 16", "lora_rank 64"}
    assert all(e["prompt"].startswith(battery_inputs["1"]["inputs"]["trigger_word"]) for e in drawn)
    assert csv_rows(comfy)[-1]["generated_on"] == "this machine"

"""Scoring images against the person of a training set with LikenessScore, in a real ComfyUI."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from tools import real_faces

SIDE = 640
BATCH = ("biden.jpg", "obama3.jpg", "scene", real_faces.GROUP)     # image 2 is the reference person


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def square(img: Image.Image) -> Image.Image:
    """The photo on a grey square of SIDE px (so the batch has one size)."""
    img = img.copy()
    img.thumbnail((SIDE, SIDE))
    canvas = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    canvas.paste(img, ((SIDE - img.width) // 2, (SIDE - img.height) // 2))
    return canvas


@pytest.fixture(scope="module")
def batch_files(comfy) -> list[str]:
    folder = comfy.base_dir / "input"
    folder.mkdir(exist_ok=True)
    names = []
    for name in BATCH:
        img = real_faces.scene_without_face() if name == "scene" else real_faces.image(name)
        file = f"score-{Path(name).stem}.png"
        square(img).save(folder / file)
        names.append(file)
    return names


def one_person(folder: Path, friend: bool = False) -> None:
    """The reference photos, each with the folder's name after its JPEG end: the same pixels, but files no other
    test has embedded (the embedding cache is keyed by file content and the session server is shared)."""
    folder.mkdir(parents=True)
    names = {name: name for name in (*real_faces.OBAMA, "obama_partial_face.jpg")}
    if friend:
        names["biden.jpg"] = "friend.jpg"
    for source, name in names.items():
        (folder / name).write_bytes((real_faces.faces_dir() / source).read_bytes() + folder.name.encode())


def graph(files: list[str], *, folder: str = "", reference_folder: str = "", trigger: str = "",
          backend: str = "auto", dump: str = "scored") -> dict:
    prompt = {f"l{i}": {"class_type": "LoadImage", "inputs": {"image": f}} for i, f in enumerate(files)}
    last = ["l0", 0]
    for i in range(1, len(files)):
        prompt[f"b{i}"] = {"class_type": "ImageBatch", "inputs": {"image1": last, "image2": [f"l{i}", 0]}}
        last = [f"b{i}", 0]
    score = {"images": last, "backend": backend, "reference_folder": reference_folder}
    if folder:
        prompt["loader"] = {"class_type": "LikenessDatasetLoader",
                            "inputs": {"folder": folder, "trigger_word": trigger, "crop": "face", "size": 512,
                                       "convert": True, "output_folder": ""}}
        score["dataset"] = ["loader", 2]
    prompt["score"] = {"class_type": "LikenessScore", "inputs": score}
    prompt["dump"] = {"class_type": "TinyTensorDump", "inputs": {"name": dump, "image": ["score", 0]}}
    return prompt


def ui_text(result, node: str) -> str:
    return "\n".join(t for e in result.events if e["type"] == "executed" and e["data"]["node"] == node
                     for t in e["data"]["output"].get("text", []))


def ui_output(result, node: str) -> dict:
    return next(e["data"]["output"] for e in result.events if e["type"] == "executed" and e["data"]["node"] == node)


def test_the_score_node_ranks_a_batch_best_first(client, comfy, batch_files):
    name, trigger = unique("person"), unique("obama")
    one_person(comfy.base_dir / "input" / name)
    dump = unique("scored")

    result = client.run(graph(batch_files, folder=name, trigger=trigger, dump=dump))

    assert result.status == "success", result.error_message
    table = ui_text(result, "score").splitlines()
    assert table[0].startswith("Likeness to 4 reference photos (dlib;")
    # the loader embedded the set while preparing it: the score node's reference embeds nothing
    assert table[1] == "Reference faces: 0 embedded now, 4 from the cache."
    ranks = [line.split() for line in table[3:7]]
    assert [r[1] for r in ranks] == ["2", "1", "3", "4"]
    assert float(ranks[0][2]) > 50 > float(ranks[1][2]) and ranks[0][-2:] == ["same", "person"]
    assert table[5].endswith("no face") and "several faces" in table[6]
    assert len(ui_output(result, "score")["images"]) == 4                  # the annotated preview on the node
    sorted_images = load_file(ui_text(result, "dump"))["image"]
    obama3 = np.asarray(Image.open(comfy.base_dir / "input" / batch_files[1]), np.float32) / 255.0
    assert sorted_images.shape == (4, SIDE, SIDE, 3)
    assert np.abs(sorted_images[0] - obama3).max() < 1e-5                 # the most alike image comes first


def test_a_folder_reference_is_embedded_once(client, comfy, batch_files):
    name = unique("refs")
    one_person(comfy.base_dir / "input" / name)
    first = client.run(graph(batch_files[:2], reference_folder=name, dump=unique("d")))
    second = graph(batch_files[1::-1], reference_folder=name, dump=unique("d"))            # another batch
    again = client.run(second)
    assert first.status == again.status == "success", first.error_message + again.error_message
    assert "Reference faces: 4 embedded now, 0 from the cache." in ui_text(first, "score")
    assert "Reference faces: 0 embedded now, 4 from the cache." in ui_text(again, "score")
    # a photo added to the folder: the same prompt is scored again, and only the new photo is embedded
    shutil.copy(real_faces.faces_dir() / "obama_partial_face2.jpg", comfy.base_dir / "input" / name / "new.jpg")
    grown = client.run(second)
    assert "score" in grown.executed_nodes()
    assert "Reference faces: 1 embedded now, 4 from the cache." in ui_text(grown, "score")


def test_the_loaders_report_names_the_friend_in_the_set(client, comfy):
    name, trigger = unique("friend"), unique("set")
    one_person(comfy.base_dir / "input" / name, friend=True)
    loader = {"1": {"class_type": "LikenessDatasetLoader",
                    "inputs": {"folder": name, "trigger_word": trigger, "crop": "face", "size": 512,
                               "convert": True, "output_folder": ""}}}
    result = client.run(loader)
    assert result.status == "success", result.error_message
    report = ui_text(result, "1")
    assert "Identity check (dlib, 5 faces): 1 photo may show someone else" in report
    assert "  - friend.jpg: the face does not match the others" in report
    assert "identity check: 5 of 5 faces" in " ".join(result.texts_for("1"))     # progress while it embeds


def test_without_a_reference_or_with_missing_arcface_models_the_node_says_what_to_do(client, batch_files):
    result = client.run(graph(batch_files[:1], dump=unique("d")))
    assert result.status == "error" and "connect the prepared dataset" in result.error_message
    result = client.run(graph(batch_files[:1], reference_folder="nowhere", backend="arcface", dump=unique("d")))
    assert result.status == "error" and "antelopev2 or buffalo_l" in result.error_message

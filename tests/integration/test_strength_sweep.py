"""The strength sweep through the real server: a local 3×3 sweep on the tiny FLUX (its images have no face,
so the cells say so), and sweeps on Replicate against the fake, whose images are real faces that lose likeness as
the style LoRA's strength rises — predictions created only for new cells, the budget checked before any call,
Cancel, and the stack's `measured` mode reading the newest sweep of the same files."""
from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from comfy_test_pack.lora_files import factors, write_lora
from fakes.replicate import FLUX_DEV_LORA
from tools import real_faces
from harness.comfy_server import REPO
from harness.workflows import workflow_prompt
from likeness.generation.seed_journal import SeedJournal
from likeness.generation.sweep_pictures import BAND, GAP, LEFT, TOP, cell_box
from likeness.generation.strength_sweep import (Cell, CellImage, LoraRef, Recommendation, SweepGrid,
                                                SweepResult)
from likeness.loras.sweep_results import SweepResults

CREATE = rf"^/v1/models/{FLUX_DEV_LORA}/predictions$"
PROMPT = "a portrait of a man in a green field, analog photo"


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:6]}"


def sweep_node(rows, *, where="replicate", personal=(0.8, 1.0, 2), style=(0.1, 0.35, 3), seeds="1234",
               tolerance=5.0, tolerance_of="personal only", reference_photos="", steps=4, size=64, **linked) -> dict:
    inputs = {"rows": rows if isinstance(rows, str) else json.dumps(rows), "personal_row": 1, "style_row": 0,
              "personal_min": personal[0], "personal_max": personal[1], "personal_steps": personal[2],
              "style_min": style[0], "style_max": style[1], "style_steps": style[2], "prompts": PROMPT,
              "trigger_words": "", "seeds": seeds, "where": where, "tolerance": tolerance,
              "tolerance_of": tolerance_of, "steps": steps, "guidance": 2.75, "width": size, "height": size,
              "aspect_ratio": "1:1", "go_fast": True, "backend": "dlib", "reference_photos": reference_photos,
              **linked}
    return {"class_type": "LikenessStrengthSweep", "inputs": inputs}


def shown(result, node):
    for e in result.events:
        if e["type"] == "executed" and e["data"]["node"] == node:
            return e["data"]["output"]
    return result.outputs.get(node)


def user(comfy):
    return comfy.pack_dir


@pytest.fixture(scope="module")
def reference_photos(comfy) -> str:
    """Two real photos of the person the fake's images show, in the server's input folder."""
    name = unique("my_photos")
    folder = comfy.base_dir / "input" / name
    folder.mkdir(parents=True)
    for photo in ("obama2.jpg", "obama3.jpg"):
        shutil.copy(real_faces.faces_dir() / photo, folder / photo)
    return name


# --- on this machine: the tiny FLUX -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_loras(comfy) -> tuple[str, str]:
    folder = comfy.base_dir / "models" / "loras"
    me, style = unique("me"), unique("film")
    write_lora(folder / f"{me}.safetensors", "diffusers", factors(seed=31, magnitude=0.3),
               {"likeness_trigger_word": "pelarbues"})
    write_lora(folder / f"{style}.safetensors", "kohya", factors(seed=32, alpha=4.0, magnitude=0.3,
                                                              modules=("single_blocks.0.linear2",)))
    return f"{me}.safetensors", f"{style}.safetensors"


def local_graph(loras, reference, tolerance=5.0) -> dict:
    me, style = loras
    sheet = unique("sheet")
    return {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "sweep": sweep_node(f"{me}, 0.9\n{style}, 0.2", where="local", personal=(0.7, 1.0, 3), style=(0.1, 0.3, 3),
                            tolerance_of="best cell", reference_photos=reference, tolerance=tolerance,
                            model=["model", 0], clip=["clip", 0], vae=["vae", 0]),
        "dump": {"class_type": "TinyTensorDump", "inputs": {"name": sheet, "image": ["sweep", 0]}},
        "plot": {"class_type": "TinyTensorDump", "inputs": {"name": sheet + "_plot", "image": ["sweep", 1]}},
        "stack": {"class_type": "TinyShow", "inputs": {"value": ["sweep", 2]}},
        "scores": {"class_type": "TinyShow", "inputs": {"value": ["sweep", 4]}},
    }, sheet


def test_a_local_3x3_sweep_makes_a_sheet_of_nine_labelled_cells_and_a_rerun_generates_nothing(
        comfy, client, local_loras, reference_photos):
    prompt, sheet_name = local_graph(local_loras, reference_photos)
    result = client.run(prompt)
    assert result.status == "success", result.error_message

    scores = json.loads(json.loads(shown(result, "scores")["text"][0]))
    assert scores["personal"] == [0.7, 0.85, 1.0] and scores["style"] == [0.1, 0.2, 0.3]
    assert len(scores["cells"]) == 9
    assert {c["label"] for c in scores["cells"]} == {"no face"}          # the tiny FLUX draws no faces
    assert scores["likeness"] == [[None] * 3] * 3
    assert not scores["recommendation"]["personal"]
    assert shown(result, "stack") is None                              # no pick: what builds on it is blocked
    text = "\n".join(shown(result, "sweep")["text"])
    assert text.startswith("Nothing to recommend") and "(9 generated, 0 reused)" in text

    sheet = load_file(comfy.base_dir / "output" / f"{sheet_name}.safetensors")["image"][0].numpy()
    tile = 256                                                          # 64 px images, shown at the full tile
    assert sheet.shape == (TOP + GAP + 3 * (tile + GAP), LEFT + GAP + 3 * (tile + GAP), 3)
    plot = load_file(comfy.base_dir / "output" / f"{sheet_name}_plot.safetensors")["image"][0].numpy()
    assert plot.shape == (500, 800, 3) and plot.std() > 0.05

    journal = SeedJournal(user(comfy))
    entries = [e for e in journal.entries() if e.extra.get("sweep") == scores["sweep"]]
    assert len(entries) == 9 and {e.source for e in entries} == {"local"}
    assert sorted({tuple(e.extra["sweep_strengths"]) for e in entries}) == [
        (p, s) for p in (0.7, 0.85, 1.0) for s in (0.1, 0.2, 0.3)]
    assert all(e.prompt.startswith("pelarbues, ") and len(e.stack) == 2 for e in entries)
    for cell in scores["cells"]:                        # each cell of the sheet shows the image made for it
        entry = next(e for e in entries if e.extra["sweep_strengths"] == [cell["personal"], cell["style"]])
        stored = np.asarray(Image.open(entry.images[0]).convert("RGB").resize((tile, tile), Image.LANCZOS),
                            np.float32) / 255
        r, c = scores["personal"].index(cell["personal"]), scores["style"].index(cell["style"])
        left, top, right, bottom = cell_box(_geometry(scores), r, c)
        assert (right - left, bottom - top) == (tile, tile)
        shown_cell = sheet[top:bottom - BAND, left:right]
        assert np.abs(shown_cell - stored[:tile - BAND]).mean() < 0.01
    images = {e.images[0] for e in entries}
    assert len(images) == 9 and len({Image.open(p).tobytes() for p in images}) > 1

    lines = len(journal.path.read_text().splitlines())
    again, _ = local_graph(local_loras, reference_photos, tolerance=7.0)   # changed: ComfyUI runs the node again
    second = client.run(again)
    assert second.status == "success", second.error_message
    assert "(0 generated, 9 reused)" in "\n".join(shown(second, "sweep")["text"])
    assert len(journal.path.read_text().splitlines()) == lines               # nothing sampled, nothing journaled


def _geometry(scores) -> SweepResult:
    """A result of the sweep's shape, for the sheet's cell boxes."""
    grid = SweepGrid(tuple(scores["personal"]), tuple(scores["style"]))
    cells = [Cell(r, c, p, s, [CellImage(0, 1234, np.zeros((64, 64, 3), np.float32))])
             for r, c, p, s in grid.cells()]
    return SweepResult("x", LoraRef("a"), LoraRef("b"), grid, cells,
                       Recommendation(None, None, None, None, 5, "best cell", ""), "local", ("p",), (1,), "dlib")


# --- on Replicate: the fake, with real faces ----------------------------------------------------------------
@pytest.fixture
def faces(replicate_fake):
    """Every prediction of this test returns a real face that depends on its inputs (tools/real_faces.py)."""
    replicate_fake.use_images(lambda model, version, inputs, i: real_faces.styled_portrait(inputs, i))
    return replicate_fake


def replicate_loras(comfy) -> tuple[str, str]:
    """A personal LoRA installed by the trainer (its version in the metadata) and a Civitai LoRA with its
    .civitai.info: both files Replicate can fetch by their recorded source."""
    folder = comfy.base_dir / "models" / "loras"
    me, style = unique("pelarbues"), unique("film")
    write_lora(folder / f"{me}.safetensors", "diffusers", factors(seed=41),
               {"likeness_trigger_word": "pelarbues",
                "likeness_destination_version": f"likeness-tester/{me}:{'ab' * 32}"})
    write_lora(folder / f"{style}.safetensors", "kohya", factors(seed=42, modules=("single_blocks.0.linear2",)))
    (folder / f"{style}.civitai.info").write_text(json.dumps({"id": 99001, "downloadUrl":
                                                              "https://civitai.com/api/download/models/99001"}))
    return f"{me}.safetensors", f"{style}.safetensors"


def replicate_graph(loras, reference, **sweep) -> dict:
    me, style = loras
    return {"sweep": sweep_node(f"{me}, 0.9\n{style}, 0.2", reference_photos=reference, **sweep),
            "stack": {"class_type": "TinyShow", "inputs": {"value": ["sweep", 2]}},
            "scores": {"class_type": "TinyShow", "inputs": {"value": ["sweep", 4]}}}


def test_a_replicate_sweep_creates_one_prediction_per_new_cell_and_recommends_by_likeness(
        comfy, client, faces, reference_photos):
    me, style = loras = replicate_loras(comfy)
    result = client.run(replicate_graph(loras, reference_photos))
    assert result.status == "success", result.error_message

    scores = json.loads(json.loads(shown(result, "scores")["text"][0]))
    assert scores["style"] == [0.0, 0.1, 0.225, 0.35] and scores["personal"] == [0.8, 1.0]
    assert faces.count("POST", CREATE) == 8                           # 2 × (3 + the personal-only column)
    sent = sorted((round(p["input"]["lora_scale"] * 1.5, 3), round(p["input"].get("extra_lora_scale", 0) * 1.5, 3))
                  for p in map(faces.prediction, faces.prediction_ids()))
    assert sent == sorted((p, s) for p in (0.8, 1.0) for s in (0.0, 0.1, 0.225, 0.35))   # go_fast: strength / 1.5
    inputs = [faces.prediction(i)["input"] for i in faces.prediction_ids()]
    assert {i["lora_weights"] for i in inputs} == {f"likeness-tester/{me[:-12]}/{'ab' * 32}"}
    assert {i.get("extra_lora") for i in inputs} == {None, "https://civitai.com/api/download/models/99001"}

    grid = scores["likeness"]
    assert all(v is not None for row in grid for v in row)           # every image showed a face and was scored
    for row in grid:                                                  # the stronger the style, the less alike
        assert row[0] > row[-1] + 10
    rec = scores["recommendation"]
    assert rec["personal"] in (0.8, 1.0) and rec["style"] in (0.1, 0.225, 0.35)
    assert rec["likeness"] >= rec["reference"] - 5
    assert json.loads(shown(result, "stack")["text"][0]) == [[me, rec["personal"], rec["personal"]],
                                                              [style, rec["style"], rec["style"]]]
    text = "\n".join(shown(result, "sweep")["text"])
    assert text.startswith("Recommended: personal") and "8 generated, 0 reused" in text and "cost $0.26" in text
    assert any("8 images on Replicate (8 new, 0 stored), 4 at a time: about $0.26" in t
               for t in result.texts_for("sweep"))
    replicate_entries = [e for e in SeedJournal(user(comfy)).entries() if e.source == "replicate"
                         and e.extra.get("prediction_id") in faces.prediction_ids()]
    assert len(replicate_entries) == 8

    # a wider grid: only the new row is paid for
    wider = client.run(replicate_graph(loras, reference_photos, personal=(0.8, 1.0, 3), tolerance=6.0))
    assert wider.status == "success", wider.error_message
    assert faces.count("POST", CREATE) == 12
    assert "4 generated, 8 reused" in "\n".join(shown(wider, "sweep")["text"])

    # the same sweep again, with another tolerance (so ComfyUI runs the node): nothing is created
    again = client.run(replicate_graph(loras, reference_photos, personal=(0.8, 1.0, 3), tolerance=4.0))
    assert again.status == "success", again.error_message
    assert faces.count("POST", CREATE) == 12
    assert "0 generated, 12 reused" in "\n".join(shown(again, "sweep")["text"])


def test_a_sweep_over_the_monthly_budget_is_refused_before_any_call(comfy, client, faces, reference_photos):
    config = user(comfy) / "config.json"
    config.write_text(json.dumps({"monthly_budget_usd": 0.0}), encoding="utf-8")
    try:
        result = client.run(replicate_graph(replicate_loras(comfy), reference_photos))
    finally:
        config.unlink()
    assert result.status == "error"
    message = result.error_message
    assert "BudgetError" in message and "8 new FLUX images" in message and "$0.26" in message
    assert "refused before anything was paid" in message
    assert faces.requests == []                                        # not even a schema lookup


def test_cancel_cancels_the_predictions_in_flight_and_starts_no_more(comfy, client, faces, reference_photos):
    faces.prediction_plan = replace(faces.prediction_plan, sync=False, stall_at_tick=1)
    prompt_id = client.queue(replicate_graph(replicate_loras(comfy), reference_photos))
    faces.wait_for(lambda f: f.count("POST", CREATE) >= 4 and all(
        f.prediction(i)["status"] == "processing" for i in f.prediction_ids()))
    client.interrupt()
    result = client.wait(prompt_id)

    assert result.status == "interrupted"
    assert faces.count("POST", CREATE) == 4                            # four in flight; the other four never started
    assert faces.count("POST", r"/cancel$") == 4
    assert {faces.prediction(i)["status"] for i in faces.prediction_ids()} == {"canceled"}
    assert any("4 prediction(s) in flight canceled" in t for t in result.texts_for("sweep"))


def test_measured_mode_uses_the_newest_sweep_of_the_same_files(comfy, client, faces, reference_photos):
    me, style = loras = replicate_loras(comfy)
    sweep = client.run(replicate_graph(loras, reference_photos, personal=(0.9, 1.0, 2), style=(0.15, 0.3, 2)))
    assert sweep.status == "success", sweep.error_message
    rec = json.loads(json.loads(shown(sweep, "scores")["text"][0]))
    folder = comfy.base_dir / "models" / "loras"
    renamed = unique("film_copy") + ".safetensors"                     # the same file under another name
    shutil.copy(folder / style, folder / renamed)
    other = unique("other") + ".safetensors"                           # a different file: no sweep
    write_lora(folder / other, "kohya", factors(seed=43, modules=("single_blocks.0.linear2",)))

    def stack(rows):
        return {"model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
                "stack": {"class_type": "LikenessLoraStack", "inputs": {
                    "model": ["model", 0], "rows": rows, "balance": "measured", "target_total": 1.2,
                    "clamp_min": 0.15, "clamp_max": 0.25, "anchor_row": 1}},
                "show": {"class_type": "TinyShow", "inputs": {"value": ["stack", 2]}}}

    result = client.run(stack(f"{me}, 0.9\n{renamed}, 0.2\n{other}, 0.2"))
    assert result.status == "success", result.error_message
    applied = {name: s for name, s, _ in json.loads(shown(result, "show")["text"][0])}
    want = rec["recommendation"]
    assert applied[me] == pytest.approx(want["personal"]) and applied[renamed] == pytest.approx(want["style"])
    report = "\n".join(shown(result, "stack")["text"])
    assert f"from sweep {rec['sweep']}" in report
    assert f"no sweep of {me} with {other}" in report and "row 3 uses the anchor rule" in report
    rows_ui = {r["lora"]: r for r in shown(result, "stack")["likeness_stack"]}
    assert rows_ui[renamed]["decided_by"] == "measured" and rows_ui[renamed]["sweep"] == rec["sweep"]
    assert rows_ui[renamed]["sweep_likeness"] == want["likeness"]
    assert rows_ui[me]["decided_by"] == "measured" and rows_ui[other]["decided_by"] == "anchor"

    record = SweepResults(user(comfy)).records()[-1]
    assert record.id == rec["sweep"] and record.style_name == style   # matched by content, not by name


def test_the_find_the_balance_workflow_runs_as_saved_and_costs_what_its_note_says(comfy, client, faces,
                                                                                   reference_photos):
    workflow = json.loads((REPO / "workflows" / "5-find-the-balance.json").read_text())
    prompt = workflow_prompt(workflow, client.get("/object_info"))
    (sweep_id,) = [k for k, n in prompt.items() if n["class_type"] == "LikenessStrengthSweep"]
    (final_id,) = [k for k, n in prompt.items() if n["class_type"] == "LikenessReplicateFluxSampler"]
    sweep = prompt[sweep_id]["inputs"]
    assert (sweep["where"], sweep["personal_steps"], sweep["style_steps"], sweep["seeds"]) == ("replicate", 4, 4,
                                                                                                "1234")
    me, style = replicate_loras(comfy)                                  # the user's two files, as the note asks
    sweep["rows"] = json.dumps([{"lora": me, "strength": 0.9, "on": True}, {"lora": style, "strength": 0.2,
                                                                            "on": True}])
    sweep["reference_photos"] = reference_photos
    result = client.run(prompt)
    assert result.status == "success", result.error_message

    note = next(n for n in workflow["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert "20 images on flux-dev-lora at about $0.032 each ≈ $0.64" in note and "about $0.67 in all" in note
    assert any("20 images on Replicate (20 new, 0 stored), 4 at a time: about $0.64" in t
               for t in result.texts_for(sweep_id))
    text = "\n".join(shown(result, sweep_id)["text"])
    assert text.startswith("Recommended:") and "cost $0.64" in text
    assert faces.count("POST", CREATE) == 21                          # 20 cells + the one final image
    final = faces.prediction(faces.prediction_ids()[-1])["input"]        # made with the recommended stack
    recommended = text.split("Recommended: personal ")[1].split(" — ")[0].split(" + style ")
    assert final["lora_scale"] * 1.5 == pytest.approx(float(recommended[0]), abs=1e-3)
    assert final["extra_lora_scale"] * 1.5 == pytest.approx(float(recommended[1]), abs=1e-3)
    assert shown(result, final_id) is not None

"""Training the personal LoRA with LikenessReplicateTrainer in a real ComfyUI, against the fake Replicate."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import CANARY_TOKEN
from harness import photos
from harness.client import ComfyClient
from harness.restarts import kill_mid_training_and_requeue
from harness.workflows import widget_names

CREATE = r"/versions/[0-9a-f]+/trainings$"
OWNER = "likeness-tester"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def workflow(folder: str, trigger: str, destination: str, output_folder: str = "", **trainer) -> dict:
    inputs = {"dataset": ["1", 2], "destination": destination, "steps": 0, "lora_rank": 32,
              "learning_rate": 0.0004, "layers": "7/12/16/20", "custom_layers_regex": "",
              "optimizer": "adamw8bit", "batch_size": 1, "resolution": "1024", "caption_dropout_rate": 0.1,
              "autocaption": False, "trainer_version": "", "extra_inputs": "{}", **trainer}
    return {"1": {"class_type": "LikenessDatasetLoader",
                  "inputs": {"folder": folder, "trigger_word": trigger, "crop": "center", "size": 256,
                             "convert": True, "output_folder": output_folder}},
            "2": {"class_type": "LikenessReplicateTrainer", "inputs": inputs}}


def photo_folder(base_dir: Path, trigger: str, count: int = 10) -> str:
    name = unique("photos-")
    photos.photo_set(base_dir / "input" / name, count, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    return name


def summary(result) -> str:
    """The trainer's ui text, from its `executed` event (/history can lag behind execution_success)."""
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == "2":
            return "\n".join((event["data"].get("output") or {}).get("text", []))
    return "\n".join(result.outputs.get("2", {}).get("text", []))


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


def test_train_from_the_canvas_installs_a_lora_that_loraloader_lists(comfy, client, fake):
    trigger = unique("tok")
    model = unique("face-")
    assert f"{OWNER}/{model}" not in fake.models
    result = client.run(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))

    assert result.status == "success", result.error_message
    (training_id,) = fake.training_ids()
    assert fake.count("POST", CREATE) == 1
    assert fake.training(training_id)["input"]["steps"] == 400           # auto: 40 × 10 photos
    assert fake.models[f"{OWNER}/{model}"]["visibility"] == "private"   # destination missing → created
    lora = comfy.base_dir / "models" / "loras" / f"{model}.safetensors"
    assert lora.is_file()
    lora_names = client.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert f"{model}.safetensors" in lora_names                          # usable at once, no restart
    text = summary(result)
    assert f"{model}.safetensors" in text and training_id in text and "cost $" in text
    texts = result.texts_for("2")
    assert any("about $" in t and "estimate" in t for t in texts)
    assert any("Training on Replicate: step" in t and f"/p/{training_id}" in t for t in texts)
    assert result.progress("2"), "the node's progress bar moves"
    everything = comfy.log_text() + "\n".join(t for _, t in result.texts) + text
    assert CANARY_TOKEN not in everything


def test_requeue_does_not_start_a_second_training(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    folder = photo_folder(comfy.base_dir, trigger)
    first = client.run(workflow(folder, trigger, f"{OWNER}/{model}"))
    assert first.status == "success", first.error_message
    # the same photos and captions prepared into another folder: the trainer runs again, with the same work
    again = client.run(workflow(folder, trigger, f"{OWNER}/{model}", output_folder=unique("elsewhere-")))
    assert again.status == "success", again.error_message
    assert "2" not in again.cached_nodes()
    assert fake.count("POST", CREATE) == 1 and fake.count("POST", "/v1/files") == 1
    assert "reusing" in summary(again) or any("reusing" in t for t in again.texts_for("2"))


def test_restart_mid_training_reattaches_to_the_same_training(fresh_comfy, fake):
    server = fresh_comfy()
    trigger, model = unique("tok"), unique("face-")
    prompt = workflow(photo_folder(server.base_dir, trigger), trigger, f"{OWNER}/{model}")
    (training_id,), result = kill_mid_training_and_requeue(server, fake, prompt, "2", stall_at_tick=4)
    assert result.status == "success", result.error_message
    assert fake.training_ids() == [training_id] and fake.count("POST", CREATE) == 1
    assert any(f"Re-attaching to training {training_id}" in t for t in result.texts_for("2"))
    assert (server.base_dir / "models" / "loras" / f"{model}.safetensors").is_file()


def test_interrupt_cancels_the_training_on_replicate(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    fake.plan_next(stall_at_tick=4)
    prompt_id = client.queue(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    client.wait_for_text("2", lambda t: "Training on Replicate: step" in t, timeout=120)
    client.interrupt()
    result = client.wait(prompt_id)
    assert result.status == "interrupted"
    (training_id,) = fake.training_ids()
    assert fake.training(training_id)["status"] == "canceled"
    assert fake.count("POST", rf"/trainings/{training_id}/cancel$") == 1
    assert any("canceled training" in t for t in result.texts_for("2"))
    assert not (comfy.base_dir / "models" / "loras" / f"{model}.safetensors").exists()


def test_a_failed_training_shows_replicates_error_text(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    fake.plan_next(outcome="failed", error="CUDA out of memory. Tried to allocate 2.00 GiB")
    result = client.run(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    assert result.status == "error"
    assert "ServiceError: The training failed on Replicate: CUDA out of memory" in result.error_message


@pytest.mark.parametrize("tar, words", [("traversal", "outside the archive"), ("symlink", "a link"),
                                        ("oversized", "over the")])
def test_a_malicious_weights_tar_is_refused(comfy, client, fake, tar, words):
    trigger, model = unique("tok"), unique("face-")
    fake.plan_next(tar=tar)
    result = client.run(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    assert result.status == "error" and words in result.error_message, result.error_message
    loras = comfy.base_dir / "models" / "loras"
    assert not [p for p in loras.iterdir() if p.name.startswith(model) or p.name.startswith(".likeness")]
    assert not Path("/tmp/likeness-escaped.safetensors").exists()


def test_schema_invalid_input_is_refused_before_any_upload(comfy, client, fake):
    trigger, model = unique("tok"), unique("face-")
    result = client.run(workflow(photo_folder(comfy.base_dir, trigger), trigger, f"{OWNER}/{model}",
                                 extra_inputs='{"wandb_sample_interval": 0}'))
    assert result.status == "error"
    assert "InputError" in result.error_message and "wandb_sample_interval" in result.error_message
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_budget_below_the_estimate_refuses_before_upload(fresh_comfy, fake):
    server = fresh_comfy(LIKENESS_MONTHLY_BUDGET_USD="0.25")
    trigger, model = unique("tok"), unique("face-")
    with ComfyClient(server.url) as client:
        result = client.run(workflow(photo_folder(server.base_dir, trigger), trigger, f"{OWNER}/{model}"))
    assert result.status == "error"
    assert "BudgetError: " in result.error_message
    assert "refused before anything was paid" in result.error_message
    assert fake.count("POST", "/v1/files") == 0 and fake.count("POST", CREATE) == 0


def test_train_workflow_wires_loader_captioner_trainer_and_its_values_queue(comfy, client, fake):
    import json

    from harness.comfy_server import REPO

    workflow = json.loads((REPO / "workflows" / "2-train-on-replicate.json").read_text())
    info = client.get("/object_info")
    by_type = {n["type"]: n for n in workflow["nodes"]}
    assert {"LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessReplicateTrainer",
            "MarkdownNote"} <= set(by_type)
    values = {}
    for node_type in ("LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessReplicateTrainer"):
        names = widget_names(info[node_type])
        assert len(names) == len(by_type[node_type]["widgets_values"]), node_type
        values[node_type] = dict(zip(names, by_type[node_type]["widgets_values"]))
    ids = {n["id"]: n["type"] for n in workflow["nodes"]}
    wired = {(ids[src], ids[dst]) for _, src, _, dst, _, _ in workflow["links"]}
    assert {("LikenessDatasetLoader", "LikenessGeminiCaptioner"),
            ("LikenessGeminiCaptioner", "LikenessReplicateTrainer")} <= wired
    for _, src, slot, dst, _, kind in workflow["links"]:                 # every link joins matching types
        assert info[ids[src]]["output"][slot] == kind or kind == "*"
    trainer = values["LikenessReplicateTrainer"]
    assert (trainer["steps"], trainer["lora_rank"], trainer["learning_rate"], trainer["layers"],
            trainer["optimizer"], trainer["autocaption"]) == (0, 32, 0.0004, "7/12/16/20", "adamw8bit", False)
    note = by_type["MarkdownNote"]["widgets_values"][0]
    assert "REPLICATE_API_TOKEN" in note and "destination" in note.lower()

    # The trainer's widget values, queued as they are (captions from .txt files instead of Gemini).
    trigger = unique("tok")
    destination = unique("wf-")
    prompt = {
        "1": {"class_type": "LikenessDatasetLoader",
              "inputs": {**values["LikenessDatasetLoader"], "folder": photo_folder(comfy.base_dir, trigger),
                         "trigger_word": trigger, "crop": "center", "size": 256}},
        "2": {"class_type": "LikenessReplicateTrainer",
              "inputs": {**trainer, "dataset": ["1", 2], "destination": destination}}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    (training_id,) = fake.training_ids()
    assert fake.training(training_id)["input"]["layers_to_optimize_regex"] == \
        "transformer.single_transformer_blocks.(7|12|16|20).proj_out"
    assert f"{destination}.safetensors" in summary(result)                # a bare name: the account's model
    assert f"{OWNER}/{destination}" in fake.models


def test_a_caption_edited_after_training_captions_and_trains_again_on_the_next_queue(comfy, client, fake, gemini):
    """Guards issue 17 §9: ComfyUI's cache must not serve the old LoRA after a caption of the prepared set was
    edited (through the canvas's caption route); an unchanged set stays cached (no new training)."""
    trigger, model = unique("tok"), unique("face-")
    prompt = workflow(photo_folder(comfy.base_dir, trigger, count=3), trigger, f"{OWNER}/{model}",
                      output_folder=f"likeness/datasets/{trigger}")
    prompt["3"] = {"class_type": "LikenessGeminiCaptioner", "inputs": {
        "dataset": ["1", 2], "model": "gemini-3.8-flash", "custom_model": "", "instructions": "Caption it.",
        "overwrite": False, "concurrency": 2, "rpm": 0, "forbidden_traits": "eye color", "vertex_project": "",
        "vertex_location": "global"}}
    prompt["2"]["inputs"]["dataset"] = ["3", 0]
    first = client.run(prompt)
    assert first.status == "success", first.error_message
    assert len(fake.training_ids()) == 1

    unchanged = client.run(prompt)
    assert unchanged.status == "success" and {"2", "3"} <= set(unchanged.cached_nodes())
    assert len(fake.training_ids()) == 1

    edited = f"{trigger}, a man in a red coat in a garden, photo 0"
    status, _ = client.request("POST", "/likeness/caption", {"folder": f"likeness/datasets/{trigger}",
                                                              "image": "photo00.jpg", "caption": edited})
    assert status == 200
    again = client.run(prompt)
    assert again.status == "success", again.error_message
    assert "2" not in again.cached_nodes() and "3" not in again.cached_nodes()
    assert len(fake.training_ids()) == 2 and len(gemini.generate_calls()) == 0      # captions cost nothing
    newest = fake.training(fake.training_ids()[-1])["input"]["input_images"].rsplit("/", 1)[-1]
    import zipfile
    with zipfile.ZipFile(fake.files[newest]["path"]) as z:
        assert z.read("photo00.txt").decode().strip() == edited                     # the edit is what trained

    settled = client.run(prompt)
    assert settled.status == "success" and "2" in settled.cached_nodes() and len(fake.training_ids()) == 2

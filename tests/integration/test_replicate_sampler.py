"""Generating on Replicate with LikenessReplicateFluxSampler in a real ComfyUI, against the fake Replicate."""
from __future__ import annotations

import io
import json
import uuid

import pytest
from PIL import Image

from conftest import CANARY_TOKEN
from fakes.replicate import FLUX_DEV_LORA, image_colour
from harness.client import ComfyClient
from harness.comfy_server import REPO
from harness.workflows import widget_values, workflow_prompt
from likeness.generation.seed_journal import SeedJournal

OFFICIAL_CREATE = rf"^/v1/models/{FLUX_DEV_LORA}/predictions$"
VERSION_CREATE = r"^/v1/predictions$"
CREATE = r"^/v1/(predictions|models/[^/]+/[^/]+/predictions)$"
PROMPT = "an analog portrait of a man in a green field, film grain"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def graph(*, stack=None, **sampler) -> dict:
    inputs = {"prompt": PROMPT, "trigger_words": "pelarbues", "seed": 1234, "steps": 35, "guidance": 2.75,
              "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
              "lora_strength": 0.9, "go_fast": True, "run_on": "auto", "version": "", "lora_weights": "",
              "rerun": False, **sampler}
    prompt = {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": inputs},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": unique("rep-")}}}
    if stack is not None:
        prompt["3"] = {"class_type": "TinyLoraStack", "inputs": {"stack": json.dumps(stack)}}
        inputs["lora_stack"] = ["3", 0]
    return prompt


def report(result, node: str = "1") -> str:
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == node:
            return "\n".join((event["data"].get("output") or {}).get("text", []))
    return "\n".join(result.outputs.get(node, {}).get("text", []))


def saved(client, result, node: str = "2") -> list[Image.Image]:
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == node:
            return [Image.open(io.BytesIO(client.view(img))) for img in event["data"]["output"]["images"]]
    return [Image.open(io.BytesIO(client.view(img))) for img in result.outputs[node]["images"]]


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


def test_flux_dev_lora_with_prefer_wait_saves_the_image(comfy, client, fake):
    weights = unique("someone/face-")
    result = client.run(graph(lora_weights=weights))

    assert result.status == "success", result.error_message
    assert fake.count("POST", OFFICIAL_CREATE) == 1
    create = next(r for r in fake.requests if r.method == "POST")
    assert create.headers.get("Prefer", "").startswith("wait")
    (prediction_id,) = fake.prediction_ids()
    inputs = fake.prediction(prediction_id)["input"]
    assert inputs["prompt"] == f"pelarbues, {PROMPT}" and inputs["num_inference_steps"] == 35
    assert inputs["guidance"] == 2.75 and inputs["lora_weights"] == weights and inputs["lora_scale"] == 0.6
    (image,) = saved(client, result)
    assert image.size == (64, 64) and image.convert("RGB").getpixel((0, 0)) == image_colour(inputs)
    text = report(result)
    assert prediction_id in text and "cost $0.0320" in text and "lora_scale 0.6" in text
    assert any("about $0.0320" in t and "estimate" in t for t in result.texts_for("1"))
    entry = SeedJournal(comfy.pack_dir).find("last")
    assert entry.extra["prediction_id"] == prediction_id and entry.extra["cost_usd"] == pytest.approx(0.032)
    assert CANARY_TOKEN not in comfy.log_text() + text + "\n".join(t for _, t in result.texts)


def test_a_trained_version_is_polled_with_progress_text(comfy, client, fake):
    version = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    fake.plan_prediction(sync=False, ticks=4, predict_time=6.0)
    result = client.run(graph(version=version, go_fast=False, aspect_ratio="2:3"))

    assert result.status == "success", result.error_message
    assert fake.count("POST", VERSION_CREATE) == 1 and fake.count("GET", r"^/v1/predictions/") >= 4
    assert any("Generating on Replicate: step" in t for t in result.texts_for("1"))
    assert result.progress("1"), "the node's progress bar moves"
    (image,) = saved(client, result)
    assert image.size == (43, 64)                                      # 2:3
    (prediction_id,) = fake.prediction_ids()
    assert fake.prediction(prediction_id)["input"]["lora_scale"] == pytest.approx(0.9487, abs=1e-4)
    assert f"cost ${6.0 * 0.001525:.4f}" in report(result)


@pytest.mark.parametrize("output", ["data", "delivery", "public"])
def test_outputs_as_data_urls_and_file_urls_and_the_token_stays_with_replicate(comfy, client, fake, output):
    fake.plan_prediction(sync=output == "data", output=output)
    result = client.run(graph(lora_weights="someone/face", seed=hash(output) % 10000))
    assert result.status == "success", result.error_message
    (image,) = saved(client, result)
    assert image.size == (64, 64)
    files = [r for r in fake.requests if r.path.startswith(("/delivery/pbxt/", "/public/"))]
    if output == "data":
        assert files == []
    elif output == "delivery":                                          # Replicate's own host: token sent
        assert len(files) == 1 and files[0].authorized and files[0].status == 200
    else:                                                               # another host: no Authorization at all
        assert len(files) == 1 and not files[0].auth_sent and files[0].host.startswith("localhost:")
        assert files[0].status == 200


def test_a_failed_prediction_shows_replicates_error_text(comfy, client, fake):
    version = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    fake.plan_prediction(sync=False, outcome="failed", error="CUDA out of memory. Tried to allocate 1.00 GiB")
    result = client.run(graph(version=version))
    assert result.status == "error"
    assert "ServiceError: The prediction failed on Replicate: CUDA out of memory" in result.error_message


def test_a_prediction_canceled_on_replicate_says_so(comfy, client, fake):
    version = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    fake.plan_prediction(sync=False, stall_at_tick=1, ticks=4)
    prompt_id = client.queue(graph(version=version))
    client.wait_for_text("1", lambda t: "Generating on Replicate" in t, timeout=120)
    (prediction_id,) = fake.prediction_ids()
    fake.cancel_prediction(prediction_id)
    result = client.wait(prompt_id)
    assert result.status == "error"
    assert f"Prediction {prediction_id} was canceled on Replicate" in result.error_message


def test_requeue_reuses_the_stored_image_and_rerun_pays_again(comfy, client, fake):
    seed = 4242
    first = client.run(graph(lora_weights="someone/face", seed=seed))
    assert first.status == "success", first.error_message
    # the same work again, through a prompt ComfyUI does not recognise (the text differs only in spaces)
    again = client.run(graph(lora_weights="someone/face", seed=seed, prompt=f"  {PROMPT}  "))
    assert again.status == "success", again.error_message
    assert "1" not in again.cached_nodes()
    assert fake.count("POST", CREATE) == 1
    assert "Reused 1 stored image(s)" in report(again) and "nothing paid" in report(again)
    assert saved(client, again)[0].tobytes() == saved(client, first)[0].tobytes()

    rerun = client.run(graph(lora_weights="someone/face", seed=seed, rerun=True))
    assert rerun.status == "success", rerun.error_message
    assert fake.count("POST", CREATE) == 2 and len(fake.prediction_ids()) == 2


def test_after_a_restart_the_same_work_is_still_not_paid_twice(fresh_comfy, fake):
    server = fresh_comfy()
    prompt = graph(lora_weights="someone/face", seed=77)
    with ComfyClient(server.url) as client:
        assert client.run(prompt).status == "success"
    server.stop()
    server.start()
    with ComfyClient(server.url) as client:
        result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert fake.count("POST", CREATE) == 1
    assert "Reused" in report(result)


def test_interrupt_cancels_the_prediction_on_replicate(comfy, client, fake):
    version = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    fake.plan_prediction(sync=False, stall_at_tick=2, ticks=5)
    prompt_id = client.queue(graph(version=version))
    client.wait_for_text("1", lambda t: "Generating on Replicate" in t, timeout=120)
    client.interrupt()
    result = client.wait(prompt_id)
    assert result.status == "interrupted"
    (prediction_id,) = fake.prediction_ids()
    assert fake.prediction(prediction_id)["status"] == "canceled"
    assert fake.count("POST", rf"^/v1/predictions/{prediction_id}/cancel$") == 1
    assert any("canceled prediction" in t for t in result.texts_for("1"))


@pytest.mark.parametrize("status, body, error, words", [
    (401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401},
     "InputError", "refused the API token"),
    (402, {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model. Go to "
           "https://replicate.com/account/billing#billing to purchase credit.", "status": 402},
     "ServiceError", "no credit left. Add credit at https://replicate.com/account/billing"),
    (422, {"title": "Input validation failed", "detail": "- input.seed: Invalid type. Expected: integer\n",
           "status": 422, "invalid_fields": [{"type": "invalid_type", "field": "input.seed"}]},
     "InputError", "refused the inputs: - input.seed"),
    (429, {"detail": "Request was throttled. Your rate limit resets in ~1s.", "status": 429, "retry_after": 1},
     "ServiceError", "throttling requests"),
])
def test_refusals_become_clear_messages(comfy, client, fake, status, body, error, words):
    fake.inject("POST", OFFICIAL_CREATE, status, body, times=10)
    result = client.run(graph(lora_weights="someone/face", seed=status))
    assert result.status == "error"
    assert f"{error}: " in result.error_message and words in result.error_message, result.error_message
    assert fake.prediction_ids() == []


def test_an_unknown_version_is_a_clear_404(comfy, client, fake):
    result = client.run(graph(version="likeness-tester/nobody:" + "0" * 64))
    assert result.status == "error"
    assert "InputError" in result.error_message and "has no version 000000000000" in result.error_message
    assert fake.count("POST", CREATE) == 0


def test_a_throttled_create_is_retried_once_the_limit_resets(comfy, client, fake):
    fake.throttle("POST", OFFICIAL_CREATE, times=1, retry_after=1)
    result = client.run(graph(lora_weights="someone/face", seed=429429))
    assert result.status == "success", result.error_message
    assert fake.count("POST", OFFICIAL_CREATE) == 2 and len(fake.prediction_ids()) == 1


def test_schema_invalid_input_is_refused_before_any_call(comfy, client, fake):
    result = client.run(graph(lora_weights="someone/face", lora_strength=5.0, go_fast=False))
    assert result.status == "error"
    assert "InputError" in result.error_message and "lora_scale: 5.0 is above the maximum 3" in result.error_message
    assert fake.count("POST") == 0


def test_a_stack_with_more_than_one_extra_lora_says_which_rows_were_left_out(comfy, client, fake):
    loras = comfy.base_dir / "models" / "loras"
    style = unique("style-")
    loras.mkdir(parents=True, exist_ok=True)
    (loras / f"{style}.safetensors").write_bytes(b"\0" * 64)
    (loras / f"{style}.civitai.info").write_text(json.dumps({"id": 555, "modelId": 9}))
    stack = [[f"{style}.safetensors", 0.2, 0.2], ["https://huggingface.co/a/b/resolve/main/c.safetensors", 0.15, 0.15],
             ["someone/grain", 0.1, 0.1]]
    version = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    result = client.run(graph(version=version, go_fast=False, stack=stack))
    assert result.status == "success", result.error_message
    (prediction_id,) = fake.prediction_ids()
    inputs = fake.prediction(prediction_id)["input"]
    assert inputs["extra_lora"] == "https://civitai.com/api/download/models/555"
    assert inputs["extra_lora_scale"] == 0.2 and inputs["lora_scale"] == 0.9       # two LoRAs: each once
    text = report(result)
    assert "Left out" in text and "c.safetensors (0.15)" in text and "someone/grain (0.1)" in text


def test_the_generate_workflow_queues_as_saved(comfy, client, fake):
    workflow = json.loads((REPO / "workflows" / "4-generate-on-replicate.json").read_text())
    info = client.get("/object_info")
    prompt = workflow_prompt(workflow, info)
    (sampler_id,) = [k for k, n in prompt.items() if n["class_type"] == "LikenessReplicateFluxSampler"]
    values = prompt[sampler_id]["inputs"]
    assert (values["steps"], values["guidance"], values["lora_strength"], values["rerun"]) == (35, 2.75, 0.9, False)
    note = next(n for n in workflow["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
    assert "REPLICATE_API_TOKEN" in note and "version" in note
    sampler_node = next(n for n in workflow["nodes"] if n["type"] == "LikenessReplicateFluxSampler")
    assert sampler_node["widgets_values"][3] == "fixed"                # requeue reuses instead of paying
    assert widget_values(sampler_node, info["LikenessReplicateFluxSampler"])["seed"] == values["seed"]
    values["version"] = fake.add_trained_version(f"likeness-tester/{unique('me-')}")
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert "SaveImage" not in [n["class_type"] for n in prompt.values()] and values["filename_prefix"]
    (image,) = saved(client, result, sampler_id)                       # the sampler saves its own PNG
    assert image.size == (43, 64) and json.loads(image.text["likeness"])["seed"] == values["seed"]  # 2:3
    assert fake.count("POST", VERSION_CREATE) == 1


def test_a_trained_version_with_the_nodes_defaults_runs_bf16_and_gets_the_strength_asked_for(comfy, client, fake):
    """Guards issue 17 §1: the node's own defaults (as /object_info gives them to the canvas) run a trained
    version the way its endpoint defaults (go_fast off, bf16), and 0.9 is merged as 0.9; the tooltip says what a
    strength means on each path."""
    info = client.get("/object_info/LikenessReplicateFluxSampler")["LikenessReplicateFluxSampler"]
    required = info["input"]["required"]
    defaults = {name: spec[1]["default"] for name, spec in required.items() if len(spec) > 1 and "default" in spec[1]}
    assert defaults["go_fast"] is False and defaults["lora_strength"] == 0.9
    tooltip = required["lora_strength"][1]["tooltip"]
    assert "custom" in tooltip and "bf16" in tooltip and "fp8" in tooltip
    version = fake.add_trained_version(f"likeness-tester/{unique('faces-')}")
    prompt = graph(**{**defaults, "prompt": PROMPT, "version": version, "seed": 77})
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    (prediction_id,) = fake.prediction_ids()
    assert fake.applied_strengths(prediction_id) == {"path": "bf16", "lora": pytest.approx(0.9, abs=2e-4),
                                                     "extra": None}

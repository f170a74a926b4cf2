"""Cancel always cancels the prediction on Replicate, whenever it lands.

ComfyUI's progress hook checks for an interrupt on every progress update, and clears the flag as it raises. An
interrupt that landed while the sampler was asking Replicate for the prediction's status was raised by the next
progress update, past the sampler's own check: the node stopped and the prediction went on, paid. With no
pause between status checks (poll 0) nearly every interrupt lands there, so each of these runs used to fail.
"""
from __future__ import annotations

import uuid

from harness.client import ComfyClient


def sampler_prompt(version: str, seed: int) -> dict:
    inputs = {"prompt": "a portrait on a rooftop", "trigger_words": "pelarbues", "seed": seed, "steps": 35,
              "guidance": 2.75, "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1,
              "output_format": "png", "lora_strength": 0.9, "go_fast": True, "run_on": "auto", "version": version,
              "lora_weights": "", "rerun": False}
    return {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": inputs}}


def test_an_interrupt_during_a_status_check_still_cancels_the_prediction(fresh_comfy, replicate_fake):
    server = fresh_comfy(LIKENESS_REPLICATE_POLL_S="0")
    version = replicate_fake.add_trained_version(f"likeness-tester/me-{uuid.uuid4().hex[:6]}")
    for attempt in range(3):
        client = ComfyClient(server.url)           # a fresh client: its progress texts are this run's only
        try:
            replicate_fake.plan_prediction(sync=False, stall_at_tick=2, ticks=5)
            prompt_id = client.queue(sampler_prompt(version, 500 + attempt))
            client.wait_for_text("1", lambda t: "Generating on Replicate" in t, timeout=120)
            client.request("POST", "/interrupt", {"prompt_id": prompt_id})
            result = client.wait(prompt_id)
        finally:
            client.close()
        prediction_id = replicate_fake.prediction_ids()[-1]
        assert result.status == "interrupted", result.error_message
        assert replicate_fake.prediction(prediction_id)["status"] == "canceled", f"attempt {attempt + 1}"
        assert replicate_fake.count("POST", rf"^/v1/predictions/{prediction_id}/cancel$") == 1

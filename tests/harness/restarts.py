"""Killing ComfyUI in the middle of a paid job and queuing the same prompt on the restarted server."""
from __future__ import annotations

from harness.client import ComfyClient, PromptResult
from harness.comfy_server import ComfyServer


def kill_mid_training_and_requeue(server: ComfyServer, fake_replicate, prompt: dict, trainer_node: str,
                                  stall_at_tick: int = 3) -> tuple[str, PromptResult]:
    """Queues `prompt`, SIGKILLs ComfyUI once the training reports a step (Replicate trains on), lets the
    fake finish it, restarts ComfyUI and queues the same prompt again. Returns (training id, result)."""
    fake_replicate.plan_next(stall_at_tick=stall_at_tick)
    client = ComfyClient(server.url)
    try:
        client.queue(prompt)
        client.wait_for_text(trainer_node, lambda t: "Training on Replicate: step" in t, timeout=120)
        server.stop(kill=True)
    finally:
        client.close()
    (training_id,) = fake_replicate.training_ids()
    fake_replicate.release(training_id)
    server.start()
    client = ComfyClient(server.url)
    try:
        return training_id, client.run(prompt)
    finally:
        client.close()

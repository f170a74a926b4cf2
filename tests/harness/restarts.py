"""Killing ComfyUI in the middle of a paid job and queuing the same prompt on the restarted server."""
from __future__ import annotations

from harness.client import ComfyClient, PromptResult
from harness.comfy_server import ComfyServer


def kill_mid_training_and_requeue(server: ComfyServer, fake_replicate, prompt: dict, trainer_node: str,
                                  stall_at_tick: int = 3, trainings: int = 1) -> tuple[list[str], PromptResult]:
    """Queues `prompt`, SIGKILLs ComfyUI once each of its `trainings` reports a step (Replicate trains on),
    lets the fake finish them, restarts ComfyUI and queues the same prompt again. Returns (training ids,
    result)."""
    for _ in range(trainings):
        fake_replicate.plan_next(stall_at_tick=stall_at_tick)
    with ComfyClient(server.url) as client:
        client.queue(prompt)
        client.wait_for_text(trainer_node, lambda t: t.count("Training on Replicate: step") >= trainings,
                             timeout=120)
        server.stop(kill=True)
    training_ids = fake_replicate.training_ids()
    fake_replicate.release()
    server.start()
    with ComfyClient(server.url) as client:
        return training_ids, client.run(prompt)

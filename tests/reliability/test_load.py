"""Load: 200 queued prompts through the LoRA stack and the local sampler on the tiny FLUX: every one completes,
the server stays up, and its memory after all 200 is that after the first 20 (±10%): nothing piles up per
prompt (LoRA reads, patched models, journal entries, progress state)."""
from __future__ import annotations

import uuid

from comfy_test_pack.graphs import sampler_node, stack_node
from comfy_test_pack.lora_files import factors, write_lora
from harness.client import ComfyClient

TOTAL, WARM = 200, 20


def prompt(lora: str, i: int, prefix: str) -> dict:
    # strength and seed change every time: the stack and the sampler really run (no ComfyUI cache answer)
    return {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "stack": stack_node(["model", 0], f"{lora}, {0.5 + i * 0.001:.3f}", clip=["clip", 0]),
        "sampler": sampler_node(["stack", 0], ["stack", 1], ["vae", 0], f"portrait number {i}",
                                trigger_words=["stack", 3], seed=i, steps=1, width=16, height=16),
        "save": {"class_type": "SaveImage", "inputs": {"images": ["sampler", 0], "filename_prefix": prefix}},
    }


def test_200_prompts_complete_and_memory_stays_flat(fresh_comfy, tally):
    server = fresh_comfy()
    lora = f"load_{uuid.uuid4().hex[:6]}.safetensors"
    write_lora(server.base_dir / "models" / "loras" / lora, "diffusers", factors(seed=3, magnitude=0.2),
               {"likeness_trigger_word": "pelarbues"})
    prefix = f"load/{uuid.uuid4().hex[:6]}"
    client = ComfyClient(server.url)
    try:
        first = [client.queue(prompt(lora, i, prefix)) for i in range(WARM)]
        statuses = [client.wait(p).status for p in first]
        rss_warm = server.rss_bytes()
        rest = [client.queue(prompt(lora, i, prefix)) for i in range(WARM, TOTAL)]
        statuses += [client.wait(p).status for p in rest]
        rss_end = server.rss_bytes()
        assert client.get("/object_info/LikenessFluxSampler")                   # still serving
        ran = [e for e in client._events if e["type"] == "executing"
               and e["data"].get("node") == "stack" and e["data"].get("prompt_id") in set(first + rest)]
    finally:
        client.close()
    saved = list((server.base_dir / "output" / "load").glob("*.png"))
    assert statuses == ["success"] * TOTAL, {s: statuses.count(s) for s in set(statuses)}
    assert len(saved) == TOTAL and len(ran) == TOTAL                            # every prompt really ran
    assert server.proc.poll() is None
    ratio = rss_end / rss_warm
    tally("load", f"{TOTAL} prompts through stack + local sampler", prompts=TOTAL, completed=statuses.count("success"),
          rss_after_20_mb=round(rss_warm / 2**20, 1), rss_after_200_mb=round(rss_end / 2**20, 1),
          ratio=round(ratio, 3), ok=0.9 <= ratio <= 1.1)
    assert 0.9 <= ratio <= 1.1, f"RSS after {WARM}: {rss_warm / 2**20:.0f} MB, after {TOTAL}: {rss_end / 2**20:.0f} MB"

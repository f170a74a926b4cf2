"""API-format prompt fragments for the tests and the benchmark (plain dicts; no ComfyUI import)."""
from __future__ import annotations

import json


def stack_node(model, rows, *, clip=None, balance="anchor", target_total=1.2, clamp=(0.15, 0.25), anchor_row=1,
               lora_stack=None) -> dict:
    inputs = {"model": model, "rows": rows if isinstance(rows, str) else json.dumps(rows), "balance": balance,
              "target_total": target_total, "clamp_min": clamp[0], "clamp_max": clamp[1], "anchor_row": anchor_row}
    if clip is not None:
        inputs["clip"] = clip
    if lora_stack is not None:
        inputs["lora_stack"] = lora_stack
    return {"class_type": "LikenessLoraStack", "inputs": inputs}


def sampler_node(model, clip, vae, prompt, *, trigger_words="", seed=42, steps=4, guidance=2.75, width=256,
                 height=256, sampler_name="euler", scheduler="simple", max_shift=1.15, base_shift=0.5,
                 replay=None, filename_prefix=None, **more) -> dict:
    """`more`: the optional inputs as given (candidates, keep, dataset)."""
    inputs = dict(model=model, clip=clip, vae=vae, prompt=prompt, trigger_words=trigger_words, seed=seed,
                  steps=steps, guidance=guidance, width=width, height=height, sampler_name=sampler_name,
                  scheduler=scheduler, max_shift=max_shift, base_shift=base_shift, **more)
    if replay is not None:
        inputs["replay"] = replay
    if filename_prefix is not None:                # None: the node's default (it saves its images)
        inputs["filename_prefix"] = filename_prefix
    return {"class_type": "LikenessFluxSampler", "inputs": inputs}


def core_flux_graph(prefix, model, clip, vae, text, *, seed=42, steps=4, guidance=2.75, width=256, height=256,
                    sampler_name="euler", scheduler="simple", max_shift=1.15, base_shift=0.5) -> dict:
    """CLIPTextEncode → FluxGuidance → ModelSamplingFlux → BasicGuider → RandomNoise → BasicScheduler →
    SamplerCustomAdvanced → VAEDecode; the decoded image is [prefix+"decode", 0], the latent [prefix+"sample", 0]."""
    p = prefix
    return {
        p + "encode": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": text}},
        p + "guidance": {"class_type": "FluxGuidance", "inputs": {"conditioning": [p + "encode", 0],
                                                                  "guidance": guidance}},
        p + "shift": {"class_type": "ModelSamplingFlux", "inputs": {"model": model, "max_shift": max_shift,
                                                                    "base_shift": base_shift, "width": width,
                                                                    "height": height}},
        p + "guider": {"class_type": "BasicGuider", "inputs": {"model": [p + "shift", 0],
                                                               "conditioning": [p + "guidance", 0]}},
        p + "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        p + "sched": {"class_type": "BasicScheduler", "inputs": {"model": [p + "shift", 0], "scheduler": scheduler,
                                                                 "steps": steps, "denoise": 1.0}},
        p + "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler_name}},
        p + "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height,
                                                                       "batch_size": 1}},
        p + "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": [p + "noise", 0], "guider": [p + "guider", 0], "sampler": [p + "select", 0],
            "sigmas": [p + "sched", 0], "latent_image": [p + "latent", 0]}},
        p + "decode": {"class_type": "VAEDecode", "inputs": {"samples": [p + "sample", 0], "vae": vae}},
    }

"""The playground's settings → the API-format prompt of the pack's nodes, and its cost before the run."""
from __future__ import annotations

import json

import pytest

from comfy_test_pack.lora_files import factors, write_lora
from likeness.errors import InputError
from likeness.generation.playground_prompt import (SAMPLER, STACK, LocalModels, build_prompt, estimate,
                                                   nearest_aspect, pick_local_models, settings_from_json)
from likeness.loras.lora_formats import describe_lora
from likeness.loras.stack_plan import plan_stack
from likeness.loras.strength_balance import StackRow

VERSION = "likeness-tester/me:" + "a" * 64
LOCAL = LocalModels("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")
STYLE_URL = "https://civitai.com/api/download/models/4242"


def defaults(class_type: str, candidates: bool = False) -> dict:
    """Node inputs with their defaults, as the route reads them from the nodes' schemas."""
    found = {
        "LikenessLoraStack": {"rows": "[]", "balance": "anchor", "target_total": 1.2, "clamp_min": 0.15,
                              "clamp_max": 0.25, "anchor_row": 1,
                              "_choices": {"balance": ["off", "anchor", "proportional", "effect"]}},
        "LikenessReplicateFluxSampler": {"prompt": "", "trigger_words": "", "seed": 0, "steps": 35, "guidance": 2.75,
                                         "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1,
                                         "output_format": "png", "lora_strength": 0.9, "go_fast": True,
                                         "run_on": "auto", "version": "", "lora_weights": "", "rerun": False},
        "LikenessFluxSampler": {"prompt": "", "trigger_words": "", "seed": 0, "steps": 35, "guidance": 2.75,
                                "width": 1024, "height": 1024, "sampler_name": "euler", "scheduler": "simple",
                                "max_shift": 1.15, "base_shift": 0.5},
    }[class_type]
    return {**found, "candidates": 1} if candidates and "Sampler" in class_type else found


def body(**changes) -> dict:
    return {"where": "replicate", "personal": "me.safetensors", "prompt": "a portrait in a diner", "seed": 7,
            "styles": [{"lora": STYLE_URL, "strength": 0.2, "on": True}], **changes}


def test_replicate_prompt_balances_in_the_stack_and_runs_the_trained_version():
    settings = settings_from_json(body(trigger_word="pelarbues", aspect_ratio="2:3"))
    prompt = build_prompt(settings, defaults, version=VERSION)
    stack, sampler = prompt[STACK], prompt[SAMPLER]
    assert [n["class_type"] for n in prompt.values()] == ["LikenessLoraStack", "LikenessReplicateFluxSampler"]
    assert sampler["inputs"]["filename_prefix"] == "likeness/playground", "the sampler saves its PNG with its entry"
    assert json.loads(stack["inputs"]["rows"]) == [{"lora": "me.safetensors", "strength": 0.9, "on": True},
                                                   {"lora": STYLE_URL, "strength": 0.2, "on": True}]
    assert stack["inputs"]["anchor_row"] == 1 and "model" not in stack["inputs"]
    assert sampler["inputs"]["version"] == VERSION and sampler["inputs"]["lora_stack"] == [STACK, 2]
    assert (sampler["inputs"]["seed"], sampler["inputs"]["steps"], sampler["inputs"]["guidance"]) == (7, 35, 2.75)
    assert sampler["inputs"]["aspect_ratio"] == "2:3" and sampler["inputs"]["go_fast"] is True   # the node's default
    assert "candidates" not in sampler["inputs"]


def test_local_prompt_loads_flux_and_applies_the_stack_to_it():
    prompt = build_prompt(settings_from_json(body(where="local", aspect_ratio="16:9")), defaults, local=LOCAL)
    types = {k: n["class_type"] for k, n in prompt.items()}
    assert sorted(types.values()) == ["DualCLIPLoader", "LikenessFluxSampler", "LikenessLoraStack", "UNETLoader",
                                      "VAELoader"]
    sampler = prompt[SAMPLER]["inputs"]
    assert (sampler["width"], sampler["height"]) == (1344, 768) and sampler["sampler_name"] == "euler"
    assert prompt[STACK]["inputs"]["model"][0] != prompt[STACK]["inputs"]["clip"][0]


def test_candidates_go_to_a_sampler_that_has_them_and_are_refused_by_one_that_does_not():
    with_candidates = build_prompt(settings_from_json(body(candidates=4)), lambda c: defaults(c, True), version=VERSION)
    assert with_candidates[SAMPLER]["inputs"]["candidates"] == 4
    with pytest.raises(InputError, match="no candidates input"):
        build_prompt(settings_from_json(body(candidates=4)), defaults, version=VERSION)


@pytest.mark.parametrize("changes, where", [
    ({"balance": "measured"}, "not offered by this LikenessLoraStack"),
])
def test_a_balance_mode_the_stack_does_not_offer_is_refused(changes, where):
    with pytest.raises(InputError, match=where):
        build_prompt(settings_from_json(body(**changes)), defaults, version=VERSION)


def test_replicate_needs_a_lora_trained_by_likeness_and_local_needs_the_files():
    with pytest.raises(InputError, match="no Replicate version in its metadata"):
        build_prompt(settings_from_json(body()), defaults, version="")
    with pytest.raises(InputError, match="no FLUX.1-dev files"):
        build_prompt(settings_from_json(body(where="local")), defaults, local=None)


@pytest.mark.parametrize("changes, message", [
    ({"personal": ""}, "Choose the personal LoRA"),
    ({"prompt": "   "}, "Write the prompt"),
    ({"where": "mars"}, "where must be one of replicate, local"),
    ({"steps": 0}, "steps must be between 1 and 50"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"guidance": "3"}, "guidance must be a number"),
    ({"aspect_ratio": "custom"}, "aspect_ratio must be one of"),
    ({"styles": [{"lora": "x", "strength": 0.2}] * 9}, "at most 8"),
    ({"prompt": "x" * 5000}, "prompt is too long"),
])
def test_bad_settings_get_a_message_for_their_control(changes, message):
    with pytest.raises(InputError, match=message):
        settings_from_json(body(**changes))


def test_local_models_are_found_by_their_usual_names():
    found = pick_local_models(["sdxl.safetensors", "flux/flux1-dev-fp8.safetensors"],
                              ["clip_l.safetensors", "t5/t5xxl_fp8_e4m3fn.safetensors"], ["ae.safetensors"])
    assert found == LocalModels("flux/flux1-dev-fp8.safetensors", "clip_l.safetensors",
                                "t5/t5xxl_fp8_e4m3fn.safetensors", "ae.safetensors")
    assert pick_local_models(["flux1-dev.safetensors"], ["clip_l.safetensors"], ["ae.safetensors"]) is None


@pytest.mark.parametrize("size, aspect", [((1024, 1024), "1:1"), ((832, 1216), "2:3"), ((64, 43), "3:2"),
                                          ((1920, 1080), "16:9"), ((0, 5), "1:1")])
def test_nearest_aspect(size, aspect):
    assert nearest_aspect(*size) == aspect


def test_the_estimate_is_the_samplers_own_and_local_runs_are_free(tmp_path):
    lora = write_lora(tmp_path / "me.safetensors", "diffusers", factors(modules=("single_blocks.0.linear2",)),
                      {"likeness_trigger_word": "pelarbues", "likeness_destination_version": VERSION})
    settings = settings_from_json(body(trigger_word="pelarbues"))
    prompt = build_prompt(settings, defaults, version=VERSION)
    stack = plan_stack([StackRow(r["lora"], r["strength"], r["on"]) for r in settings.rows()], "anchor",
                       target_total=1.2, clamp=(0.15, 0.25), anchor=0, describe=lambda name: describe_lora(lora))
    locate = {"me.safetensors": str(lora)}.get
    cost = estimate(settings, prompt[SAMPLER]["inputs"], stack, tmp_path, locate)
    assert cost.usd == pytest.approx((6.0 + 0.2 * 35) * 0.001525) and not cost.reused
    assert cost.model == "likeness-tester/me" and "About $0.0198 on likeness-tester/me" == cost.text()
    four = estimate(settings_from_json(body(trigger_word="pelarbues", candidates=4)),
                    prompt[SAMPLER]["inputs"], stack, tmp_path, locate)
    assert four.usd == pytest.approx(4 * cost.usd)
    local = estimate(settings_from_json(body(where="local")), {}, stack, tmp_path, locate)
    assert local.usd == 0 and local.text() == "Runs on this machine: no charge"

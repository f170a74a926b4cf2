"""Stacking a personal LoRA with Civitai LoRAs on a tiny FLUX through the real server: balanced strengths,
ComfyUI's exact patch formula, every key format, LORA_STACK interop, queue-time checks, no re-reads."""
from __future__ import annotations

import json
import os
import uuid

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfy_test_pack.graphs import sampler_node, stack_node
from comfy_test_pack.lora_files import Factor, factors, write_lora, write_sd_lora, write_xlabs_lora
from harness.client import ComfyClient, PromptRejected
from likeness.loras.strength_balance import LowRankDelta, StackRow, balance_strengths

HIDDEN = 128
FULL = ("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv")
Q_PROJ = "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"


def loras_dir(comfy):
    path = comfy.base_dir / "models" / "loras"
    path.mkdir(parents=True, exist_ok=True)
    return path


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:6]}"


def run_stack(client, comfy, rows, name, with_clip=True, **stack_kw):
    extra = stack_kw.pop("extra_nodes", None)
    prompt = {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "stack": stack_node(["model", 0], rows, clip=["clip", 0] if with_clip else None, **stack_kw),
        "dump": {"class_type": "TinyModelWeights", "inputs": {"model": ["stack", 0], "name": name,
                                                              **({"clip": ["stack", 1]} if with_clip else {})}},
        "words": {"class_type": "TinyShow", "inputs": {"value": ["stack", 3]}},
        "loras": {"class_type": "TinyShow", "inputs": {"value": ["stack", 2]}},
    }
    if extra:
        prompt.update(extra)
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    weights = load_file(comfy.base_dir / "output" / f"{name}.safetensors")
    return result, weights


@pytest.fixture(scope="module")
def base_weights(comfy):
    client = ComfyClient(comfy.url)
    result = client.run({
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "dump": {"class_type": "TinyModelWeights", "inputs": {"model": ["model", 0], "clip": ["clip", 0],
                                                              "name": "base"}},
    })
    client.close()
    assert result.status == "success", result.error_message
    return load_file(comfy.base_dir / "output" / "base.safetensors")


def expected(base, stacked: list[tuple[float, list[Factor]]], clip_parts=()) -> dict[str, torch.Tensor]:
    """W + Σ sᵢ·(αᵢ/rᵢ)·BᵢAᵢ on each factor's rows, in float64."""
    out = {k: v.double().clone() for k, v in base.items()}
    for strength, parts in stacked:
        for f in parts:
            key, row = f.target(HIDDEN)
            delta = strength * f.scale * (f.up.double() @ f.down.double())
            out["model." + key][row: row + delta.shape[0]] += delta
    for strength, f in clip_parts:
        out["clip." + Q_PROJ] += strength * f.scale * (f.up.double() @ f.down.double())
    return out


def assert_weights(actual, want, keys=None):
    keys = keys or [k for k in want if k in actual]
    for key in keys:
        diff = (actual[key].double() - want[key]).abs().max().item()
        assert diff < 2e-6, f"{key}: max diff {diff}"


def ui(result, node="stack"):
    """A node's ui output, from its `executed` event (/history can lag behind execution_success)."""
    for e in result.events:
        if e["type"] == "executed" and e["data"]["node"] == node:
            return e["data"]["output"]
    return result.outputs[node]


def test_anchor_balance_applies_comfyuis_exact_formula(comfy, client, base_weights):
    personal = factors(seed=1, modules=("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv:q"))
    civitai = factors(seed=2, alpha=2.0, modules=FULL)
    me, style = unique("me"), unique("style")
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal, {"likeness_trigger_word": "pelarbues"})
    write_lora(loras_dir(comfy) / f"{style}.safetensors", "kohya", civitai,
               {"ss_trigger_words": '["ink style"]'})
    rows = [{"lora": f"{me}.safetensors", "strength": 0.9, "on": True},
            {"lora": f"{style}.safetensors", "strength": 0.6, "on": True}]
    result, weights = run_stack(client, comfy, rows, unique("anchor"))

    assert_weights(weights, expected(base_weights, [(0.9, personal), (0.25, civitai)]))
    rows_ui = ui(result)["likeness_stack"]
    assert [r["effective"] for r in rows_ui] == pytest.approx([0.9, 0.25])
    assert [r["format"] for r in rows_ui] == ["diffusers", "kohya"]
    assert [(r["keys_applied"], r["keys"]) for r in rows_ui] == [(2, 2), (2, 2)]
    assert "2 of 2 keys apply to this model" in ui(result)["text"][0]
    assert json.loads(ui(result, "words")["text"][0]) == "pelarbues, ink style"
    assert json.loads(ui(result, "loras")["text"][0]) == [[f"{me}.safetensors", 0.9, 0.9],
                                                          [f"{style}.safetensors", 0.25, 0.25]]


def test_every_flux_format_patches_the_same_way(comfy, client, base_weights):
    parts = {"diffusers": factors(seed=3, modules=("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv:k")),
             "kohya": factors(seed=4, alpha=8.0, modules=FULL),
             "bfl": factors(seed=5, modules=FULL),
             "onetrainer": factors(seed=6, alpha=1.0, modules=("single_blocks.0.linear2",
                                                               "double_blocks.0.img_attn.qkv:v"))}
    rows, stacked = [], []
    for n, (fmt, fs) in enumerate(parts.items()):
        name = unique(fmt)
        write_lora(loras_dir(comfy) / f"{name}.safetensors", fmt, fs)
        strength = 0.3 + 0.2 * n
        rows.append({"lora": f"{name}.safetensors", "strength": strength, "on": True})
        stacked.append((strength, fs))
    result, weights = run_stack(client, comfy, rows, unique("formats"), balance="off")
    assert_weights(weights, expected(base_weights, stacked))
    assert [r["format"] for r in ui(result)["likeness_stack"]] == list(parts)


def test_an_sd_lora_is_reported_as_not_applying_and_an_xlabs_lora_is_converted(comfy, client, base_weights):
    me, xlabs, sd = unique("me"), unique("xlabs"), unique("sd15")
    personal = factors(seed=7)
    x_flux = factors(seed=17, modules=("double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj"))
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal)
    write_lora(loras_dir(comfy) / f"{xlabs}.safetensors", "xlabs", x_flux)
    write_sd_lora(loras_dir(comfy) / f"{sd}.safetensors")
    rows = f"{me}.safetensors, 1.0\n{xlabs}.safetensors, 0.8\n{sd}.safetensors, 0.8"
    result, weights = run_stack(client, comfy, rows, unique("xlabs_sd"), balance="off", with_clip=False)
    text = ui(result)["text"][0]
    assert "2 of 2 keys apply to this model (XLabs keys converted here" in text
    assert f"{sd}.safetensors: left out (0 of 4 keys apply to this model) — an SD 1.5 / SDXL LoRA, not for FLUX" \
        in text
    rows_ui = ui(result)["likeness_stack"]
    assert [(r["format"], r["keys_applied"], r["keys"]) for r in rows_ui][1:] == [("xlabs", 2, 2), ("kohya", 0, 4)]
    # x-flux adds up(down(x)) · lora_weight with no alpha: ComfyUI's scale 1 matches it
    assert_weights(weights, expected(base_weights, [(1.0, personal), (0.8, x_flux)]))


def test_both_streams_of_an_xlabs_lora_apply(comfy, client):
    xlabs = unique("xlabs4")
    write_xlabs_lora(loras_dir(comfy) / f"{xlabs}.safetensors", hidden=HIDDEN)
    result, _ = run_stack(client, comfy, f"{xlabs}.safetensors, 0.5", unique("xlabs4"), balance="off",
                          with_clip=False, anchor_row=0)
    assert [(r["keys_applied"], r["keys"]) for r in ui(result)["likeness_stack"]] == [(4, 4)]


def test_a_lora_stack_from_another_pack_combines_with_the_rows(comfy, client, base_weights):
    me, other = unique("me"), unique("other")
    personal, civitai = factors(seed=8), factors(seed=9, alpha=4.0, modules=FULL)
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal)
    write_lora(loras_dir(comfy) / f"{other}.safetensors", "kohya", civitai)
    extra = {"efficiency": {"class_type": "TinyLoraStack",
                            "inputs": {"stack": json.dumps([[f"{other}.safetensors", 0.4, 0.4]])}}}
    result, weights = run_stack(client, comfy, f"{me}.safetensors, 0.9", unique("interop"),
                                lora_stack=["efficiency", 0], extra_nodes=extra)
    assert_weights(weights, expected(base_weights, [(0.9, personal), (0.25, civitai)]))
    assert [r["source"] for r in ui(result)["likeness_stack"]] == ["row", "stack"]
    assert json.loads(ui(result, "loras")["text"][0])[1] == [f"{other}.safetensors", 0.25, 0.25]


def test_text_encoder_keys_patch_the_clip_when_connected(comfy, client, base_weights):
    name = unique("te")
    unet = factors(seed=10, alpha=4.0, modules=FULL)
    g = torch.Generator().manual_seed(11)
    te = Factor("te", torch.randn(64, 4, generator=g) * 0.1, torch.randn(4, 64, generator=g) * 0.1, 2.0)
    path = write_lora(loras_dir(comfy) / f"{name}.safetensors", "kohya", unet)
    sd = load_file(path)
    prefix = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    sd.update({f"{prefix}.lora_down.weight": te.down, f"{prefix}.lora_up.weight": te.up,
               f"{prefix}.alpha": torch.tensor(2.0)})
    save_file(sd, str(path))
    result, weights = run_stack(client, comfy, f"{name}.safetensors, 0.7", unique("te"), balance="off")
    assert_weights(weights, expected(base_weights, [(0.7, unet)], clip_parts=[(0.7, te)]))
    assert ui(result)["likeness_stack"][0]["keys_applied"] == 3


def test_effect_mode_scales_by_the_size_of_the_weight_change(comfy, client, base_weights):
    me, big = unique("me"), unique("big")
    personal = factors(seed=12, modules=("single_blocks.0.linear2",))
    strong = factors(seed=13, alpha=64.0, modules=FULL, magnitude=0.2)     # α/r = 16 and larger factors
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal)
    write_lora(loras_dir(comfy) / f"{big}.safetensors", "kohya", strong)
    result, weights = run_stack(client, comfy, f"{me}.safetensors, 0.9\n{big}.safetensors, 0.2",
                                unique("effect"), balance="effect")
    as_delta = [[LowRankDelta(f.target(HIDDEN)[0], f.up, f.down, f.scale, f.target(HIDDEN)[1]) for f in fs]
                for fs in (personal, strong)]
    want = balance_strengths([StackRow("a", 0.9), StackRow("b", 0.2)], "effect", deltas=as_delta)
    effective = [r["effective"] for r in ui(result)["likeness_stack"]]
    assert effective == pytest.approx(want.strengths, rel=1e-5)
    assert effective[1] < 0.01                                   # a strong LoRA gets a small strength
    assert_weights(weights, expected(base_weights, [(effective[0], personal), (effective[1], strong)]))
    assert "cos with personal" in ui(result)["text"][0]


def test_missing_lora_is_refused_at_queue_time_with_its_name(comfy, client):
    prompt = {"model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
              "stack": stack_node(["model", 0], "not_here_anywhere.safetensors, 0.9"),
              "dump": {"class_type": "TinyModelWeights", "inputs": {"model": ["stack", 0], "name": "never"}}}
    with pytest.raises(PromptRejected) as rejected:
        client.queue(prompt)
    assert "not_here_anywhere.safetensors" in rejected.value.messages()
    assert not (comfy.base_dir / "output" / "never.safetensors").exists()


def test_subfolders_with_backslashes_or_slashes_both_work(comfy, client, base_weights):
    name = unique("ink")
    personal = factors(seed=14)
    write_lora(loras_dir(comfy) / "styles" / f"{name}.safetensors", "diffusers", personal)
    for sep in ("\\", "/"):
        result, weights = run_stack(client, comfy, f"styles{sep}{name}.safetensors, 0.5", unique("sub"),
                                    balance="off")
        assert_weights(weights, expected(base_weights, [(0.5, personal)]))


def test_changing_only_a_strength_does_not_reread_the_file(comfy, client, base_weights):
    name = unique("cached")
    path = loras_dir(comfy) / f"{name}.safetensors"
    original = factors(seed=15)
    write_lora(path, "diffusers", original)
    first, _ = run_stack(client, comfy, f"{name}.safetensors, 0.9", unique("first"), balance="off")
    assert ui(first)["likeness_stack"][0]["read_from_disk"] is True
    # Same size and mtime, other values: a re-read would show in the weights.
    st = os.stat(path)
    write_lora(path, "diffusers", factors(seed=16))
    assert os.stat(path).st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second, weights = run_stack(client, comfy, f"{name}.safetensors, 0.4", unique("second"), balance="off")
    assert ui(second)["likeness_stack"][0]["read_from_disk"] is False
    assert_weights(weights, expected(base_weights, [(0.4, original)]))


def test_a_typed_strength_inside_the_clamp_range_is_kept_and_the_total_shows_the_gap(comfy, client, base_weights):
    """Anchor mode: a style row typed 0.2 (inside 0.15–0.25) stays 0.2 in the weights and the LORA_STACK; the
    report says how far the total is from 1.2 (issue 17, item 2)."""
    me, style = unique("me"), unique("style")
    personal, civitai = factors(seed=31), factors(seed=32, alpha=2.0, modules=FULL)
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal)
    write_lora(loras_dir(comfy) / f"{style}.safetensors", "kohya", civitai)
    result, weights = run_stack(client, comfy, f"{me}.safetensors, 0.9\n{style}.safetensors, 0.2", unique("kept"))
    assert_weights(weights, expected(base_weights, [(0.9, personal), (0.2, civitai)]))
    assert [r["effective"] for r in ui(result)["likeness_stack"]] == pytest.approx([0.9, 0.2])
    assert json.loads(ui(result, "loras")["text"][0])[1] == [f"{style}.safetensors", 0.2, 0.2]
    assert "total 1.10, 0.10 below the target 1.2 (mode anchor)" in ui(result)["text"][0]


def test_a_lora_that_applies_nothing_is_left_out_of_balance_trigger_words_stack_and_journal(comfy, client,
                                                                                           base_weights):
    """An SD 1.5 LoRA on FLUX (0 of 4 keys apply) takes no share of the total, adds no trigger word, is not in
    the LORA_STACK nor in the journal, and its line says why (issue 17, item 3)."""
    me, sd, style = unique("me"), unique("sd15"), unique("style")
    personal, civitai = factors(seed=33), factors(seed=34, alpha=2.0, modules=FULL)
    write_lora(loras_dir(comfy) / f"{me}.safetensors", "diffusers", personal, {"likeness_trigger_word": "pelarbues"})
    write_sd_lora(loras_dir(comfy) / f"{sd}.safetensors")
    (loras_dir(comfy) / f"{sd}.txt").write_text("sks", encoding="utf-8")          # its trigger word
    write_lora(loras_dir(comfy) / f"{style}.safetensors", "kohya", civitai)
    rows = f"{me}.safetensors, 0.9\n{sd}.safetensors, 0.8\n{style}.safetensors, 0.8"
    sampler = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], "a portrait", trigger_words=["stack", 3],
                           seed=7, steps=1, width=64, height=64)
    extra = {"vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}}, "sampler": sampler,
             "preview": {"class_type": "PreviewImage", "inputs": {"images": ["sampler", 0]}}}
    result, weights = run_stack(client, comfy, rows, unique("leftout"), extra_nodes=extra)
    # alone with the personal row, the style row gets all that is left of 1.2: 0.3, clamped to 0.25
    assert_weights(weights, expected(base_weights, [(0.9, personal), (0.25, civitai)]))
    rows_ui = ui(result)["likeness_stack"]
    assert [r["effective"] for r in rows_ui] == pytest.approx([0.9, 0.0, 0.25])
    assert "SD 1.5" in rows_ui[1]["left_out"] and rows_ui[0]["left_out"] == rows_ui[2]["left_out"] == ""
    assert json.loads(ui(result, "words")["text"][0]) == "pelarbues"                  # no "sks"
    assert [name for name, _, _ in json.loads(ui(result, "loras")["text"][0])] == [f"{me}.safetensors",
                                                                                   f"{style}.safetensors"]
    entry = ui(result, "sampler")["likeness_journal"][0]
    assert [s["lora"] for s in entry["stack"]] == [f"{me}.safetensors", f"{style}.safetensors"]
    assert "sks" not in entry["prompt"] and "total 1.15" in ui(result)["text"][0]


def test_coverage_counts_factor_shapes_not_just_key_names(comfy, client, base_weights):
    """A LoRA with FLUX's key names but another width is not "2 of 2 keys apply": its factors do not fit the
    weights, so it applies 0 and is left out; a LoRA where one of two fits applies that one, and ComfyUI logs
    no shape error for the other (issue 17, item 4)."""
    wide, half = unique("wide"), unique("half")
    other_width = factors(hidden=96, seed=35, modules=FULL)                 # this tiny FLUX is 128 wide
    write_lora(loras_dir(comfy) / f"{wide}.safetensors", "kohya", other_width)
    good = factors(seed=36, modules=("single_blocks.0.linear2",))
    bad = factors(hidden=96, seed=37, modules=("double_blocks.0.img_attn.qkv",))
    write_lora(loras_dir(comfy) / f"{half}.safetensors", "kohya", good + bad)
    log_start = len(comfy.log_text())
    result, weights = run_stack(client, comfy, f"{wide}.safetensors, 0.8\n{half}.safetensors, 0.5",
                                unique("shapes"), balance="off", anchor_row=0, with_clip=False)
    rows_ui = ui(result)["likeness_stack"]
    assert [(r["keys_applied"], r["keys"]) for r in rows_ui] == [(0, 2), (1, 2)]
    assert "shapes differ" in rows_ui[0]["left_out"] and rows_ui[1]["left_out"] == ""
    text = ui(result)["text"][0]
    assert f"{wide}.safetensors: left out (0 of 2 keys apply to this model)" in text
    assert "1 of 2 keys apply to this model (1 named a weight of another shape: left out)" in text
    assert_weights(weights, expected(base_weights, [(0.5, good)]))
    assert [name for name, _, _ in json.loads(ui(result, "loras")["text"][0])] == [f"{half}.safetensors"]
    log = comfy.log_text()[log_start:]
    assert "ERROR lora" not in log and "shape" not in log.lower(), log[-2000:]

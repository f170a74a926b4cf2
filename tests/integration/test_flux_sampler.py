"""Generating with the personal LoRA on a tiny FLUX through the real server: the same pixels as the core
custom-sampler graph, the seed journal (file + PNG metadata), replay, favourites, progress and interrupt."""
from __future__ import annotations

import json
import uuid

import pytest

from harness.comfy_server import REPO
from harness.workflows import widget_values
from PIL import Image
from safetensors.torch import load_file

from comfy_test_pack.graphs import core_flux_graph, sampler_node, stack_node
from comfy_test_pack.lora_files import factors, write_lora
from likeness.generation.seed_journal import SeedJournal

PROMPT = "a portrait of a man in a green field, analog photo"


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def loras(comfy) -> tuple[str, str]:
    folder = comfy.base_dir / "models" / "loras"
    me, style = unique("me"), unique("style")
    write_lora(folder / f"{me}.safetensors", "diffusers", factors(seed=21, magnitude=0.3),
               {"likeness_trigger_word": "pelarbues"})
    write_lora(folder / f"{style}.safetensors", "kohya",
               factors(seed=22, alpha=4.0, magnitude=0.3,
                       modules=("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv")))
    return f"{me}.safetensors", f"{style}.safetensors"


def base_nodes(loras) -> dict:
    me, style = loras
    return {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "stack": stack_node(["model", 0], f"{me}, 0.9\n{style}, 0.5", clip=["clip", 0]),
    }


def ui(result, node):
    for e in result.events:
        if e["type"] == "executed" and e["data"]["node"] == node:
            return e["data"]["output"]
    return result.outputs[node]


def dumped(comfy, name):
    return load_file(comfy.base_dir / "output" / f"{name}.safetensors")


def journal(comfy) -> SeedJournal:
    return SeedJournal(comfy.pack_dir)


def test_sampler_gives_the_same_pixels_as_the_core_graph(comfy, client, loras):
    ours, core = unique("ours"), unique("core")
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT,
                                     trigger_words=["stack", 3], seed=1234, steps=5, width=128, height=96)
    prompt.update(core_flux_graph("c_", ["stack", 0], ["stack", 1], ["vae", 0], f"pelarbues, {PROMPT}",
                                  seed=1234, steps=5, width=128, height=96))
    prompt["ours"] = {"class_type": "TinyTensorDump", "inputs": {"name": ours, "image": ["sampler", 0],
                                                                 "latent": ["sampler", 1]}}
    prompt["core"] = {"class_type": "TinyTensorDump", "inputs": {"name": core, "image": ["c_decode", 0],
                                                                 "latent": ["c_sample", 0]}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    a, b = dumped(comfy, ours), dumped(comfy, core)
    assert a["latent"].shape == (1, 16, 12, 16) and a["image"].shape == (1, 96, 128, 3)
    assert a["latent"].std() > 0.1                                    # a real sample, not zeros
    assert a["latent"].dtype == b["latent"].dtype and (a["latent"] == b["latent"]).all()
    assert (a["image"] == b["image"]).all()
    entry = ui(result, "sampler")["likeness_journal"][0]
    assert entry["prompt"] == f"pelarbues, {PROMPT}"                  # the trigger word put first
    assert [s["lora"] for s in entry["stack"]] == list(loras)
    assert [s["strength"] for s in entry["stack"]] == pytest.approx([0.9, 0.25])


def test_a_seed_only_change_does_not_encode_the_prompt_again(comfy, client, loras):
    """As in the core graph, where CLIPTextEncode's output stays in ComfyUI's cache."""
    prompt = base_nodes(loras)
    text = f"{PROMPT}, {unique('encode')}"
    encodes = []
    for seed, extra in ((1, ""), (2, ""), (3, ", at dusk")):
        prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], text + extra,
                                         trigger_words=["stack", 3], seed=seed, steps=1, width=64, height=64)
        prompt["out"] = {"class_type": "TinyTensorDump", "inputs": {"name": unique("enc"), "image": ["sampler", 0]}}
        result = client.run(prompt)
        assert result.status == "success", result.error_message
        encodes.append(comfy.log_text().count("tiny clip encoded a prompt"))
    assert encodes[1] == encodes[0] and encodes[2] > encodes[1]      # new seed: reused; new prompt: encoded


def test_the_lora_changes_the_image(comfy, client, loras):
    with_lora, without = unique("with"), unique("without")
    prompt = base_nodes(loras)
    prompt["a"] = sampler_node(["stack", 0], ["clip", 0], ["vae", 0], PROMPT, seed=7, steps=3, width=64, height=64)
    prompt["b"] = sampler_node(["model", 0], ["clip", 0], ["vae", 0], PROMPT, seed=7, steps=3, width=64, height=64)
    prompt["da"] = {"class_type": "TinyTensorDump", "inputs": {"name": with_lora, "latent": ["a", 1]}}
    prompt["db"] = {"class_type": "TinyTensorDump", "inputs": {"name": without, "latent": ["b", 1]}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert not (dumped(comfy, with_lora)["latent"] == dumped(comfy, without)["latent"]).all()


def test_journal_entry_replays_to_the_same_image(comfy, client, loras):
    first, again = unique("first"), unique("again")
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, trigger_words=["stack", 3],
                                     seed=99, steps=4, guidance=3.0, width=64, height=80)
    prompt["dump"] = {"class_type": "TinyTensorDump", "inputs": {"name": first, "image": ["sampler", 0]}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    entry_id = ui(result, "sampler")["likeness_journal"][0]["id"]
    recorded = journal(comfy).find(entry_id)
    assert (recorded.seed, recorded.steps, recorded.guidance, recorded.width, recorded.height) == (99, 4, 3.0, 64, 80)
    assert recorded.trigger_words == "pelarbues"

    # A new graph: the entry's LoRAs come back through LORA_STACK (balance off), its settings through `replay`;
    # the sampler's own widgets say something else entirely.
    replay = {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "pick": {"class_type": "LikenessJournalReplay", "inputs": {"entry": entry_id[:8]}},
        "stack": stack_node(["model", 0], "", clip=["clip", 0], balance="off", lora_stack=["pick", 1]),
        "sampler": sampler_node(["stack", 0], ["stack", 1], ["vae", 0], "something else", seed=1, steps=2,
                                replay=["pick", 0]),
        "dump": {"class_type": "TinyTensorDump", "inputs": {"name": again, "image": ["sampler", 0]}},
    }
    result = client.run(replay)
    assert result.status == "success", result.error_message
    assert (dumped(comfy, first)["image"] == dumped(comfy, again)["image"]).all()
    replayed = ui(result, "sampler")["likeness_journal"][0]
    assert replayed["replay_of"] == entry_id and replayed["extra"]["note"] == ""


def saved_png(comfy, result, node="sampler") -> Image.Image:
    image = ui(result, node)["images"][0]
    return Image.open(comfy.base_dir / "output" / image["subfolder"] / image["filename"])


def test_the_sampler_saves_each_png_with_its_journal_entry(comfy, client, loras):
    prefix = unique("likeness/me")
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, trigger_words=["stack", 3],
                                     seed=5, steps=2, width=64, height=64, filename_prefix=prefix)
    # As the canvas queues it: the workflow travels in extra_data.extra_pnginfo.
    status, body = client.request("POST", "/prompt", {"prompt": prompt, "client_id": client.client_id,
                                                      "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}}})
    assert status == 200, body
    result = client.wait(body["prompt_id"])
    assert result.status == "success", result.error_message
    png = saved_png(comfy, result)
    meta = json.loads(png.text["likeness"])
    entry = journal(comfy).find(meta["id"])
    assert (meta["seed"], meta["prompt"]) == (5, f"pelarbues, {PROMPT}")
    assert meta["stack"] == entry.stack and [s["strength"] for s in meta["stack"]] == pytest.approx([0.9, 0.25])
    assert "workflow" in png.text and "prompt" in png.text
    image = ui(result, "sampler")["images"][0]
    assert image["subfolder"] == prefix.rsplit("/", 1)[0] and image["filename"].startswith(prefix.rsplit("/")[-1])
    assert entry.images == [f"{image['subfolder']}/{image['filename']}"]       # the journal knows its file


def test_two_samplers_in_one_prompt_each_image_carries_its_own_entry(comfy, client, loras):
    """The shared extra_pnginfo gave every image of the prompt the last sampler's entry; each PNG now carries
    its own, and a Save Image after a sampler gets no stale entry (issue 17, item 18)."""
    prompt = base_nodes(loras)
    for name, seed in (("first", 11), ("second", 12)):
        prompt[name] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, trigger_words=["stack", 3],
                                    seed=seed, steps=1, width=64, height=64, filename_prefix=unique("likeness/two"))
    prompt["scale"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["first", 0], "upscale_method": "nearest-exact",
                                                                "scale_by": 1.0}}
    prompt["save"] = {"class_type": "SaveImage", "inputs": {"images": ["scale", 0],
                                                            "filename_prefix": unique("likeness/core")}}
    status, body = client.request("POST", "/prompt", {"prompt": prompt, "client_id": client.client_id,
                                                      "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}}})
    assert status == 200, body
    result = client.wait(body["prompt_id"])
    assert result.status == "success", result.error_message
    core = saved_png(comfy, result, "save")                 # the first sampler's image, saved by core
    assert "likeness" not in core.text and "workflow" in core.text
    seeds = {name: json.loads(saved_png(comfy, result, name).text["likeness"])["seed"] for name in ("first", "second")}
    assert seeds == {"first": 11, "second": 12}
    ids = {json.loads(saved_png(comfy, result, n).text["likeness"])["id"] for n in ("first", "second")}
    assert {journal(comfy).find(i).seed for i in ids} == {11, 12}


def test_an_empty_prefix_saves_nothing_and_still_journals(comfy, client, loras):
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, seed=13, steps=1,
                                     width=64, height=64, filename_prefix="")
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert ui(result, "sampler").get("images", []) == []
    assert journal(comfy).find(ui(result, "sampler")["likeness_journal"][0]["id"]).images == []


def test_favourite_flag_and_replay_of_the_newest_favourite(comfy, client, loras):
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, seed=31, steps=2,
                                     width=64, height=64)
    prompt["show"] = {"class_type": "TinyTensorDump", "inputs": {"name": unique("fav"), "image": ["sampler", 0]}}
    result = client.run(prompt)
    entry_id = ui(result, "sampler")["likeness_journal"][0]["id"]
    mark = client.run({"fav": {"class_type": "LikenessJournalFavourite",
                               "inputs": {"entry": entry_id, "favourite": True}}})
    assert mark.status == "success", mark.error_message
    assert entry_id in [e.id for e in journal(comfy).favourites()]
    pick = client.run({"pick": {"class_type": "LikenessJournalReplay", "inputs": {"entry": "favourite"}},
                       "show": {"class_type": "TinyShow", "inputs": {"value": ["pick", 3]}}})
    assert json.loads(ui(pick, "show")["text"][0]) == 31


def test_replay_of_an_unknown_id_tells_the_user(comfy, client):
    result = client.run({"pick": {"class_type": "LikenessJournalReplay", "inputs": {"entry": "zzzznotthere"}},
                         "show": {"class_type": "TinyShow", "inputs": {"value": ["pick", 3]}}})
    assert result.status == "error"
    assert "InputError" in result.error_message and "zzzznotthere" in result.error_message


def test_progress_is_reported_per_step(comfy, client, loras):
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["clip", 0], ["vae", 0], PROMPT, seed=unique_seed(), steps=6,
                                     width=64, height=64)
    prompt["dump"] = {"class_type": "TinyTensorDump", "inputs": {"name": unique("progress"),
                                                                 "latent": ["sampler", 1]}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    steps = [p["value"] for p in result.progress("sampler")]
    assert steps[-1] == 6 and all(p["max"] == 6 for p in result.progress("sampler"))


def test_interrupt_stops_sampling(comfy, client, loras):
    prompt = base_nodes(loras)
    prompt["sampler"] = sampler_node(["stack", 0], ["clip", 0], ["vae", 0], PROMPT, seed=unique_seed(),
                                     steps=200, width=512, height=512)
    prompt["dump"] = {"class_type": "TinyTensorDump", "inputs": {"name": unique("stopped"),
                                                                 "latent": ["sampler", 1]}}
    prompt_id = client.queue(prompt)
    client.wait_for_event(lambda e: e["type"] == "progress" and e["data"].get("prompt_id") == prompt_id
                          and e["data"].get("node") == "sampler", timeout=120)
    client.interrupt()
    result = client.wait(prompt_id, timeout=120)
    assert result.status == "interrupted"
    assert max(p["value"] for p in result.progress("sampler")) < 200


def unique_seed() -> int:
    return uuid.uuid4().int % 2**31


def test_generate_workflow_queues_with_its_widget_values(comfy, client, loras):
    workflow = json.loads((REPO / "workflows" / "3-generate-local.json").read_text())
    info = client.get("/object_info")
    by_type = {n["type"]: n for n in workflow["nodes"]}
    assert {"UNETLoader", "DualCLIPLoader", "VAELoader", "LikenessLoraStack", "LikenessFluxSampler",
            "MarkdownNote"} <= set(by_type)
    assert "SaveImage" not in by_type                               # the sampler saves, with its entry
    for loader in ("UNETLoader", "DualCLIPLoader", "VAELoader"):
        assert all(m["url"].startswith("https://huggingface.co/") for m in by_type[loader]["properties"]["models"])
    values = {t: widget_values(by_type[t], info[t]) for t in ("LikenessLoraStack", "LikenessFluxSampler")}
    stack, sampler = values["LikenessLoraStack"], values["LikenessFluxSampler"]
    assert (stack["balance"], stack["target_total"], sampler["steps"], sampler["guidance"]) == ("anchor", 1.2, 35, 2.75)
    for link in workflow["links"]:                                  # every link joins matching types
        _, src, slot, dst, _, kind = link
        src_type = next(n["type"] for n in workflow["nodes"] if n["id"] == src)
        assert info[src_type]["output"][slot] == kind

    # The same widget values, queued on the tiny FLUX with the test's LoRAs in the two rows.
    rows = json.loads(stack.pop("rows"))
    rows[0]["lora"], rows[1]["lora"] = loras
    sampler.update(steps=2, width=64, height=64, trigger_words=["stack", 3])
    prompt = {
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "clip": {"class_type": "TinyFluxClip", "inputs": {}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
        "stack": {"class_type": "LikenessLoraStack", "inputs": {**stack, "rows": json.dumps(rows),
                                                                "model": ["model", 0], "clip": ["clip", 0]}},
        "sampler": {"class_type": "LikenessFluxSampler", "inputs": {**sampler, "model": ["stack", 0],
                                                                    "clip": ["stack", 1], "vae": ["vae", 0]}},
    }
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert [r["effective"] for r in ui(result, "stack")["likeness_stack"]] == pytest.approx([0.9, 0.2])
    assert ui(result, "sampler")["likeness_journal"][0]["prompt"].startswith("pelarbues, A captivating")
    assert sampler["filename_prefix"] == "likeness/pelarbues"
    assert ui(result, "sampler")["images"][0]["subfolder"] == "likeness"        # saved by the sampler

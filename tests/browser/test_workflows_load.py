"""Every shared workflow loads clean in the real frontend and becomes a prompt the server accepts.

For each file in workflows/: no missing node type; every link joins two existing nodes with matching types;
every widget value is one /object_info accepts (a combo value exists, or is a documented placeholder: a file
the user downloads or trains); the canvas's own app.graphToPrompt() passes the server's validation (POST
/prompt) — or, where a model file must be downloaded first, fails on exactly those placeholder files.
Plus, without the browser: no key or token anywhere, a Markdown note, groups, and download links for models.
"""
from __future__ import annotations

import json
import re

import pytest

from harness.client import ComfyClient, PromptRejected
from harness.comfy_server import REPO
from harness.workflows import NOTE_TYPES, widget_values

pytestmark = pytest.mark.browser
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
IDS = [p.stem for p in WORKFLOWS]

# Values a user must supply (download, train, or point at their photos): listed, so nothing else slips by.
PLACEHOLDERS = {
    ("UNETLoader", "unet_name"): {"flux1-dev.safetensors"},
    ("DualCLIPLoader", "clip_name1"): {"clip_l.safetensors"},
    ("DualCLIPLoader", "clip_name2"): {"t5xxl_fp16.safetensors"},
    ("VAELoader", "vae_name"): {"ae.safetensors"},
}
# The LoRA files named in a stack's rows: the user's own LoRA (trained in step 2) and a Civitai download.
PLACEHOLDER_LORAS = {"pelarbues-lora.safetensors", "civitai_analog_film.safetensors"}
# Workflows that cannot validate before the user downloads files: the nodes that must fail, on which values.
EXPECTED_INVALID = {
    "3-generate-local": {"UNETLoader": ["flux1-dev.safetensors"],
                         "DualCLIPLoader": ["clip_l.safetensors", "t5xxl_fp16.safetensors"],
                         "VAELoader": ["ae.safetensors"],
                         "LikenessLoraStack": sorted(PLACEHOLDER_LORAS)},
    "5-find-the-balance": {"LikenessStrengthSweep": sorted(PLACEHOLDER_LORAS)},
}
MODEL_LOADERS = {"UNETLoader", "DualCLIPLoader", "VAELoader", "CLIPLoader", "CheckpointLoaderSimple", "LoraLoader"}
SECRET = re.compile(r"r8_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{20,}|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9]{20,}"
                    r"|ya29\.[0-9A-Za-z_\-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|Bearer\s+[A-Za-z0-9._\-]{16,}")
SECRET_FIELD = re.compile(r'"[^"]*(api_key|apikey|token|secret|password)[^"]*"\s*:\s*"[^"]+"', re.IGNORECASE)


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def object_info(comfy):
    client = ComfyClient(comfy.url)
    info = client.get("/object_info")
    client.close()
    return info


# --- the files themselves ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_no_workflow_contains_a_key_or_token(path):
    text = path.read_text(encoding="utf-8")
    assert not SECRET.search(text), SECRET.search(text).group(0)[:12]
    assert not SECRET_FIELD.search(text), SECRET_FIELD.search(text).group(0)[:40]


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_each_workflow_says_what_to_set_and_groups_its_steps(path):
    workflow = load(path)
    notes = [n for n in workflow["nodes"] if n["type"] == "MarkdownNote"]
    assert notes, "a MarkdownNote says what to set"
    text = notes[0]["widgets_values"][0].lower()
    assert "environment" in text or "replicate_api_token" in text or "gemini_api_key" in text or \
        not any(n["type"].startswith("LikenessGemini") or "Replicate" in n["type"] for n in workflow["nodes"])
    assert workflow.get("groups"), "the steps are grouped"
    grouped = [n for n in workflow["nodes"] if n["type"] not in NOTE_TYPES and any(
        _inside(n, g["bounding"]) for g in workflow["groups"])]
    assert grouped, "the groups hold the workflow's nodes"


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_model_loaders_name_their_files_with_public_download_urls(path):
    for node in load(path)["nodes"]:
        if node["type"] not in MODEL_LOADERS:
            continue
        models = node.get("properties", {}).get("models")
        assert models, f"{node['type']} lists its model files in properties.models"
        names = {m["name"] for m in models}
        files = {v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")}
        assert files <= names, (files, names)
        for model in models:
            assert set(model) == {"name", "url", "directory"}
            assert model["url"].startswith("https://huggingface.co/") and model["name"] in model["url"]


def _inside(node, bounding) -> bool:
    x, y, w, h = bounding
    nx, ny = node["pos"][:2]
    return x <= nx <= x + w and y <= ny <= y + h


# --- in the real frontend ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_workflow_loads_links_and_validates(page, comfy, object_info, path):
    workflow = load(path)
    loaded = page.load_workflow(workflow)
    assert loaded["types"] and loaded["missing"] == []

    links = page.page.evaluate("""() => {
        const g = app.rootGraph;
        const all = g.links instanceof Map ? [...g.links.values()] : Object.values(g.links || {});
        return all.filter(Boolean).map(l => {
            const from = g.getNodeById(l.origin_id), to = g.getNodeById(l.target_id);
            return {id: l.id, type: l.type, from: !!from, to: !!to,
                    out: from?.outputs?.[l.origin_slot]?.type ?? null, in: to?.inputs?.[l.target_slot]?.type ?? null,
                    valid: !!(from && to && LiteGraph.isValidConnection(from.outputs[l.origin_slot]?.type,
                                                                           to.inputs[l.target_slot]?.type))};
        });
    }""")
    assert len(links) == len(workflow["links"]), "every link of the file is on the canvas"
    for link in links:
        assert link["from"] and link["to"] and link["valid"], link
        assert link["out"] == link["in"] or "*" in (link["out"], link["in"]), link

    for node in workflow["nodes"]:
        if node["type"] not in NOTE_TYPES:
            check_widget_values(node, object_info[node["type"]])

    prompt = page.page.evaluate("async () => (await app.graphToPrompt()).output")
    assert {n["class_type"] for n in prompt.values()} == {
        n["type"] for n in workflow["nodes"] if n["type"] not in NOTE_TYPES}
    client = ComfyClient(comfy.url)
    try:
        expected = EXPECTED_INVALID.get(path.stem)
        if expected is None:
            prompt_id = client.queue(prompt)                  # accepted: validation found nothing
            client.wait(prompt_id, timeout=120)               # let it end (at the placeholder photo folder)
        else:
            with pytest.raises(PromptRejected) as rejected:
                client.queue(prompt)
            errors = rejected.value.node_errors
            failing = {errors[n]["class_type"]: json.dumps(errors[n]["errors"]) for n in errors}
            assert set(failing) == set(expected), failing
            for node_type, values in expected.items():
                for value in values:
                    assert value in failing[node_type], (node_type, value, failing[node_type])
    finally:
        client.close()
    # The missing-models dialog asks huggingface.co for each download's size; the test browser has no internet.
    offline = "Error fetching file size: TypeError: Failed to fetch"
    assert [e for e in page.our_errors() if not (expected and e.startswith(offline))] == []


def check_widget_values(node: dict, info: dict) -> None:
    values = widget_values(node, info)
    specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    for name, value in values.items():
        kind, options = specs[name][0], (specs[name][1] if len(specs[name]) > 1 else {})
        where = f"{node['type']}.{name} = {value!r}"
        if isinstance(kind, list) or kind == "COMBO":
            choices = kind if isinstance(kind, list) else options.get("options", [])
            assert value in choices or value in PLACEHOLDERS.get((node["type"], name), ()), where
        elif kind == "INT":
            assert isinstance(value, int) and options.get("min", value) <= value <= options.get("max", value), where
        elif kind == "FLOAT":
            assert isinstance(value, (int, float)) and options.get("min", value) <= value <= options.get("max", value), where
        elif kind == "BOOLEAN":
            assert isinstance(value, bool), where
        elif kind == "STRING":
            assert isinstance(value, str), where
    if node["type"] in ("LikenessLoraStack", "LikenessStrengthSweep"):
        rows = json.loads(values["rows"])
        assert {r["lora"] for r in rows} <= PLACEHOLDER_LORAS, rows

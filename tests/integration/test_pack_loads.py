"""The pack as ComfyUI and the canvas see it: registered nodes, served web files, listed workflows."""
from __future__ import annotations

import json

from harness.client import ComfyClient
from harness.comfy_server import PACK_LINK_NAME, REPO

CONTRACT_IDS = {"LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessReplicateTrainer",
                "LikenessLoraStack", "LikenessFluxSampler", "LikenessReplicateFluxSampler", "LikenessScore"}


def pack_nodes(client) -> dict:
    info = client.get("/object_info")
    return {k: v for k, v in info.items() if v["python_module"].endswith(PACK_LINK_NAME)}


def test_pack_loads_without_import_errors(comfy, client):
    log = comfy.log_text()
    assert f"custom_nodes/{PACK_LINK_NAME}" in log
    assert not [line for line in log.splitlines() if "IMPORT FAILED" in line and PACK_LINK_NAME in line]
    assert pack_nodes(client), "no node of the pack is registered"


def test_every_node_has_category_description_and_tooltips(client):
    problems = []
    for node_id, info in pack_nodes(client).items():
        if not info["category"].startswith("Likeness"):
            problems.append(f"{node_id}: category {info['category']!r}")
        if len(info.get("description", "")) < 20:
            problems.append(f"{node_id}: no description")
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                if not (len(spec) > 1 and spec[1].get("tooltip")):
                    problems.append(f"{node_id}.{name}: no tooltip")
        for i, name in enumerate(info["output_name"]):
            tips = info.get("output_tooltips") or []
            if i >= len(tips) or not tips[i]:
                problems.append(f"{node_id} output {name}: no tooltip")
    assert problems == []


def test_node_ids_are_the_public_contract(client):
    registered = set(pack_nodes(client))
    assert "LikenessDatasetLoader" in registered
    assert registered - CONTRACT_IDS <= {n for n in registered if n.startswith("Likeness")}
    assert all(n.startswith("Likeness") for n in registered)


def test_web_extension_is_served(client):
    scripts = [s for s in client.get("/extensions") if f"/extensions/{PACK_LINK_NAME}/" in s]
    assert f"/extensions/{PACK_LINK_NAME}/js/likeness.js" in scripts
    for script in scripts:
        body = client.get(script)
        assert b"registerExtension" in body or b"export" in body, script


def test_workflows_are_listed_by_the_templates_browser(client):
    files = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    assert files, "workflows/ has no workflow"
    listed = client.get("/api/workflow_templates").get(PACK_LINK_NAME, [])
    assert sorted(listed) == files
    for name in files:
        workflow = client.get(f"/api/workflow_templates/{PACK_LINK_NAME}/{name}.json")
        if isinstance(workflow, bytes):
            workflow = json.loads(workflow)
        assert workflow["nodes"], name


def test_data_of_an_earlier_version_moves_to_the_system_user_folder_and_stays_readable(fresh_comfy, tmp_path):
    """The pack keeps its data in ComfyUI's system-user folder (user/__likeness, served by no route); what an
    earlier version kept in user/likeness (journal, ledger, key files) is moved there and read (issue 17,
    item 14)."""
    old = tmp_path / "comfy-base" / "user" / "likeness"
    old.mkdir(parents=True)
    entry = {"type": "image", "id": "0ldentry0001", "prompt": "pelarbues, an old favourite", "seed": 99, "steps": 35,
             "guidance": 2.75, "width": 1024, "height": 1024}
    (old / "seed_journal.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    (old / "spend.jsonl").write_text('{"month": "2025-01", "usd": 1.5, "service": "gemini"}\n', encoding="utf-8")
    (old / "gemini_api_key").write_text("AIza" "OLDKEYFILE000000000000000000000000000\n", encoding="utf-8")
    server = fresh_comfy()
    client = ComfyClient(server.url)
    try:
        status, body = client.request("GET", "/likeness/journal?limit=5")
        assert status == 200 and [e["id"] for e in body["entries"]] == ["0ldentry0001"]
        new = server.base_dir / "user" / "__likeness"
        assert server.pack_dir == new and not old.exists()
        assert (new / "spend.jsonl").read_text(encoding="utf-8").startswith('{"month": "2025-01"')
        assert (new / "gemini_api_key").is_file()
        status, _ = client.request("GET", "/userdata?dir=../__likeness")     # no ComfyUI route serves it
        assert status in (400, 403, 404)
        status, _ = client.request("GET", "/userdata/..%2F__likeness%2Fspend.jsonl")
        assert status in (400, 403, 404)
    finally:
        client.close()

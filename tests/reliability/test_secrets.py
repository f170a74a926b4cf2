"""The canary key and token (conftest's CANARY_TOKEN / CANARY_KEY, in the server's environment) never show up
anywhere a user, a log or a shared file can see, after the whole pipeline ran and errors were provoked whose
service answers echo the key back. The third-party canaries (HF_TOKEN, CIVITAI_API_TOKEN, WANDB_API_KEY) are
sent — as the models' secret inputs only, which the scan checks too — and show up nowhere else either.

Each place scanned is one `secrets` case in the tally, with the number of items it held and its leaks (0).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import CANARY_CIVITAI, CANARY_HF, CANARY_KEY, CANARY_TOKEN, CANARY_WANDB
from harness.comfy_server import REPO
from reliability.pipeline import OWNER, full_pipeline, local_generation, ui_text, unique

pytestmark = pytest.mark.browser
# The whole values, and their distinctive middles (a truncated or re-cased copy is still a leak).
NEEDLES = (CANARY_TOKEN, CANARY_KEY, "LIKENESSCANARY", "LIKENESS-CANARY", CANARY_TOKEN[3:20], CANARY_KEY[4:20],
           CANARY_HF, CANARY_CIVITAI, CANARY_WANDB, CANARY_HF[3:22], CANARY_CIVITAI[7:26], CANARY_WANDB[5:24])
# Where the third-party tokens are meant to go: these secret inputs of Replicate's models, and nowhere else.
SECRET_INPUTS = {"hf_token": CANARY_HF, "wandb_api_key": CANARY_WANDB, "hf_api_token": CANARY_HF,
                 "civitai_api_token": CANARY_CIVITAI}
GATED_HF = "https://huggingface.co/someone/gated-face/resolve/main/face.safetensors"
GATED_CIVITAI = "https://civitai.com/api/download/models/4242"


def leaks_in(data: bytes | str) -> list[str]:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    lowered = text.lower()
    return sorted({n for n in NEEDLES if n.lower() in lowered})


def file_views(path: Path) -> list[tuple[str, bytes]]:
    """What a reader of the file can see: its bytes, a zip's members, a PNG's text chunks (even compressed)."""
    data = path.read_bytes()
    views = [(str(path), data)]
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            views += [(f"{path}!{n}", z.read(n)) for n in z.namelist()]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        try:
            with Image.open(io.BytesIO(data)) as img:
                views += [(f"{path}#{k}", str(v).encode()) for k, v in img.text.items()]
        except (Image.DecompressionBombError, OSError, SyntaxError):
            pass                     # the bad-input corpus (a bomb, a broken PNG): its raw bytes are scanned
    return views


def scan_files(paths: list[Path]) -> tuple[int, list[str]]:
    found = []
    for path in paths:
        for label, data in file_views(path):
            found += [f"{label}: {n}" for n in leaks_in(data)]
    return len(paths), found


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_canary_is_in_no_place_after_the_whole_pipeline_and_its_errors(comfy, client, page, gemini,
                                                                           replicate_fake, tally):
    fake = replicate_fake
    places: dict[str, tuple[int, list[str]]] = {}
    # 1. the whole pipeline as the shipped workflow queues it, then local sampling with the trained LoRA
    run = full_pipeline(comfy.base_dir, client.get("/object_info"))
    trainer = run.prompt[run.node("LikenessReplicateTrainer")]["inputs"]
    trainer["extra_inputs"] = json.dumps({"hf_repo_id": f"{OWNER}/face-{run.tag}", "wandb_project": "faces"})
    result = client.run(run.prompt)
    assert result.status == "success", result.error_message
    assert (comfy.base_dir / "models" / "loras" / run.lora_name).is_file()
    local = client.run(local_generation(run.lora_name, f"likeness/local-{run.tag}"))
    assert local.status == "success", local.error_message
    gated = client.run(gated_lora_prompt(unique("gated-")))              # flux-dev-lora, HF + Civitai LoRAs
    assert gated.status == "success", gated.error_message
    results = [result, local, gated]

    # 2. errors whose service answers echo the key or the token back
    broken = full_pipeline(comfy.base_dir, client.get("/object_info"))
    gemini.script("invalid_key", times=None, echo_key=True)
    results.append(client.run(broken.prompt))
    gemini.reset()
    fake.inject("GET", r"^/v1/models/", 401, {"detail": f"Invalid token {CANARY_TOKEN} for this account",
                                              "status": 401, "title": "Unauthenticated"}, times=1)
    results.append(client.run(full_pipeline(comfy.base_dir, client.get("/object_info")).prompt))
    fake.plan_next(outcome="failed", error=f"Authorization: Bearer {CANARY_TOKEN} was refused by the hub")
    results.append(client.run(full_pipeline(comfy.base_dir, client.get("/object_info")).prompt))
    fake.plan_prediction(outcome="failed", error=f"could not fetch LoRA with token {CANARY_TOKEN}")
    results.append(client.run(full_pipeline(comfy.base_dir, client.get("/object_info"), seed=99).prompt))
    errors = [r.error_message for r in results if r.status == "error"]
    sent = [fake.training(t)["input"] for t in fake.training_ids()] + \
           [fake.prediction(p)["input"] for p in fake.prediction_ids()]
    used = {k: v for inputs in sent for k, v in inputs.items() if k in SECRET_INPUTS}
    assert used == SECRET_INPUTS                                  # each token really went, as its secret input
    assert len(errors) == 4, [r.status for r in results]
    assert "Gemini refused the credentials" in errors[0] and "GEMINI_API_KEY" in errors[0]
    assert "Replicate refused the API token" in errors[1] and "REPLICATE_API_TOKEN" in errors[1]
    assert "The training failed on Replicate" in errors[2]
    places["error messages shown on nodes"] = (len(errors), [f"{e[:60]}: {n}" for e in errors for n in leaks_in(e)])
    events = [json.dumps(e) for r in results for e in r.events] + [t for r in results for _, t in r.texts]
    places["websocket events and progress texts"] = (len(events), [n for e in events for n in leaks_in(e)])
    reports = [ui_text(r, n) for r in results for n in r.outputs] + [ui_text(result, n) for n in run.ids.values()]
    places["node reports (ui text)"] = (len(reports), [n for t in reports for n in leaks_in(t)])

    # 3. what the canvas saves: the workflow after the canvas has shown the run's statuses, through /userdata
    workflow = json.loads((REPO / "workflows" / "full-pipeline.json").read_text(encoding="utf-8"))
    assert page.load_workflow(workflow)["missing"] == []
    name = unique("saved-")
    saved = page.page.evaluate("""async (name) => {
        const loader = app.rootGraph.nodes.find(n => n.type === 'LikenessDatasetLoader');
        loader.widgets.find(w => w.name === 'trigger_word').value = 'tokcanvas';
        const graph = app.rootGraph.serialize();
        const path = 'workflows/' + name + '.json';
        const r = await app.api.storeUserData(path, graph, {overwrite: true, stringify: true, throwOnError: true});
        return r.status;
    }""", name)
    assert saved == 200
    saved_file = comfy.base_dir / "user" / "default" / "workflows" / f"{name}.json"
    assert "tokcanvas" in saved_file.read_text(encoding="utf-8")              # it is the canvas's own save
    places["workflow the canvas saves (/userdata)"] = scan_files(files_under(saved_file.parent))
    status, listing = client.request("GET", "/userdata?dir=workflows&recurse=true&full_info=true")
    places["/userdata listing"] = (1, leaks_in(json.dumps(listing)))

    # 4. the server's answers
    for route in ("/history?max_items=1000", "/object_info", "/queue", "/system_stats", "/likeness/journal?limit=100",
                  "/likeness/training/status", "/likeness/playground/api/options",
                  "/likeness/playground/api/gallery?limit=500",
                  f"/likeness/captions?folder=likeness/datasets/{run.tag}&trigger_word={run.trigger}"):
        status, body = client.request("GET", route)
        assert status == 200, route
        places[f"GET {route.split('?')[0]}"] = (1, leaks_in(json.dumps(body)))

    # 5. files: generated PNGs, journal, ledgers, caches, dataset, installed LoRA, the log, the uploads
    base = comfy.base_dir
    pngs = [p for p in files_under(base / "output") if p.suffix == ".png"]
    assert any(f"replicate-{run.tag}" in p.name for p in pngs) and any(f"local-{run.tag}" in p.name for p in pngs)
    assert any("prompt" in Image.open(p).text for p in pngs)                  # metadata is there, and clean
    places["PNG metadata of generated images"] = scan_files(pngs)
    user = comfy.pack_dir
    assert (user / "seed_journal.jsonl").is_file() and (user / "spend.jsonl").is_file()
    places["seed journal"] = scan_files([user / "seed_journal.jsonl"])
    places["training ledger"] = scan_files([user / "trainings.json"])
    places["spend ledger"] = scan_files([user / "spend.jsonl"])
    places["training status board"] = scan_files([p for p in [user / "training_status.json"] if p.exists()])
    places["caption cache"] = scan_files(files_under(user / "caption_cache", user / "caption_writes"))
    places["Replicate image cache"] = scan_files(files_under(user / "replicate_images"))
    places["upload staging folder"] = scan_files(files_under(user / "uploads"))
    places["dataset folder"] = scan_files(files_under(run.dataset_dir))
    places["installed LoRA (safetensors metadata)"] = scan_files(files_under(base / "models" / "loras"))
    places["every other file of the ComfyUI base dir"] = scan_files(
        [p for p in files_under(base) if p.name != "server.log" and "comfyui.db" not in p.name])
    places["server log"] = (1, leaks_in(comfy.log_text()))
    uploads = [Path(f["path"]) for f in fake.files.values()]
    assert uploads and all(zipfile.is_zipfile(p) for p in uploads)
    places["uploaded training zip"] = scan_files(uploads)
    bodies = [json.dumps({k: v for k, v in inputs.items() if k not in SECRET_INPUTS}) for inputs in sent]
    places["inputs sent to Replicate, but their secret inputs"] = (len(bodies), [n for b in bodies
                                                                              for n in leaks_in(b)])
    captions_sent = [t for r in gemini.requests for t in r.texts] + [r.raw_body for r in gemini.requests]
    places["requests sent to Gemini (bodies)"] = (len(captions_sent), [n for t in captions_sent for n in leaks_in(t)])

    for place, (items, found) in places.items():
        tally("secrets", place, ok=not found, items=items, leaks=len(found))
    leaked = {p: f for p, (_, f) in places.items() if f}
    assert leaked == {}, leaked
    assert len(places) >= 20
    assert f"{OWNER}/{run.destination}" in fake.models


def gated_lora_prompt(prefix: str) -> dict:
    """flux-dev-lora with a gated Hugging Face LoRA and a Civitai LoRA from a stack: both tokens are needed."""
    return {"stack": {"class_type": "TinyLoraStack", "inputs": {"stack": json.dumps([[GATED_CIVITAI, 0.2, 0.2]])}},
            "gen": {"class_type": "LikenessReplicateFluxSampler", "inputs": {
                "prompt": "a portrait", "trigger_words": "tok", "seed": 5, "steps": 28, "guidance": 2.75,
                "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
                "lora_strength": 0.9, "go_fast": True, "run_on": "flux-dev-lora", "version": "",
                "lora_weights": GATED_HF, "rerun": False, "lora_stack": ["stack", 0]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["gen", 0], "filename_prefix": prefix}}}

"""The bad-input corpus through the real server: each input gets a clear message that names the file or value
and says what is wrong (or what to do), and /object_info still answers after each.

The corpus is generated here (tests/reliability/corpus.py): broken and exotic photos, odd file names, captions in
Latin-1 and with NUL bytes, symlink loops, LoRA files that are not what their name says, a workflow with
unknown fields, and every numeric input of every pack node at, and beyond, its min and max (from /object_info).
"""
from __future__ import annotations

import json
import uuid

import pytest

from harness import photos
from harness.comfy_server import REPO
from reliability import corpus


def serving(client) -> bool:
    status, body = client.request("GET", "/object_info/LikenessDatasetLoader")
    return status == 200 and "LikenessDatasetLoader" in body


def executed_text(result, node: str) -> str:
    for event in result.events:
        if event["type"] == "executed" and event["data"].get("node") == node:
            return "\n".join(event["data"]["output"].get("text", []))
    return ""


def test_the_photo_corpus_gets_a_line_per_bad_file_and_the_good_ones_are_prepared(comfy, client, tally):
    tag = uuid.uuid4().hex[:6]
    trigger = f"tok{tag}"
    source = comfy.base_dir / "input" / f"corpus-{tag}"
    expected = corpus.photo_corpus(source, trigger)
    result = client.run({"1": {"class_type": "LikenessDatasetLoader", "inputs": {
        "folder": source.name, "trigger_word": trigger, "crop": "center", "size": 256, "convert": True,
        "output_folder": f"likeness/datasets/corpus-{tag}"}}})
    assert result.status == "success", result.error_message
    report = executed_text(result, "1")
    assert serving(client)
    dest = comfy.base_dir / "output" / "likeness" / "datasets" / f"corpus-{tag}"
    manifest = json.loads((dest / ".likeness-dataset.json").read_text(encoding="utf-8"))
    sources = {item["source"].rsplit("/", 1)[-1] for item in manifest["items"]}
    used = [e for e in expected if e.used]
    assert f"Prepared {len(used)} photos" in report, report
    assert len(list(dest.glob("*.jpg"))) == len(used)
    for e in expected:
        if e.used:
            assert e.name in sources, (e.name, sorted(sources))
            tally("bad_inputs", f"photo {e.name!r}: prepared", file=e.name)
            continue
        line = next((ln for ln in report.splitlines() if ln.strip().startswith(f"- {e.name}:")), "")
        assert line and all(w in line for w in e.words), (e.name, report)
        tally("bad_inputs", f"photo {e.name!r}: skipped with a reason", message=line.strip())
    # the exotic ones that were used come with a warning that names them
    assert "latin1-caption.txt is not UTF-8" in report
    assert "nul-caption.txt held 2 NUL or control characters" in report
    assert "small.jpg (64 px)" in report                                  # merely small: upscaled, by name
    assert not (dest / "one-pixel.jpg").exists()                          # tiny: refused (issue 17, item 11)
    captions = {p.name: p.read_bytes() for p in dest.glob("*.txt")}
    assert captions["latin1-caption.txt"].decode("utf-8").startswith(f"{trigger}, un homme au café")
    assert b"\x00" not in captions["nul-caption.txt"]
    for name in ("latin1 caption", "NUL caption", "small photo (a quarter of the set's size)"):
        tally("bad_inputs", f"{name}: used, with a warning naming the file")


def test_a_folder_of_nothing_but_bad_files_says_why_for_each(comfy, client, tally):
    tag = uuid.uuid4().hex[:6]
    source = comfy.base_dir / "input" / f"allbad-{tag}"
    source.mkdir(parents=True)
    (source / "empty.jpg").write_bytes(b"")
    (source / "notes.png").write_text("hello")
    result = client.run({"1": {"class_type": "LikenessDatasetLoader", "inputs": {
        "folder": source.name, "trigger_word": f"tok{tag}", "crop": "center", "size": 256, "convert": True,
        "output_folder": ""}}})
    assert result.status == "error"
    message = result.error_message
    assert message.startswith("likeness.InputError: None of the photos could be read"), message
    assert "empty.jpg: empty file" in message and "notes.png: not a readable image" in message
    assert serving(client)
    tally("bad_inputs", "folder with only unreadable files: one error naming each", message=message[:200])


# --- issue 17: money and trust refusals, each before anything is uploaded or paid -----------------------------
def _trainer_prompt(base_dir, count: int, **trainer) -> dict:
    from harness import photos

    tag = uuid.uuid4().hex[:6]
    photos.photo_set(base_dir / "input" / f"many-{tag}", count, width=96, height=96,
                     captions=f"tok{tag}, a man in a garden, photo {{i}}")
    inputs = {"dataset": ["1", 2], "destination": f"likeness-tester/many-{tag}", "steps": 0, "lora_rank": 32,
              "learning_rate": 0.0004, "layers": "7/12/16/20", "custom_layers_regex": "",
              "optimizer": "adamw8bit", "batch_size": 1, "resolution": "1024", "caption_dropout_rate": 0.1,
              "autocaption": False, "trainer_version": "", "extra_inputs": "{}", **trainer}
    return {"1": {"class_type": "LikenessDatasetLoader", "inputs": {
                "folder": f"many-{tag}", "trigger_word": f"tok{tag}", "crop": "center", "size": 256,
                "convert": True, "output_folder": ""}},
            "2": {"class_type": "LikenessReplicateTrainer", "inputs": inputs}}


def test_more_than_30_photos_is_refused_with_both_costs_before_anything_is_paid(comfy, client, replicate_fake,
                                                                                 tally):
    """Issue 17 §10: the trainer refuses 31 photos unless allow_over_30_photos is on; the message gives the
    seed's reason and the cost of 31 against 30."""
    result = client.run(_trainer_prompt(comfy.base_dir, 31))
    assert result.status == "error", result.error_message
    message = result.error_message
    assert "31 photos" in message and "1240 steps" in message and "1200 steps" in message, message
    assert "allow_over_30_photos" in message and replicate_fake.requests == []
    assert serving(client)
    tally("bad_inputs", "trainer with 31 photos: refused with both costs, nothing paid", message=message[:200])


def test_a_third_party_trainer_is_refused_when_queued(comfy, client, replicate_fake, tally):
    """Issue 17 §12: a shared workflow cannot send the user's photos to someone else's model."""
    prompt = _trainer_prompt(comfy.base_dir, 3, trainer_version="face-collector/flux-trainer:" + "ab" * 32)
    status, body = submit(client, prompt)                  # the loader (valid) may run; the trainer may not
    if status == 200:
        client.wait(body["prompt_id"])
    text = json.dumps(body.get("node_errors", {}).get("2", {}))
    assert "face-collector/flux-trainer" in text and "LIKENESS_ALLOWED_TRAINERS" in text, body
    assert replicate_fake.requests == [] and serving(client)
    tally("bad_inputs", "trainer_version of a third-party model: refused when queued", message=text[:200])


def test_a_token_pasted_into_a_lora_url_is_refused_when_queued_and_never_echoed(comfy, client, replicate_fake,
                                                                                 tally):
    """Issue 17 §13: a `?token=` URL in a widget would be saved into the workflow and every PNG."""
    from harness.client import PromptRejected

    secret = "pastedLIKENESStoken123"
    prompt = {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": {
        "prompt": "a portrait", "trigger_words": "tok", "seed": 1, "steps": 28, "guidance": 2.75,
        "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
        "lora_strength": 0.9, "go_fast": False, "run_on": "auto", "version": "",
        "lora_weights": f"https://civitai.com/api/download/models/123?type=Model&token={secret}",
        "rerun": False}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bad-token"}}}
    with pytest.raises(PromptRejected) as rejected:
        client.queue(prompt)
    text = json.dumps(rejected.value.node_errors)
    assert "CIVITAI_API_TOKEN" in text and "lora_weights" in text, text
    assert secret not in json.dumps(rejected.value.node_errors.get("1", {}).get("errors", []))
    assert replicate_fake.requests == [] and serving(client)
    tally("bad_inputs", "lora_weights URL carrying ?token=: refused when queued", message=text[:200])


def test_an_output_folder_outside_comfyuis_output_folder_is_refused_and_nothing_is_written(comfy, client, tally,
                                                                                          tmp_path):
    """A shared workflow's output_folder may not make the loader write anywhere on the disk (issue 17, item 14)."""
    tag = uuid.uuid4().hex[:6]
    source = comfy.base_dir / "input" / f"confined-{tag}"
    photos.photo_set(source, 2, width=320, height=240)
    elsewhere = tmp_path / "home" / ".config" / "autostart"
    result = client.run({"1": {"class_type": "LikenessDatasetLoader", "inputs": {
        "folder": source.name, "trigger_word": f"tok{tag}", "crop": "center", "size": 256, "convert": True,
        "output_folder": str(elsewhere)}}})
    assert result.status == "error"
    message = result.error_message
    assert "outside ComfyUI's output folder" in message and "LIKENESS_DATASET_OUTPUT_ANYWHERE=1" in message
    assert not (tmp_path / "home").exists()
    assert serving(client)
    tally("bad_inputs", "loader output folder outside ComfyUI's output folder: refused, nothing written",
          message=message[:200])


LORA_CASES = [
    ("not-safetensors", corpus.not_safetensors, ("not-safetensors", "safetensors")),
    ("huge-header", corpus.huge_header, ("huge-header", "header")),
    ("sd15", corpus.sd15_lora, ("SD 1.5",)),
    ("lfs-pointer", corpus.lfs_pointer, ("Git LFS pointer", "git lfs pull")),
    ("html-page", corpus.html_page, ("web page (HTML)", "download the file again")),
]


@pytest.mark.parametrize("stem, make, words", LORA_CASES, ids=[c[0] for c in LORA_CASES])
def test_a_lora_file_that_is_not_a_flux_lora_gets_a_clear_message(comfy, client, tally, stem, make, words):
    name = f"bad-{stem}-{uuid.uuid4().hex[:6]}.safetensors"
    (comfy.base_dir / "models" / "loras").mkdir(parents=True, exist_ok=True)
    make(comfy.base_dir / "models" / "loras" / name)
    status, info = client.request("GET", f"/likeness/lora_info?name={name}")
    assert status == 200, info
    shown = info.get("error") or info.get("warning") or ""
    assert all(w.lower() in shown.lower() for w in words if w != stem) and shown, info
    result = client.run({
        "model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
        "stack": {"class_type": "LikenessLoraStack", "inputs": {
            "model": ["model", 0], "rows": f"{name}, 0.8", "balance": "anchor", "target_total": 1.2,
            "clamp_min": 0.15, "clamp_max": 0.25, "anchor_row": 1}},
        "out": {"class_type": "TinyModelWeights", "inputs": {"model": ["stack", 0], "name": uuid.uuid4().hex}}})
    text = result.error_message if result.status == "error" else executed_text(result, "stack")
    assert name in text, text                                                   # names the file
    assert any(w.lower() in text.lower() for w in words if w != stem) or "0 keys" in text, text
    assert serving(client)
    tally("bad_inputs", f"LoRA {stem}: clear message on the stack and in lora_info",
          message=text.splitlines()[0][:200])


@pytest.mark.browser
def test_a_workflow_with_unknown_fields_loads_and_queues(comfy, client, page, tally):
    workflow = json.loads((REPO / "workflows" / "full-pipeline.json").read_text(encoding="utf-8"))
    loaded = page.load_workflow(corpus.workflow_with_unknown_fields(workflow))
    assert loaded["missing"] == [] and page.our_errors() == []
    tally("bad_inputs", "UI workflow with unknown fields: loads on the canvas without errors")
    # unknown inputs and extra data in an API prompt: ignored, the prompt runs
    result = client.run({"1": {"class_type": "LikenessJournalReplay", "inputs": {"entry": "none-such",
                                                                                 "unknown_input": [1, 2]},
                               "unknown_node_field": {"x": 1}},
                         "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    assert result.status == "error" and "none-such" in result.error_message, result.error_message
    assert serving(client)
    tally("bad_inputs", "API prompt with unknown inputs: runs, its own error names the value")


# --- every numeric input of every pack node, at and beyond its limits ---------------------------------
FAILING_SOURCES = {
    # a required link comes from a node that fails when it runs, so the node under test is validated (the
    # point here) but never executes with extreme values (a 16384² sample, a paid call)
    "MODEL": ("broken_ckpt", 0), "CLIP": ("broken_ckpt", 1), "VAE": ("broken_ckpt", 2),
    "LIKENESS_DATASET": ("missing_photos", 2), "IMAGE": ("broken_image", 0), "LIKENESS_BATTERY": ("missing_battery", 0),
}


def pack_nodes(info: dict) -> dict:
    return {name: spec for name, spec in info.items() if spec.get("python_module", "").endswith("comfyui-likeness")
            or spec.get("category", "").startswith("Likeness")}


def limits(spec: dict) -> list[tuple[str, str, float, float]]:
    out = []
    for group in ("required", "optional"):
        for name, entry in spec["input"].get(group, {}).items():
            kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
            if kind in ("INT", "FLOAT") and "min" in options and "max" in options:
                out.append((name, kind, options["min"], options["max"]))
    return out


def base_prompt(node: str, spec: dict, value_of) -> dict:
    inputs = {}
    optional = {name: entry for name, entry in spec["input"].get("optional", {}).items()
                if isinstance(entry[0], list) or entry[0] in ("COMBO", "INT", "FLOAT", "STRING", "BOOLEAN")}
    for name, entry in {**spec["input"].get("required", {}), **optional}.items():   # optional widgets are checked too
        kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
        if isinstance(kind, list) or kind == "COMBO":
            choices = kind if isinstance(kind, list) else options.get("options", [])
            inputs[name] = options.get("default", choices[0] if choices else "")
        elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            inputs[name] = value_of(name, kind, options)
        else:
            assert kind in FAILING_SOURCES, f"{node}.{name}: no failing source for type {kind}"
            inputs[name] = list(FAILING_SOURCES[kind])
    return {"broken_ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "likeness-broken.safetensors"}},
            "broken_image": {"class_type": "VAEDecode", "inputs": {"samples": ["empty_latent", 0],
                                                                   "vae": ["broken_ckpt", 2]}},
            "empty_latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "missing_photos": {"class_type": "LikenessDatasetLoader", "inputs": {
                "folder": "none-such-folder", "trigger_word": "tokmissing", "crop": "center", "size": 256,
                "convert": True, "output_folder": ""}},
            "missing_battery": {"class_type": "LikenessTrainingBattery", "inputs": {
                "dataset": ["missing_photos", 2], "destination": "none-such", "base": "", "variations": "",
                "expand": "one factor at a time", "confirm_large_battery": False, "trainer_version": "",
                "wandb_project": ""}},
            "target": {"class_type": node, "inputs": inputs},
            "preview": {"class_type": "PreviewAny", "inputs": {"source": ["target", 0]}}}


# the example rows name LoRAs this server does not have; the sweep without rows stops before anything is paid
NEUTRAL = {("LikenessLoraStack", "rows"): "", ("LikenessStrengthSweep", "rows"): ""}


def default_value(name: str, kind: str, options: dict, node: str = ""):
    if (node, name) in NEUTRAL:
        return NEUTRAL[(node, name)]
    if "default" in options:
        return options["default"]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


LIMIT_WORDS = {"smaller than min": "below its minimum", "bigger than max": "above its maximum"}


def only_used(prompt: dict, info: dict) -> dict:
    used = {link[0] for n in prompt.values() for link in n["inputs"].values() if isinstance(link, list)}
    keep = {k: v for k, v in prompt.items() if k == "target" or k in used}
    if not info[prompt["target"]["class_type"]].get("output_node"):
        keep["preview"] = prompt["preview"]           # something to execute for: an output downstream
    return keep


def submit(client, prompt: dict) -> tuple[int, dict]:
    """POST /prompt as the canvas does. ComfyUI answers 400 when no output is valid, and 200 with `node_errors`
    when some other output is valid (those run): either way the node's errors are in `node_errors`."""
    status, body = client.request("POST", "/prompt", {"prompt": prompt, "client_id": client.client_id})
    assert isinstance(body, dict), body
    return status, body


def test_every_numeric_input_of_every_pack_node_at_and_beyond_its_limits(comfy, client, tally):
    ckpts = comfy.base_dir / "models" / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    (ckpts / "likeness-broken.safetensors").write_bytes(b"not a checkpoint")
    info = client.get("/object_info")
    nodes = pack_nodes(info)
    assert {"LikenessDatasetLoader", "LikenessGeminiCaptioner", "LikenessReplicateTrainer", "LikenessLoraStack",
            "LikenessFluxSampler", "LikenessReplicateFluxSampler"} <= set(nodes)
    checked = 0
    for node, spec in sorted(nodes.items()):
        bounded = limits(spec)
        for edge in ("min", "max"):
            values = {name: (lo if edge == "min" else hi) for name, _, lo, hi in bounded}
            prompt = only_used(base_prompt(node, spec, lambda n, k, o: values.get(n, default_value(n, k, o, node))),
                               info)
            if node == "LikenessDatasetLoader":
                prompt["target"]["inputs"]["folder"] = "none-such-folder"      # fails at once: nothing written
            status, body = submit(client, prompt)
            assert status == 200 and "target" not in body.get("node_errors", {}), \
                f"{node} with every input at its {edge} was refused: {json.dumps(body)[:500]}"
            result = client.wait(body["prompt_id"])
            failed_on = (result.error or {}).get("node_id")
            assert failed_on in (None, "broken_ckpt", "missing_photos", "target"), result.error
            if failed_on == "target":   # it ran (no required link): its own error is a clear InputError
                assert node in ("LikenessDatasetLoader", "LikenessReplicateFluxSampler", "LikenessStrengthSweep",
                                "LikenessJournalReplay", "LikenessJournalFavourite", "LikenessPromptRefiner",
                                "LikenessLoraReference"), \
                    result.error_message
                assert "likeness." in result.error_message, result.error_message
            tally("bad_inputs", f"{node}: every input at its {edge}: accepted", inputs=len(bounded))
            checked += 1
        for name, kind, lo, hi in bounded:
            options = spec["input"].get("required", {}).get(name, spec["input"].get("optional", {}).get(name))[1]
            # a full step beyond (ComfyUI rounds a FLOAT to its `round` before comparing)
            step = 1 if kind == "INT" else max(options.get("step", 0.01), options.get("round") or 0, (hi - lo) * 0.01)
            for label, value, words in (("below min", lo - step, "smaller than min"),
                                        ("above max", hi + step, "bigger than max"),
                                        ("not a number", "lots", "")):
                prompt = only_used(base_prompt(node, spec, lambda n, k, o: value if n == name
                                               else default_value(n, k, o, node)), info)
                status, body = submit(client, prompt)
                errors = body.get("node_errors", {}).get("target", {}).get("errors", [])
                assert errors, f"{node}.{name} {label} ({value}) was accepted: {json.dumps(body)[:500]}"
                if status == 200:       # the prompt's other outputs (the failing source) were queued: let them end
                    client.wait(body["prompt_id"])
                text = json.dumps(errors)
                assert name in text, text                                  # names the input
                if words:   # ComfyUI's own check, or the pack's (for nodes with validate_inputs): the limit, named
                    assert words in text or LIMIT_WORDS[words] in text, text
                    assert str(lo if label == "below min" else hi) in text, text
                assert serving(client)
                tally("bad_inputs", f"{node}.{name} {label}: refused with a node_error naming it",
                      message=errors[0]["message"])
                checked += 1
    assert checked >= 60, checked

"""The playground's routes on a real ComfyUI server, against the fake Replicate and Gemini: the prompt it plans
runs through the pack's own nodes on /prompt, its cost before and after, Again and Vary, the gallery, the
same-origin and JSON-only guard, --multi-user scoping, and "this machine" only with FLUX files present."""
from __future__ import annotations

import json
import uuid

import pytest

from comfy_test_pack.lora_files import factors, write_lora
from conftest import CANARY_KEY, CANARY_TOKEN
from harness.client import ComfyClient
from harness.comfy_server import ComfyServer
from likeness.generation.seed_journal import JournalEntry, SeedJournal

API = "/likeness/playground/api"
CREATE = r"^/v1/(predictions|models/[^/]+/[^/]+/predictions)$"
REFINED = ("An analog portrait of a man in a 1960s diner, seated at the counter. He wears a brown corduroy jacket. "
           "Warm tungsten light, a medium shot at eye level, shallow focus and visible film grain.")


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def install_loras(server, fake) -> tuple[str, str, str]:
    """A personal LoRA trained by Likeness (its Replicate version in the metadata) and a Civitai style LoRA."""
    loras = server.base_dir / "models" / "loras"
    version = fake.add_trained_version(f"likeness-tester/{unique('me')}")
    personal, style = f"{unique('me')}.safetensors", f"{unique('film')}.safetensors"
    write_lora(loras / personal, "diffusers", factors(modules=("single_blocks.0.linear2",)),
               {"likeness_trigger_word": "pelarbues", "likeness_destination_version": version})
    write_lora(loras / style, "diffusers", factors(seed=3, modules=("single_blocks.0.linear2",)))
    (loras / style).with_suffix(".civitai.info").write_text(json.dumps({"id": 4242, "modelId": 7}))
    return personal, style, version


def settings(personal: str, style: str, **changes) -> dict:
    return {"where": "replicate", "personal": personal, "personal_strength": 0.9,
            "styles": [{"lora": style, "strength": 0.2, "on": True}], "balance": "anchor", "target_total": 1.2,
            "prompt": "an analog portrait in a diner, film grain", "seed": 1234, "steps": 35, "guidance": 2.75,
            "aspect_ratio": "2:3", **changes}


def post(client, path, body, **headers):
    return client.request("POST", API + path, body, headers=headers)


def plan(client, body, **headers) -> dict:
    status, answer = post(client, "/plan", body, **headers)
    assert status == 200, answer
    return answer


def queue(client, planned: dict, **headers):
    status, body = client.request("POST", "/prompt", {"prompt": planned["prompt"], "client_id": client.client_id,
                                                      "prompt_id": planned["prompt_id"]}, headers=headers)
    assert status == 200, body
    return client.wait(planned["prompt_id"])


def get(client, path, **headers):
    return client.request("GET", API + path, headers=headers)


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


def test_the_page_and_its_files_are_served(comfy, client):
    status, html = client.request("GET", "/likeness/playground/")
    assert status == 200 and b"<title>Likeness playground</title>" in html
    for name, kind in [("playground.mjs", "text/javascript"), ("playground.css", "text/css"),
                       ("strength_balance.js", "text/javascript"), ("dom.js", "text/javascript"),
                       ("icon.svg", "image/svg+xml")]:
        with __import__("urllib.request").request.urlopen(f"{comfy.url}/likeness/playground/static/{name}") as r:
            assert r.status == 200 and r.headers.get_content_type() == kind
    for bad in ["..%2F..%2Fnodes%2Fhost.py", "index.html", "nope.mjs", "%2Fetc%2Fpasswd"]:
        assert client.request("GET", f"/likeness/playground/static/{bad}")[0] == 404


def test_options_list_the_loras_with_trigger_words_and_never_a_key(comfy, client, fake):
    personal, style, version = install_loras(comfy, fake)
    status, options = get(client, "/options")
    assert status == 200
    by_name = {lora["name"]: lora for lora in options["loras"]}
    assert by_name[personal]["likeness"] and by_name[personal]["trigger_words"] == ["pelarbues"]
    assert by_name[personal]["version"] == version
    assert by_name[style]["replicate_ref"] == "https://civitai.com/api/download/models/4242"
    assert options["replicate"] == {"token": True} and options["gemini"] == {"key": True}
    assert options["local"]["available"] is False
    text = json.dumps(options)
    assert CANARY_TOKEN not in text and CANARY_KEY not in text


def test_a_planned_prompt_runs_the_packs_nodes_with_cost_before_and_after(comfy, client, fake):
    personal, style, version = install_loras(comfy, fake)
    fake.plan_prediction(sync=False, ticks=3, predict_time=5.0)
    planned = plan(client, settings(personal, style))
    nodes = {n["class_type"]: n["inputs"] for n in planned["prompt"].values()}
    assert set(nodes) == {"LikenessLoraStack", "LikenessReplicateFluxSampler"}
    assert "model" not in nodes["LikenessLoraStack"], "Replicate applies the LoRAs: the stack only balances"
    assert nodes["LikenessReplicateFluxSampler"]["version"] == version
    assert nodes["LikenessReplicateFluxSampler"]["trigger_words"] == "pelarbues"
    estimate = planned["estimate"]
    assert estimate["usd"] == pytest.approx((6.0 + 0.2 * 35) * 0.001525) and not estimate["reused"]
    assert planned["spend"]["budget_usd"] is None and not planned["spend"]["over_budget"]

    result = queue(client, planned)
    assert result.status == "success", result.error_message
    (prediction_id,) = fake.prediction_ids()
    inputs = fake.prediction(prediction_id)["input"]
    assert inputs["prompt"].startswith("pelarbues, an analog portrait") and inputs["seed"] == 1234
    assert inputs["extra_lora"] == "https://civitai.com/api/download/models/4242" and inputs["aspect_ratio"] == "2:3"
    assert any("Generating on Replicate: step" in t for t in result.texts_for("5")), "live progress text"

    status, run = get(client, f"/run?prompt_id={planned['prompt_id']}")
    assert status == 200 and run["status"] == "success" and not run["reused"]
    assert run["paid_usd"] == pytest.approx(5.0 * 0.001525)
    entry = SeedJournal(comfy.pack_dir).find(run["entries"][0])
    assert entry.extra["prediction_id"] == prediction_id

    status, gallery = get(client, "/gallery")
    item = next(i for i in gallery["items"] if i["id"] == entry.id)
    assert gallery["items"][0]["id"] == entry.id, "newest first"
    assert item["images"] == 1 and item["cost_usd"] == pytest.approx(5.0 * 0.001525)
    assert item["settings"]["personal"] == personal and item["settings"]["seed"] == 1234
    status, png = get(client, f"/image?id={entry.id}&n=0")
    assert status == 200 and png[:4] == b"\x89PNG"


def test_again_pays_nothing_and_vary_pays_once(comfy, client, fake):
    personal, style, _ = install_loras(comfy, fake)
    first = queue(client, plan(client, settings(personal, style, seed=77)))
    assert first.status == "success", first.error_message
    assert fake.count("POST", CREATE) == 1

    again = plan(client, settings(personal, style, seed=77))
    assert again["estimate"]["reused"] and again["estimate"]["usd"] == 0
    assert queue(client, again).status == "success"
    status, run = get(client, f"/run?prompt_id={again['prompt_id']}")
    assert run["reused"] and run["paid_usd"] == 0
    assert fake.count("POST", CREATE) == 1, "Again: 0 new paid calls"

    vary = plan(client, settings(personal, style, seed=78))
    assert not vary["estimate"]["reused"] and vary["estimate"]["usd"] > 0
    assert queue(client, vary).status == "success"
    assert fake.count("POST", CREATE) == 2, "Vary: exactly 1 new paid call"


def test_a_favourite_is_kept_and_filters_the_gallery(comfy, client, fake):
    personal, style, _ = install_loras(comfy, fake)
    planned = plan(client, settings(personal, style, seed=99))
    assert queue(client, planned).status == "success"
    entry_id = get(client, f"/run?prompt_id={planned['prompt_id']}")[1]["entries"][0]
    status, answer = post(client, "/favourite", {"id": entry_id, "favourite": True})
    assert status == 200 and answer == {"id": entry_id, "favourite": True}
    favourites = get(client, "/gallery?favourites=1")[1]["items"]
    assert entry_id in [i["id"] for i in favourites] and all(i["favourite"] for i in favourites)
    assert SeedJournal(comfy.pack_dir).find(entry_id).favourite


def test_scores_are_read_from_the_journal_and_filter_the_gallery(comfy, client):
    journal = SeedJournal(comfy.pack_dir)
    scored = journal.record(JournalEntry(prompt="pelarbues, scored", seed=1, steps=35, guidance=2.75, width=64,
                                         height=64, likeness={"score": 81.5, "backend": "dlib", "reason": ""}))
    unscored = journal.record(JournalEntry(prompt="pelarbues, unscored", seed=2, steps=35, guidance=2.75, width=64,
                                           height=64))
    items = {i["id"]: i for i in get(client, "/gallery")[1]["items"]}
    assert items[scored.id]["score"] == 81.5 and items[unscored.id]["score"] is None
    over_80 = [i["id"] for i in get(client, "/gallery?min_score=80")[1]["items"]]
    assert scored.id in over_80 and unscored.id not in over_80


def test_images_are_served_only_from_the_output_folder_and_the_samplers_store(comfy, client):
    user = comfy.pack_dir
    private = user / f"{unique('private')}.png"          # an image, but outside both folders
    private.write_bytes(b"\x89PNG\r\n\x1a\nprivate")
    outside = [str(private), str(user / "replicate_images" / ".." / private.name), "/etc/passwd"]
    try:
        entry = SeedJournal(user).record(JournalEntry(prompt="p", seed=1, steps=1, guidance=1.0, width=8, height=8,
                                                      source="replicate", images=outside))
        for n in range(len(outside)):
            status, body = get(client, f"/image?id={entry.id}&n={n}")
            assert status == 404 and b"private" not in (body if isinstance(body, bytes) else b"")
        assert get(client, f"/image?id={entry.id}&n=9")[0] == 404
        assert get(client, "/image?id=../../etc&n=0")[0] == 404
    finally:
        private.unlink()


def test_a_failed_run_tells_why(comfy, client, fake):
    personal, style, _ = install_loras(comfy, fake)
    fake.plan_prediction(sync=False, outcome="failed", error="CUDA out of memory. Tried to allocate 1.00 GiB")
    planned = plan(client, settings(personal, style, seed=31))
    assert queue(client, planned).status == "error"
    run = get(client, f"/run?prompt_id={planned['prompt_id']}")[1]
    assert run["status"] == "error" and "CUDA out of memory" in run["message"]


# The Host of a server opened to the phone with --listen: ComfyUI's own Origin check only runs for loopback
# hosts, so these requests reach the pack's guard.
LAN_HOST = "192.168.1.20:8188"


@pytest.mark.parametrize("headers, body, expected", [
    ({"Origin": "http://evil.example"}, "json", 403),
    ({"Origin": "null"}, "json", 403),
    ({"Origin": "http://192.168.1.20:9999"}, "json", 403),
    ({"Sec-Fetch-Site": "cross-site"}, "json", 403),
    ({"Content-Type": "text/plain"}, "json", 415),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "form", 415),
    ({}, "broken", 400),
])
def test_writes_refuse_other_sites_and_anything_but_json(comfy, client, headers, body, expected):
    data = {"json": json.dumps({"id": "abcdef12", "favourite": True}).encode(), "form": b"id=abcdef12",
            "broken": b"{not json"}[body]
    for route in ("/favourite", "/plan", "/refine"):
        status, _ = client.request("POST", API + route, data, headers={"Host": LAN_HOST, **headers})
        assert status == expected, route


def test_the_same_origin_may_write(comfy, client):
    status, body = client.request("POST", API + "/favourite", {"id": "0000000000ff", "favourite": True},
                                  headers={"Origin": f"http://{LAN_HOST}", "Host": LAN_HOST,
                                           "Sec-Fetch-Site": "same-origin"})
    assert status == 404, body                       # past the guard: the entry does not exist


def test_refine_returns_an_editable_prompt_trigger_first_and_caches_it(comfy, client, gemini):
    gemini.script("ok", fields={"prompt": REFINED})
    status, first = post(client, "/refine", {"idea": "pelarbues in a 60s diner, film look", "trigger_word": "pelarbues"})
    assert status == 200, first
    assert first["prompt"] == f"pelarbues, {REFINED}" and not first["cached"] and first["cost_usd"] > 0
    status, again = post(client, "/refine", {"idea": "pelarbues in a 60s diner, film look", "trigger_word": "pelarbues"})
    assert again["cached"] and again["cost_usd"] == 0
    (call,) = gemini.generate_calls()
    assert "pelarbues" not in call.raw_body
    assert CANARY_KEY not in json.dumps([first, again])


def test_refine_says_what_to_do_when_gemini_refuses_the_key(comfy, client, gemini):
    gemini.script("invalid_key", echo_key=True)
    status, body = post(client, "/refine", {"idea": "a portrait on a rooftop at dusk", "trigger_word": "pelarbues"})
    assert status == 400 and "GEMINI_API_KEY" in body["error"] and CANARY_KEY not in body["error"]


def test_the_prompt_refiner_node_runs_on_the_canvas(comfy, client, gemini):
    gemini.script("ok", fields={"prompt": REFINED})
    prompt = {"1": {"class_type": "LikenessPromptRefiner",
                    "inputs": {"idea": f"a diner portrait {uuid.uuid4().hex[:6]}", "trigger_word": "pelarbues",
                               "model": "gemini-3.8-flash", "custom_model": "", "variant": 0}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    text = "\n".join(result.outputs["1"]["text"])
    assert text.startswith(f"pelarbues, {REFINED}") and "cost $" in text


def test_this_machine_is_offered_only_with_flux_files(fresh_comfy, fake):
    server = fresh_comfy()
    client = ComfyClient(server.url)
    try:
        personal, style, _ = install_loras(server, fake)
        assert client.request("GET", API + "/options")[1]["local"]["available"] is False
        status, body = post(client, "/plan", settings(personal, style, where="local"))
        assert status == 400 and "no FLUX.1-dev files" in body["error"]
        models = server.base_dir / "models"
        for path in ["diffusion_models/flux1-dev.safetensors", "text_encoders/clip_l.safetensors",
                     "text_encoders/t5xxl_fp16.safetensors", "vae/ae.safetensors"]:
            (models / path).parent.mkdir(parents=True, exist_ok=True)
            (models / path).write_bytes(b"placeholder")
        local = client.request("GET", API + "/options")[1]["local"]
        assert local["available"] and local["models"]["unet"] == "flux1-dev.safetensors"
        planned = plan(client, settings(personal, style, where="local"))
        nodes = {n["class_type"]: n["inputs"] for n in planned["prompt"].values()}
        assert nodes["DualCLIPLoader"]["clip_name2"] == "t5xxl_fp16.safetensors"
        assert nodes["LikenessLoraStack"]["model"] == ["1", 0] and nodes["LikenessFluxSampler"]["width"] == 832
        assert planned["estimate"]["usd"] == 0
        result = queue(client, planned)           # accepted by the server's validation; the placeholder cannot load
        assert result.status == "error" and result.error["node_type"] in ("UNETLoader", "DualCLIPLoader", "VAELoader")
    finally:
        client.close()


def test_under_multi_user_each_user_sees_only_their_own_images(tmp_path, cloud_env, fake):
    server = ComfyServer(tmp_path / "base", env=cloud_env, args=["--multi-user"]).start()
    client = ComfyClient(server.url)
    try:
        alice = client.request("POST", "/users", {"username": "alice"})[1]
        bob = client.request("POST", "/users", {"username": "bob"})[1]
        personal, style, _ = install_loras(server, fake)
        planned = plan(client, settings(personal, style, seed=5), **{"Comfy-User": alice})
        assert queue(client, planned).status == "success"
        status, run = get(client, f"/run?prompt_id={planned['prompt_id']}", **{"Comfy-User": alice})
        entry_id = run["entries"][0]
        assert [i["id"] for i in get(client, "/gallery", **{"Comfy-User": alice})[1]["items"]] == [entry_id]
        assert get(client, "/gallery", **{"Comfy-User": bob})[1]["items"] == []
        assert get(client, f"/run?prompt_id={planned['prompt_id']}", **{"Comfy-User": bob})[0] == 404
        assert get(client, f"/image?id={entry_id}", **{"Comfy-User": bob})[0] == 404
        assert post(client, "/favourite", {"id": entry_id}, **{"Comfy-User": bob})[0] == 404
        assert get(client, f"/image?id={entry_id}", **{"Comfy-User": alice})[0] == 200
        for who in ({"Comfy-User": "mallory"}, {"Comfy-User": "__system"}, {}):
            assert get(client, "/gallery", **who)[0] == 403
    finally:
        client.close()
        server.stop()

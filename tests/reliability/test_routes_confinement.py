"""Every pack route on the real server stays inside its folders and accepts only JSON of the expected shape.

`..`, absolute paths and links leading out are refused with 403 before any file is read or written; wrong
shapes get 400 with a sentence saying what is expected; after every refused request the server still serves.
"""
from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from pathlib import Path

import pytest
from PIL import Image

from comfy_test_pack.lora_files import factors, write_lora
from harness.client import ComfyClient
from reliability.pipeline import local_generation
from reliability.test_faults import TRAINER_NODE, train_prompt

OUTSIDE_TEXT = "outside-the-set-do-not-serve"


@pytest.fixture
def sets(comfy, tmp_path):
    """A prepared set inside ComfyUI's output folder, a folder outside, and links between them."""
    name = f"routes-{uuid.uuid4().hex[:6]}"
    root = comfy.base_dir / "output" / "likeness" / "datasets"
    folder = root / name
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), (10, 120, 200)).save(folder / "000.jpg")
    (folder / "000.txt").write_text("tok, a man in a garden\n", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(outside / "000.jpg")
    secret = outside / "secret.txt"
    secret.write_text(OUTSIDE_TEXT, encoding="utf-8")
    (root / f"{name}-link").symlink_to(outside, target_is_directory=True)
    return {"name": name, "folder": folder, "outside": outside, "secret": secret, "root": root,
            "link": f"likeness/datasets/{name}-link", "rel": f"likeness/datasets/{name}"}


def get(client, route: str, **query) -> tuple[int, object]:
    return client.request("GET", f"{route}?{urllib.parse.urlencode(query)}" if query else route)


def still_serving(client) -> bool:
    status, body = client.request("GET", "/object_info/LikenessLoraStack")
    return status == 200 and "LikenessLoraStack" in body


def check(client, tally, name: str, status: int, body, expected: int, words: str = "") -> None:
    text = body if isinstance(body, str) else body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    assert status == expected, (name, status, text)
    if words:
        assert words.lower() in text.lower(), (name, text)
    assert OUTSIDE_TEXT not in text, (name, text)
    assert still_serving(client), name
    tally("routes", name, status=status)


def test_caption_list_refuses_paths_out_of_the_output_folder(comfy, client, sets, tally):
    absolute_outside = str(sets["outside"])
    cases = [
        ("list: ..", {"folder": "../user"}, 403, "'..'"),
        ("list: .. inside a path", {"folder": f"{sets['rel']}/../../../../input"}, 403, "'..'"),
        ("list: absolute outside", {"folder": absolute_outside}, 403, "inside ComfyUI's output folder"),
        ("list: absolute /etc", {"folder": "/etc"}, 403, "inside ComfyUI's output folder"),
        ("list: link leading out", {"folder": sets["link"]}, 403, "inside ComfyUI's output folder"),
        ("list: the output root itself", {"folder": "."}, 403, "inside ComfyUI's output folder"),
        ("list: no folder", {}, 400, "folder is required"),
        ("list: NUL in folder", {"folder": "likeness\0x"}, 400, "folder is required"),
        ("list: missing set", {"folder": "likeness/datasets/none-such"}, 404, "No such set"),
    ]
    for name, query, expected, words in cases:
        status, body = get(client, "/likeness/captions", **query)
        check(client, tally, name, status, body, expected, words)
    status, body = get(client, "/likeness/captions", folder=sets["rel"])          # the real set still works
    assert status == 200 and body["items"][0]["caption"] == "tok, a man in a garden"
    tally("routes", "list: the set itself", status=status)


def test_a_caption_file_linked_out_of_the_set_is_never_read_or_written(comfy, client, sets, tally):
    folder = sets["folder"]
    Image.new("RGB", (32, 32), (0, 200, 0)).save(folder / "001.jpg")
    (folder / "001.txt").symlink_to(sets["secret"])
    status, body = get(client, "/likeness/captions", folder=sets["rel"])
    check(client, tally, "list: caption .txt linked out", status, body, 403, "link")

    status, body = client.request("POST", "/likeness/caption",
                                  {"folder": sets["rel"], "image": "001.jpg", "caption": "tok, overwritten"})
    check(client, tally, "save: caption .txt linked out", status, body, 403, "link")
    assert sets["secret"].read_text(encoding="utf-8") == OUTSIDE_TEXT


def test_a_caption_file_in_latin1_or_with_nul_bytes_is_listed_not_a_server_error(comfy, client, sets, tally):
    folder = sets["folder"]
    Image.new("RGB", (32, 32), (0, 0, 200)).save(folder / "002.jpg")
    (folder / "002.txt").write_bytes("tok, un homme au café".encode("latin-1"))     # edited in an old editor
    Image.new("RGB", (32, 32), (0, 90, 200)).save(folder / "003.jpg")
    (folder / "003.txt").write_bytes(b"tok, a man\x00 in a hat")
    status, body = get(client, "/likeness/captions", folder=sets["rel"], trigger_word="tok")
    assert status == 200, body
    captions = {item["image"]: item["caption"] for item in body["items"]}
    assert captions["002.jpg"] == "tok, un homme au café"
    assert "\x00" not in captions["003.jpg"] and captions["003.jpg"].startswith("tok, a man")
    assert still_serving(client)
    tally("routes", "list: a Latin-1 caption file", status=status)
    tally("routes", "list: a caption file with NUL bytes", status=status)


def test_caption_save_refuses_paths_out_and_wrong_shapes(comfy, client, sets, tally):
    ok = {"folder": sets["rel"], "image": "000.jpg", "caption": "tok, a man in a hat"}
    cases = [
        ("save: not JSON", b"{folder: 1", 400, "must be JSON"),
        ("save: a JSON list", [ok], 400, "JSON object"),
        ("save: a JSON string", "tok", 400, "JSON object"),
        ("save: missing caption", {k: v for k, v in ok.items() if k != "caption"}, 400, "missing ['caption']"),
        ("save: caption a number", {**ok, "caption": 5}, 400, "not text ['caption']"),
        ("save: caption null", {**ok, "caption": None}, 400, "not text ['caption']"),
        ("save: unknown field", {**ok, "path": "/etc/passwd"}, 400, "unknown ['path']"),
        ("save: caption too long", {**ok, "caption": "x" * 5001}, 400, "at most 5000"),
        ("save: image with ..", {**ok, "image": "../000.jpg"}, 400, "file name"),
        ("save: image absolute", {**ok, "image": str(sets["outside"] / "000.jpg")}, 400, "file name"),
        ("save: image not an image", {**ok, "image": "000.txt"}, 400, ".jpg"),
        ("save: folder ..", {**ok, "folder": f"{sets['rel']}/../../.."}, 403, "'..'"),
        ("save: folder absolute outside", {**ok, "folder": str(sets["outside"])}, 403, "output folder"),
        ("save: folder link leading out", {**ok, "folder": sets["link"]}, 403, "output folder"),
        ("save: missing image", {**ok, "image": "999.jpg"}, 404, "No image 999.jpg"),
    ]
    for name, body, expected, words in cases:
        status, answer = client.request("POST", "/likeness/caption", body)
        check(client, tally, name, status, answer, expected, words)
    assert not (sets["outside"] / "000.txt").exists()                    # nothing written outside
    assert (sets["folder"] / "000.txt").read_text(encoding="utf-8") == "tok, a man in a garden\n"
    status, answer = client.request("POST", "/likeness/caption", ok)      # the right shape still saves
    assert status == 200 and answer["hand_edit"] is True
    assert (sets["folder"] / "000.txt").read_text(encoding="utf-8") == "tok, a man in a hat\n"
    tally("routes", "save: the right shape", status=status)


def test_lora_info_looks_only_in_the_loras_folders(comfy, client, tally):
    loras = comfy.base_dir / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    spend = comfy.pack_dir / "spend.jsonl"
    cases = [
        ("lora_info: ..", {"name": "../../user/__likeness/spend.jsonl"}, 403, "'..'"),
        ("lora_info: .. with backslashes", {"name": "..\\..\\user\\__likeness\\spend.jsonl"}, 403, "'..'"),
        ("lora_info: absolute outside", {"name": str(spend)}, 403, "inside ComfyUI's loras folders"),
        ("lora_info: absolute /etc/passwd", {"name": "/etc/passwd"}, 403, "inside ComfyUI's loras folders"),
        ("lora_info: no name", {}, 400, "name is required"),
        ("lora_info: NUL", {"name": "a\0.safetensors"}, 400, "name is required"),
        ("lora_info: very long", {"name": "a" * 5000}, 400, "name is required"),
        ("lora_info: missing", {"name": "none-such.safetensors"}, 404, "No LoRA none-such.safetensors"),
    ]
    for name, query, expected, words in cases:
        status, body = get(client, "/likeness/lora_info", **query)
        check(client, tally, name, status, body, expected, words)


def test_journal_and_status_take_only_their_own_shapes(comfy, client, tally):
    for raw in ("abc", "0", "-1", "101", "1e3", "../../etc", ""):
        status, body = get(client, "/likeness/journal", limit=raw)
        check(client, tally, f"journal: limit={raw!r}", status, body, 400, "whole number from 1 to 100")
    status, body = get(client, "/likeness/journal", limit="5")
    assert status == 200 and isinstance(body["entries"], list)
    tally("routes", "journal: limit=5", status=status)
    for query in ({}, {"path": "../../etc/passwd"}, {"node": "/etc/passwd"}):
        status, body = get(client, "/likeness/training/status", **query)
        assert status == 200 and set(body) == {"statuses"}, body           # no path input to abuse
        assert "root:" not in str(body)
        tally("routes", f"status: {query or 'plain'}", status=status)


def test_a_flood_of_bad_requests_leaves_the_server_serving(comfy, client, sets, tally):
    bodies = [b"", b"\xff\xfe", b"[" * 10000, b'{"folder": ' + b'"a' * 1000, b"null", b"1e99999"]
    for body in bodies:
        status, _ = client.request("POST", "/likeness/caption", body)
        assert status == 400, body[:20]
    for name in (os.sep * 300, "%2e%2e/%2e%2e/etc", "\\\\server\\share\\x"):
        status, _ = get(client, "/likeness/captions", folder=name)
        assert status in (403, 404), name
    assert still_serving(client)
    assert Path(sets["secret"]).read_text(encoding="utf-8") == OUTSIDE_TEXT
    tally("routes", "flood of malformed bodies and paths", requests=len(bodies) + 3)


def test_post_routes_take_only_json_from_comfyuis_own_page(comfy, client, sets, tally):
    """A page of another site can POST a form or text/plain without asking the browser first: the pack's
    POST routes take JSON only, and only from ComfyUI's own origin (issue 17, item 14)."""
    ok = {"folder": sets["rel"], "image": "000.jpg", "caption": "tok, written by another site"}
    body = json.dumps(ok).encode()
    # ComfyUI's own origin check covers only a loopback Host; a LAN address (--listen) gets only the pack's
    lan = {"Host": "comfy.lan:8188"}
    cases = [
        ("save: text/plain body (a form-less cross-site POST)", {"Content-Type": "text/plain"}, 415, "Send JSON"),
        ("save: form-urlencoded", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "Send JSON"),
        ("save: no content type", {"Content-Type": ""}, 415, "Send JSON"),
        ("save: JSON from another origin, LAN address", {**lan, "Origin": "http://evil.example"}, 403,
         "another site"),
        ("save: JSON from another port of the same host", {**lan, "Origin": "http://comfy.lan:1"}, 403,
         "another site"),
        ("save: JSON from a sandboxed frame", {**lan, "Origin": "null"}, 403, "another site"),
        ("save: browser says cross-site", {"Sec-Fetch-Site": "cross-site"}, 403, "another site"),
        ("save: JSON from another origin, loopback (ComfyUI's own check)", {"Origin": "http://evil.example"}, 403,
         ""),
    ]
    for name, headers, expected, words in cases:
        status, answer = client.request("POST", "/likeness/caption", body, headers=headers)
        if headers.get("Sec-Fetch-Site") == "cross-site" and status == 403 and not answer:
            words = ""             # ComfyUI 0.33 refuses it itself (an empty 403) before the pack's guard sees it
        check(client, tally, name, status, answer, expected, words)
    assert (sets["folder"] / "000.txt").read_text(encoding="utf-8") == "tok, a man in a garden\n"
    status, answer = client.request("POST", "/likeness/caption", body,
                                    headers={**lan, "Origin": "http://comfy.lan:8188", "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and answer["hand_edit"] is True, answer                     # ComfyUI's own page
    tally("routes", "save: JSON from ComfyUI's own page", status=status)


def _prefixed(prompt: dict, prefix: str) -> dict:
    """The same API prompt with every node id prefixed (links follow), so two users' runs are told apart."""
    def relink(value):
        return [prefix + value[0], value[1]] if isinstance(value, list) and len(value) == 2 and value[0] in prompt \
            else value
    return {prefix + k: {**n, "inputs": {i: relink(v) for i, v in n["inputs"].items()}} for k, n in prompt.items()}


def test_under_multi_user_each_user_sees_only_their_own_journal_statuses_and_events(fresh_comfy, replicate_fake,
                                                                                   tally):
    """With --multi-user, alice's journal entries and training statuses are not shown to bob, and the live
    events of her prompts go to her page only (issue 17, item 14)."""
    server = fresh_comfy("--multi-user")
    pages = {name: ComfyClient(server.url) for name in ("alice", "bob")}
    try:
        users = {name: page.request("POST", "/users", {"username": name})[1] for name, page in pages.items()}
        lora = f"me-{uuid.uuid4().hex[:6]}.safetensors"
        write_lora(server.base_dir / "models" / "loras" / lora, "diffusers", factors(seed=5))

        def run(name: str, prompt: dict):
            page = pages[name]
            status, body = page.request("POST", "/prompt", {"prompt": prompt, "client_id": page.client_id},
                                        headers={"comfy-user": users[name]})
            assert status == 200, body
            result = page.wait(body["prompt_id"])
            assert result.status == "success", result.error_message
            return result

        run("alice", local_generation(lora, "likeness/alice", seed=1))
        training, _ = train_prompt(server.base_dir)
        run("alice", training)
        run("bob", _prefixed(local_generation(lora, "likeness/bob", seed=2), "b"))   # after alice's, in order
        # a script queuing without a user: ComfyUI runs it; the pack records it for no one
        status, body = pages["bob"].request("POST", "/prompt", {"prompt": _prefixed(
            local_generation(lora, "likeness/script", seed=3), "c"), "client_id": pages["bob"].client_id})
        assert status == 200, body
        assert pages["bob"].wait(body["prompt_id"]).status == "success"

        def get(route: str, name: str | None):
            return pages["bob"].request("GET", route, headers={"comfy-user": users[name]} if name else {})

        status, mine = get("/likeness/journal?limit=10", "alice")
        assert status == 200 and [(e["seed"], e["user"]) for e in mine["entries"]] == [(1, users["alice"])]
        status, theirs = get("/likeness/journal?limit=10", "bob")
        assert status == 200 and [(e["seed"], e["user"]) for e in theirs["entries"]] == [(2, users["bob"])]
        status, statuses = get("/likeness/training/status", "alice")
        assert status == 200 and list(statuses["statuses"]) == [TRAINER_NODE]
        assert statuses["statuses"][TRAINER_NODE]["phase"] == "succeeded"
        status, statuses = get("/likeness/training/status", "bob")
        assert status == 200 and statuses["statuses"] == {}
        status, _ = get("/likeness/journal?limit=10", None)             # no user: ComfyUI knows no "default"
        assert status == 403
        for name, case in (("alice", "journal"), ("bob", "journal"), ("alice", "training statuses"),
                           ("bob", "training statuses (none)"), ("nobody", "journal: unknown user refused")):
            tally("routes", f"--multi-user: {case} as {name}")

        alice_events, alice_texts = pages["alice"].seen()
        bob_events, bob_texts = pages["bob"].seen()              # bob's own prompt ran last: anything sent to
        assert [e for e in alice_events if e["type"] == "likeness.training"]        # him before it has arrived
        assert [e for e in bob_events if e["type"] == "likeness.training"] == []
        assert any(node == "stack" for node, _ in alice_texts)
        assert bob_texts and all(node[0] in "bc" for node, _ in bob_texts), bob_texts
        tally("routes", "--multi-user: training events and progress text reach only the page that queued")
    finally:
        for page in pages.values():
            page.close()

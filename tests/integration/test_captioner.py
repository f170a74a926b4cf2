"""Captioning a prepared set with LikenessGeminiCaptioner in a real ComfyUI, against the fake Gemini server."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from conftest import CANARY_KEY
from fakes.gemini import image_color
from fakes.gemini_fixtures import photo_color, write_photo
from harness.client import ComfyClient
from harness.workflows import workflow_prompt

DEFAULT_TRAITS = "eye color, eye colour, blue eyes, green eyes, brown eyes, face shape"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


class CaptionSet:
    """A folder of solid-colour photos in ComfyUI's input and the prompt loader → captioner for it."""

    def __init__(self, base_dir: Path, count: int):
        self.name, self.trigger = unique("photos-"), unique("trig")
        self.source = base_dir / "input" / self.name
        self.source.mkdir(parents=True)
        for i in range(count):
            write_photo(self.source / f"{i:03d}.jpg", photo_color(i), size=(200, 200), variant=i)
        self.folder = base_dir / "output" / "likeness" / "datasets" / self.name
        self.count = count

    def prompt(self, **captioner: object) -> dict:
        inputs = {"dataset": ["1", 2], "model": "gemini-3.8-flash", "custom_model": "",
                  "instructions": "Caption the photo in the seed's template.", "overwrite": False,
                  "concurrency": 4, "rpm": 0, "forbidden_traits": DEFAULT_TRAITS, "vertex_project": "",
                  "vertex_location": "global"}
        inputs.update(captioner)
        return {"1": {"class_type": "LikenessDatasetLoader",
                      "inputs": {"folder": self.name, "trigger_word": self.trigger, "crop": "center", "size": 256,
                                 "convert": True, "output_folder": f"likeness/datasets/{self.name}"}},
                "2": {"class_type": "LikenessGeminiCaptioner", "inputs": inputs}}

    def captions(self) -> list[str | None]:
        files = [self.folder / f"{i:03d}.txt" for i in range(self.count)]
        return [f.read_text(encoding="utf-8").strip() if f.exists() else None for f in files]


def ui(result) -> dict:
    """The captioner's UI output, from its `executed` event (history may be written a moment later)."""
    for event in result.events:
        if event["type"] == "executed" and event["data"]["node"] == "2":
            return event["data"]["output"]
    return {}


def report(result) -> str:
    return "\n".join(ui(result).get("text", []))


@pytest.fixture
def photos(comfy):
    return lambda count=4: CaptionSet(comfy.base_dir, count)


def test_caption_a_prepared_set_trigger_word_first_with_progress_and_cost(client, gemini, photos):
    s = photos(4)
    result = client.run(s.prompt())
    assert result.status == "success", result.error_message
    captions = s.captions()
    assert all(c and c.startswith(f"{s.trigger}, ") for c in captions) and len(set(captions)) == 4
    calls = gemini.generate_calls()
    assert len(calls) == 4 and all(c.images[0][0] == "image/jpeg" for c in calls)
    assert all(s.trigger not in c.raw_body for c in calls)      # the trigger word is the pack's, not Gemini's
    text = report(result)
    assert "4 new, 0 from the cache" in text and "estimated $" in text and "spent on 4 answers" in text
    texts = result.texts_for("2")
    assert any("asking Gemini for 4 (about $" in t for t in texts)   # the estimate, before any request
    assert sum(1 for t in texts if ": captioned" in t) == 4          # one line per image
    assert result.progress("2")[-1]["value"] == 4


def test_rerun_makes_no_api_call(client, gemini, photos):
    s = photos(3)
    assert client.run(s.prompt()).status == "success"
    first = s.captions()
    gemini.requests.clear()
    for txt in s.folder.glob("*.txt"):
        txt.unlink()
    result = client.run(s.prompt(concurrency=3))   # a changed widget makes ComfyUI run the node again
    assert result.status == "success", result.error_message
    assert gemini.generate_calls() == []
    assert s.captions() == first and "0 new, 3 from the cache" in report(result)


def test_a_caption_that_failed_is_asked_again_when_queued_again(client, gemini, photos):
    """ "queue again to retry" reaches the node: ComfyUI's cache does not serve the run with the hole in it."""
    s = photos(3)
    gemini.script("not_json", match=image_color(photo_color(1)), times=1)  # photo 1's answer is unreadable
    first = client.run(s.prompt())
    assert first.status == "success", first.error_message
    assert "1 failed" in report(first) and [c is not None for c in s.captions()] == [True, False, True]
    gemini.requests.clear()
    again = client.run(s.prompt())                                        # the same prompt, queued again
    assert again.status == "success", again.error_message
    assert len(gemini.generate_calls()) == 1                              # photo 1 only; the others cached
    assert all(s.captions()) and "1 new, 2 from the cache" in report(again)
    gemini.requests.clear()
    assert client.run(s.prompt()).status == "success" and gemini.generate_calls() == []   # done: cache holds


def test_cache_survives_a_comfyui_restart(fresh_comfy, fake_gemini):
    fake_gemini.reset()
    server = fresh_comfy()
    s = CaptionSet(server.base_dir, 2)
    with _closing(server.url) as client_:
        assert client_.run(s.prompt()).status == "success"
    assert len(fake_gemini.generate_calls()) == 2
    first = s.captions()
    server.restart()
    fake_gemini.requests.clear()
    with _closing(server.url) as client_:
        result = client_.run(s.prompt())
    assert result.status == "success", result.error_message
    assert fake_gemini.generate_calls() == []
    assert s.captions() == first and "0 new, 2 from the cache" in report(result)


def test_hand_edit_saved_in_the_review_editor_is_kept(client, gemini, photos):
    s = photos(3)
    assert client.run(s.prompt()).status == "success"
    folder = f"likeness/datasets/{s.name}"   # relative to ComfyUI's output folder
    status, body = client.request("POST", "/likeness/caption",
                                  {"folder": folder, "image": "001.jpg", "caption": f"{s.trigger}, my own words.",
                                   "trigger_word": s.trigger})
    assert status == 200 and body["hand_edit"] is True and body["flags"] == []
    status, listing = client.request("GET", f"/likeness/captions?folder={folder}&trigger_word={s.trigger}")
    assert status == 200 and [i["hand_edit"] for i in listing["items"]] == [False, True, False]
    gemini.requests.clear()
    result = client.run(s.prompt(instructions="Describe the clothes in detail."))   # new answers for all
    assert result.status == "success", result.error_message
    assert s.captions()[1] == f"{s.trigger}, my own words."
    assert len(gemini.generate_calls()) == 2    # the edited photo is not even paid for
    assert "001.jpg: kept" in report(result)
    result = client.run(s.prompt(instructions="Describe the clothes in detail.", overwrite=True))
    assert result.status == "success" and s.captions()[1] != f"{s.trigger}, my own words."


def test_interrupt_stops_promptly_and_keeps_finished_captions(client, gemini, photos):
    s = photos(6)
    fast = [image_color(photo_color(0)), image_color(photo_color(1))]
    held = gemini.hold(match=lambda r: not any(m(r) for m in fast))
    try:
        prompt_id = client.queue(s.prompt(concurrency=3))
        client.wait_for_text("2", lambda t: t.startswith("2/6 "), timeout=120)
        client.interrupt()
        result = client.wait(prompt_id, timeout=60)
        assert result.status == "interrupted"
        assert not held.is_set()        # it stopped while requests were still held open by the fake
        sent = len(gemini.generate_calls())
    finally:
        gemini.release()
    assert [c is not None for c in s.captions()] == [True, True, False, False, False, False]
    assert 3 <= sent <= 5 and len(gemini.generate_calls()) == sent   # nothing sent after the stop
    assert not any(image_color(photo_color(5))(c) for c in gemini.generate_calls())   # never reached


def test_daily_quota_stops_with_a_clear_message_and_keeps_what_was_done(client, gemini, photos):
    s = photos(4)
    gemini.script("quota_day", match=image_color(photo_color(2)), times=None)
    result = client.run(s.prompt(concurrency=1))
    assert result.status == "error"
    assert "daily quota" in result.error_message and "2 of 4 captions are done and saved" in result.error_message
    assert [c is not None for c in s.captions()] == [True, True, False, False]
    assert len(gemini.generate_calls()) == 3


def test_503_is_retried(client, gemini, photos):
    s = photos(2)
    gemini.script("503", times=2)
    result = client.run(s.prompt())
    assert result.status == "success", result.error_message
    assert [c.status for c in gemini.generate_calls()].count(503) == 2
    assert all(s.captions())


def test_429_waits_for_retry_info(client, gemini, photos):
    s = photos(1)
    gemini.script("rate_minute", times=1, retry_delay="1.5s")
    result = client.run(s.prompt())
    assert result.status == "success", result.error_message
    first, second = gemini.generate_calls()
    assert first.status == 429 and second.status == 200
    assert second.started - first.finished >= 1.5


def test_blocked_photo_is_reported_and_the_others_are_captioned(client, gemini, photos):
    s = photos(3)
    gemini.script("safety", match=image_color(photo_color(1)), times=None)
    result = client.run(s.prompt())
    assert result.status == "success", result.error_message
    line = next(x for x in report(result).splitlines() if "001.jpg" in x)
    assert "001.jpg: blocked" in line and "Gemini withheld the answer for safety (SAFETY)" in line
    assert [c is not None for c in s.captions()] == [True, False, True]


def test_lint_flags_are_in_the_report_and_the_review_data(client, gemini, photos):
    s = photos(3)
    gemini.script("ok", match=image_color(photo_color(0)), times=None,
                  fields={"facial_expression": "Smiling with blue eyes"})
    result = client.run(s.prompt())
    assert result.status == "success", result.error_message
    assert "000.jpg: mentions 'blue eyes'" in report(result)
    review = ui(result)["likeness_review"][0]
    assert review["trigger_word"] == s.trigger and review["folder"].endswith(s.name)
    assert [(f["image"], f["kind"]) for f in review["flags"]] == [("000.jpg", "forbidden")]


def test_the_key_never_shows_in_requests_errors_or_logs(client, comfy, gemini, photos):
    s = photos(2)
    assert client.run(s.prompt()).status == "success"
    assert all(CANARY_KEY not in c.raw_body for c in gemini.generate_calls())
    gemini.script("invalid_key", times=None, echo_key=True)    # a service that echoes the key back
    result = client.run(s.prompt(instructions="Something else."))
    assert result.status == "error" and "refused the credentials" in result.error_message
    assert CANARY_KEY not in json.dumps(result.events) and CANARY_KEY not in json.dumps(result.outputs)
    assert CANARY_KEY not in json.dumps(client.get(f"/history/{result.prompt_id}"))
    assert CANARY_KEY not in comfy.log_text()


def test_any_model_id_can_be_typed(client, gemini, photos):
    s = photos(1)
    gemini.models.add("gemini-4.0-flash")
    assert client.run(s.prompt(custom_model="gemini-3.5-flash-lite")).status == "success"
    result = client.run(s.prompt(model="gemini-4.0-flash"))    # not in the list: still accepted
    assert result.status == "success", result.error_message
    assert [c.model for c in gemini.generate_calls()] == ["gemini-3.5-flash-lite", "gemini-4.0-flash"]
    result = client.run(s.prompt(model="gemini-9-ultra"))
    assert result.status == "error" and "no model 'gemini-9-ultra'" in result.error_message


def test_vertex_ai_with_project_location_and_application_default_credentials(client, gemini, photos):
    s = photos(1)
    result = client.run(s.prompt(vertex_project="likeness-test", vertex_location="us-central1"))
    assert result.status == "success", result.error_message
    (call,) = gemini.generate_calls()
    assert call.path.startswith("/v1beta1/projects/likeness-test/locations/us-central1/publishers/google/models/")
    assert call.bearer == "fake-access-token" and call.api_key is None
    assert "Vertex AI (project likeness-test, us-central1)" in report(result)


def test_review_routes_stay_inside_prepared_sets(client, comfy, gemini, photos, tmp_path):
    s = photos(1)
    assert client.run(s.prompt()).status == "success"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"x")
    link = comfy.base_dir / "output" / unique("link-")
    os.symlink(outside, link)
    for folder in ["../input", s.name + "/../..", str(outside), link.name, "/etc"]:
        status, _ = client.request("GET", f"/likeness/captions?folder={folder}")
        assert status == 403, folder
        status, _ = client.request("POST", "/likeness/caption", {"folder": folder, "image": "x.jpg", "caption": "hi"})
        assert status == 403, folder
    rel = f"likeness/datasets/{s.name}"
    for bad in [[], {"folder": rel}, {"folder": rel, "image": "000.jpg", "caption": 5},
                {"folder": rel, "image": "../000.jpg", "caption": "x"},
                {"folder": rel, "image": "000.jpg", "caption": "x", "extra": 1}]:
        status, _ = client.request("POST", "/likeness/caption", bad)
        assert status == 400, bad
    assert client.request("POST", "/likeness/caption", {"folder": rel, "image": "042.jpg", "caption": "x"})[0] == 404
    assert not (outside / "x.txt").exists() and s.captions()[0].startswith(s.trigger)


def test_the_review_editor_script_is_served(client):
    body = client.get("/extensions/comfyui-likeness/js/caption_review.js")
    assert b"likeness.captionReview" in body and b"/likeness/caption" in body


class _closing:
    def __init__(self, url: str):
        self.client = ComfyClient(url)

    def __enter__(self) -> ComfyClient:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def test_the_prepare_and_caption_workflow_runs(client, gemini, photos):
    from harness.comfy_server import REPO

    workflow = json.loads((REPO / "workflows" / "1-prepare-and-caption.json").read_text())
    assert any(n["type"] == "MarkdownNote" and "GEMINI_API_KEY" in n["widgets_values"][0] for n in workflow["nodes"])
    prompt = workflow_prompt(workflow, client.get("/object_info"))
    loader = next(n for n in prompt.values() if n["class_type"] == "LikenessDatasetLoader")
    captioner = next(n for n in prompt.values() if n["class_type"] == "LikenessGeminiCaptioner")
    loader_id = next(k for k, n in prompt.items() if n is loader)
    assert captioner["inputs"]["dataset"] == [loader_id, 2]                 # loader's dataset → captioner
    assert captioner["inputs"]["model"] == "gemini-3.8-flash" and captioner["inputs"]["overwrite"] is False
    s = photos(2)
    loader["inputs"].update(folder=s.name, trigger_word=s.trigger, size=256,
                            output_folder=f"likeness/datasets/{s.name}")
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert all(c and c.startswith(s.trigger) for c in s.captions())
    assert len(gemini.generate_calls()) == 2

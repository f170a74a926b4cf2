"""The caption flow a user goes through on the canvas with workflows/1-prepare-and-caption.json: point it at
photos, queue, read the captions, fix one, save, queue again — the fix stays and no caption is paid twice."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from conftest import ARTIFACTS
from fakes.gemini_fixtures import photo_color, write_photo
from harness.comfy_server import REPO

pytestmark = pytest.mark.browser
EDIT = "{trigger}, a hand-written caption of a man in a red coat."


def shot(page, name: str) -> None:
    if os.environ.get("LIKENESS_SCREENSHOTS"):
        page.screenshot(ARTIFACTS / f"caption-flow-{name}.png")


def queue_and_wait(p) -> None:
    """Queues the canvas's workflow as the user does and waits until the captioner has run and reported."""
    p.evaluate("""() => {
        const api = window.comfyAPI.api.api;
        window.__captioned = false;
        if (!window.__captionListener) {
            window.__captionListener = ({detail}) => { if (detail?.output?.likeness_review) window.__captioned = true; };
            api.addEventListener('executed', window.__captionListener);
        }
        app.queuePrompt(0, 1);
    }""")
    p.wait_for_function("() => window.__captioned === true", timeout=120_000)


def test_caption_edit_survives_a_requeue_without_paying_again(no_templates_dialog, page, comfy, gemini):
    trigger = f"cap{uuid.uuid4().hex[:6]}"
    name = f"flow-{uuid.uuid4().hex[:6]}"
    source = comfy.base_dir / "input" / name
    source.mkdir(parents=True)
    for i in range(3):
        write_photo(source / f"{i:03d}.jpg", photo_color(i + 3), size=(200, 200), variant=i)
    p = page.page
    workflow = json.loads((REPO / "workflows" / "1-prepare-and-caption.json").read_text(encoding="utf-8"))
    assert page.load_workflow(workflow)["missing"] == []
    p.evaluate("""([name, trigger]) => {
        const loader = app.rootGraph.nodes.find(n => n.type === 'LikenessDatasetLoader');
        const set = (k, v) => { loader.widgets.find(w => w.name === k).value = v; };
        set('folder', name); set('trigger_word', trigger); set('crop', 'center'); set('size', 256);
        set('output_folder', 'likeness/datasets/' + name);
    }""", [name, trigger])

    queue_and_wait(p)
    p.wait_for_function("() => document.querySelectorAll('.likeness-review textarea').length === 3", timeout=60_000)
    paid = len(gemini.generate_calls())
    assert paid == 3
    captions = [t.input_value() for t in p.locator(".likeness-review textarea").all()]
    assert all(c.startswith(f"{trigger}, ") for c in captions)
    shot(page, "1-captions")

    second = p.locator(".likeness-review textarea").nth(1)
    edit = EDIT.format(trigger=trigger)
    second.fill(edit)
    p.locator(".likeness-review button", has_text="Save").nth(1).dispatch_event("click")
    p.wait_for_function("() => document.querySelectorAll('.likeness-review .status')[1].textContent"
                        ".startsWith('saved')", timeout=30_000)
    txt = comfy.base_dir / "output" / "likeness" / "datasets" / name / "001.txt"
    assert txt.read_text(encoding="utf-8").strip() == edit
    shot(page, "2-edited")

    queue_and_wait(p)                                      # the user queues the same workflow again
    p.wait_for_function("""(edit) => {
        const areas = document.querySelectorAll('.likeness-review textarea');
        return areas.length === 3 && areas[1].value === edit
            && document.querySelectorAll('.likeness-review .status')[1].textContent === 'your edit';
    }""", arg=edit, timeout=60_000)
    assert len(gemini.generate_calls()) == paid, "no caption was asked for (or paid) again"
    assert txt.read_text(encoding="utf-8").strip() == edit
    assert [t.input_value() for i, t in enumerate(p.locator(".likeness-review textarea").all()) if i != 1] == \
        [c for i, c in enumerate(captions) if i != 1]
    shot(page, "3-after-requeue")
    assert page.our_errors() == []

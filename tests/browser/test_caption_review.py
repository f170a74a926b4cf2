"""The caption review editor on the captioner node, in the real frontend: run, read, edit, save."""
from __future__ import annotations

import json

import pytest

from fakes.gemini_fixtures import photo_color, write_photo
from harness.comfy_server import REPO

pytestmark = pytest.mark.browser


def test_review_edit_and_save_a_caption_on_the_canvas(page, comfy, gemini):
    name = "review-photos"
    source = comfy.base_dir / "input" / name
    source.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        write_photo(source / f"{i:03d}.jpg", photo_color(i), size=(200, 200), variant=i)
    workflow = json.loads((REPO / "workflows" / "1-prepare-and-caption.json").read_text(encoding="utf-8"))
    assert page.load_workflow(workflow)["missing"] == []
    p = page.page
    assert p.evaluate("""() => {
        const node = app.rootGraph.nodes.find(n => n.type === 'LikenessGeminiCaptioner');
        return node.widgets.some(w => w.name === 'caption_review');
    }""")
    p.evaluate("""(name) => {
        const loader = app.rootGraph.nodes.find(n => n.type === 'LikenessDatasetLoader');
        const set = (k, v) => { loader.widgets.find(w => w.name === k).value = v; };
        set('folder', name); set('trigger_word', 'revtrig'); set('crop', 'center'); set('size', 256);
        set('output_folder', 'likeness/datasets/' + name);
        return app.queuePrompt(0, 1);
    }""", name)
    p.wait_for_function("() => document.querySelectorAll('.likeness-review textarea').length === 2",
                        timeout=120_000)
    first = p.locator(".likeness-review textarea").first
    assert first.input_value().startswith("revtrig, ")
    first.fill("revtrig, a photo with green eyes.")
    # dispatched on the button itself: the frontend may show its templates dialog over the canvas
    p.locator(".likeness-review button", has_text="Save").first.dispatch_event("click")
    p.wait_for_function("() => document.querySelector('.likeness-review .status').textContent.startsWith('saved')",
                        timeout=30_000)
    assert "green eyes" in p.locator(".likeness-review .flags").first.inner_text()
    txt = comfy.base_dir / "output" / "likeness" / "datasets" / name / "000.txt"
    assert txt.read_text(encoding="utf-8").strip() == "revtrig, a photo with green eyes."
    assert page.our_errors() == []

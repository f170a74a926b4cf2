"""The playground page on a phone (Playwright's iPhone 13 emulation in Debian's Chromium) against the real
ComfyUI server and the fake Replicate and Gemini: pick the LoRAs, type and refine a prompt, see the cost,
generate and watch progress, see the image in the gallery, favourite it, Again (0 new paid calls), Vary (1),
Download, Cancel, open on the canvas — with a screenshot of each state in test-artifacts/, no sideways scroll
at 390 px, and no serious or critical accessibility violation (axe-core)."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from comfy_test_pack.lora_files import factors, write_lora
from harness.comfy_server import REPO
from harness.phone import PhoneBrowser, horizontal_overflow, serious_violations
from likeness.generation.seed_journal import JournalEntry, SeedJournal

pytestmark = pytest.mark.browser
SHOTS = REPO / "test-artifacts" / "playground"
READY = "() => window.__playground && window.__playground.ready === true"
CREATE = r"^/v1/(predictions|models/[^/]+/[^/]+/predictions)$"
REFINED = ("An analog portrait of a man in a 1960s diner, seated at the chrome counter with a cup of coffee. He wears "
           "a brown corduroy jacket over a white shirt. Warm tungsten light from the ceiling lamps, a medium shot at "
           "eye level, shallow focus and visible film grain.")
# The frontend of a fresh user dir asks for these; nothing of the page.
BENIGN = ("favicon",)


@pytest.fixture(scope="module")
def phone():
    browser = PhoneBrowser()
    yield browser
    browser.close()


@pytest.fixture
def loras(comfy, replicate_fake):
    """A personal LoRA trained by Likeness (Replicate version and trigger word in its metadata) and a Civitai
    style LoRA with a long name (long names must wrap, never widen the page)."""
    folder = comfy.base_dir / "models" / "loras"
    tag = uuid.uuid4().hex[:6]
    version = replicate_fake.add_trained_version(f"likeness-tester/me-{tag}")
    personal = f"pelarbues-{tag}.safetensors"
    style = f"civitai_analog_film_photography_kodak_portra_400_grain_v2-{tag}.safetensors"
    write_lora(folder / personal, "diffusers", factors(modules=("single_blocks.0.linear2",)),
               {"likeness_trigger_word": "pelarbues", "likeness_destination_version": version})
    write_lora(folder / style, "diffusers", factors(seed=5, modules=("single_blocks.0.linear2",)))
    (folder / style).with_suffix(".civitai.info").write_text(json.dumps({"id": 777, "modelId": 1}))
    return personal, style


def shot(page, name: str, focus: str | None = None) -> None:
    """A screenshot of the phone's screen, with `focus` scrolled to its middle."""
    if focus:
        page.evaluate("(s) => document.querySelector(s).scrollIntoView({block: 'center'})", focus)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def text(page, selector: str) -> str:
    return page.locator(selector).text_content() or ""


def wait_text(page, selector: str, pattern: str, timeout: int = 60_000) -> str:
    page.wait_for_function("([s, p]) => new RegExp(p).test(document.querySelector(s)?.textContent || '')",
                           arg=[selector, pattern], timeout=timeout)
    return text(page, selector)


def journal(comfy) -> SeedJournal:
    return SeedJournal(comfy.pack_dir)


def open_page(phone, comfy):
    return phone.open(f"{comfy.url}/likeness/playground/", READY)


def pick_loras(page, personal: str, style: str) -> None:
    page.select_option("#personal", personal)
    page.click("#add-style")
    page.select_option("#style-1", style)


def test_generate_on_a_phone_from_idea_to_favourite(phone, comfy, loras, replicate_fake, gemini):
    personal, style = loras
    earlier = journal(comfy).record(JournalEntry(prompt="pelarbues, an earlier portrait", seed=11, steps=35,
                                                 guidance=2.75, width=64, height=64, source="replicate",
                                                 likeness={"score": 72.5, "backend": "dlib", "reason": ""}))
    tab = open_page(phone, comfy)
    page = tab.page
    shot(page, "1-open")
    assert page.viewport_size["width"] == 390

    # pick the LoRAs, type an idea, refine it
    pick_loras(page, personal, style)
    assert "Trigger word: pelarbues" in text(page, "#trigger")
    assert re.search(r"personal 0\.90, style 1 0\.\d\d · total", text(page, "#balance-preview"))
    gemini.script("ok", fields={"prompt": REFINED})
    page.fill("#prompt", "pelarbues in a 1960s diner, film look")
    page.click("#refine")
    wait_text(page, "#refine-status", "Refined")
    assert page.input_value("#prompt") == f"pelarbues, {REFINED}"
    assert "pelarbues" not in gemini.generate_calls()[0].raw_body
    wait_text(page, "#cost", r"About \$0\.0198.*This month")
    shot(page, "2-refined", focus="#prompt")

    # generate: the cost first, then live progress from ComfyUI's websocket
    replicate_fake.plan_prediction(sync=False, stall_at_tick=2, ticks=5, predict_time=4.0)
    page.click("#generate")
    page.wait_for_selector("#confirm[open]")
    assert "About $0.0198" in text(page, "#confirm-cost") and "This month" in text(page, "#confirm-month")
    shot(page, "3-cost-before")
    page.click("#confirm-pay")
    wait_text(page, "#progress-text", "Generating on Replicate: step")
    assert page.is_visible("#cancel")
    shot(page, "4-progress", focus="#cost")
    replicate_fake.release_predictions()
    result = wait_text(page, "#result", "Done")
    assert "cost $0.0061 (estimate $0.0198)" in result and "not scored" in result
    page.wait_for_selector("#detail[open]")
    entry = journal(comfy).find("last")
    assert entry.prompt == f"pelarbues, {REFINED}" and entry.extra["cost_usd"] == pytest.approx(4.0 * 0.001525)
    facts = text(page, "#detail-facts")
    assert f"Seed{entry.seed}" in facts and "$0.0061" in facts and REFINED in facts
    page.wait_for_function("() => document.querySelector('#detail-image').naturalWidth > 0")
    shot(page, "5-image-detail")
    assert replicate_fake.count("POST", CREATE) == 1

    # favourite it, and download it
    page.click("#detail-favourite")
    page.wait_for_selector("#detail-favourite[aria-pressed='true']")
    assert journal(comfy).find(entry.id).favourite
    with page.expect_download() as download:
        page.click("#detail-download")
    assert download.value.suggested_filename == f"likeness-{entry.id}.png"
    assert open(download.value.path(), "rb").read(4) == b"\x89PNG"
    shot(page, "6-favourite")

    # Again: the same seed and settings cost nothing; Vary: a new seed, one new paid call
    page.click("#detail-again")
    assert "nothing paid" in wait_text(page, "#result", "Done")
    assert replicate_fake.count("POST", CREATE) == 1, "Again made no new paid call"
    page.wait_for_selector("#detail[open]")
    page.click("#detail-vary")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-pay")
    page.wait_for_function("() => /Done: cost/.test(document.querySelector('#result').textContent)", timeout=60_000)
    assert replicate_fake.count("POST", CREATE) == 2, "Vary made exactly one new paid call"
    page.click("#detail-close")

    # the gallery: newest first, a score on each scored image, the filters
    tiles = page.locator("#gallery button")
    assert tiles.first.get_attribute("data-id") == journal(comfy).find("last").id
    assert page.locator(f"#gallery button[data-id='{earlier.id}'] .badge").text_content() == "likeness 73"
    assert page.locator(f"#gallery button[data-id='{entry.id}'] .badge").count() == 0, "not scored: no badge"
    page.select_option("#filter-score", "70")
    page.wait_for_function(f"() => !document.querySelector(\"#gallery button[data-id='{entry.id}']\")")
    scores = [int(t.removeprefix("likeness ")) for t in page.locator("#gallery .badge").all_text_contents()]
    assert page.locator("#gallery button").count() == len(scores) and min(scores) >= 70 and 73 in scores
    page.select_option("#filter-score", "")
    page.check("#filter-favourites")
    page.wait_for_function(f"() => [...document.querySelectorAll('#gallery button')].every(b => "
                           f"b.querySelector('.star')) && document.querySelector(\"#gallery button[data-id='{entry.id}']\")")
    page.uncheck("#filter-favourites")
    shot(page, "7-gallery", focus="#gallery")
    assert horizontal_overflow(page) == 0
    assert [e for e in tab.our_errors() if not any(b in e for b in BENIGN)] == []


def test_cancel_stops_the_run_and_its_prediction(phone, comfy, loras, replicate_fake):
    personal, style = loras
    page = open_page(phone, comfy).page
    pick_loras(page, personal, style)
    page.fill("#prompt", "a rooftop portrait at dusk")
    replicate_fake.plan_prediction(sync=False, stall_at_tick=1, ticks=5)
    page.click("#generate")
    page.click("#confirm-pay")
    wait_text(page, "#progress-text", "Generating on Replicate")
    page.click("#cancel")
    wait_text(page, "#result", "Canceled")
    (prediction_id,) = replicate_fake.prediction_ids()
    assert replicate_fake.prediction(prediction_id)["status"] == "canceled"
    assert replicate_fake.count("POST", rf"^/v1/predictions/{prediction_id}/cancel$") == 1
    assert page.is_hidden("#cancel") and page.is_enabled("#generate")
    shot(page, "8-canceled", focus="#result")


def test_nothing_scrolls_sideways_at_390_px(phone, comfy, loras):
    personal, style = loras
    page = open_page(phone, comfy).page
    pick_loras(page, personal, style)
    page.click("#add-style")
    page.fill("#prompt", "a very long prompt " * 60 + "withaverylongunbrokenwordthatcouldwidenthepage" * 3)
    states = {"open": lambda: None, "detail": lambda: page.locator("#gallery button").first.click()}
    for name, step in states.items():
        step()
        assert horizontal_overflow(page) == 0, f"the page scrolls sideways at 390 px ({name})"
    # the check itself can fail: a 600 px wide element makes it report the overflow
    page.evaluate("() => document.querySelector('main').append(Object.assign(document.createElement('div'), "
                  "{id: 'too-wide', style: 'width: 600px; height: 1px'}))")
    assert horizontal_overflow(page) > 0


def test_no_serious_or_critical_accessibility_violations(phone, comfy, loras):
    personal, style = loras
    page = open_page(phone, comfy).page
    assert serious_violations(page) == []
    pick_loras(page, personal, style)
    page.fill("#prompt", "a portrait in a greenhouse")
    assert serious_violations(page) == []
    page.locator("#gallery button").first.click()
    page.wait_for_selector("#detail[open]")
    assert serious_violations(page) == []
    page.click("#detail-close")
    page.click("#generate")
    page.wait_for_selector("#confirm[open]")
    assert serious_violations(page) == []
    page.click("#confirm-back")
    # the checker does report a serious violation when there is one (an unlabelled field)
    page.evaluate("() => document.querySelector('main').append(document.createElement('select'))")
    assert any(v["id"] == "select-name" for v in serious_violations(page))


def test_open_on_the_canvas_loads_the_same_prompt_as_a_workflow(phone, comfy, loras, no_templates_dialog):
    personal, style = loras
    page = open_page(phone, comfy).page
    pick_loras(page, personal, style)
    page.fill("#prompt", "a portrait by a window")
    with phone.context.expect_page() as opened:
        page.click("#open-canvas")
    canvas = opened.value
    canvas.wait_for_function("() => window.__likeness && window.__likeness.handoff", timeout=120_000)
    nodes = canvas.evaluate("""() => (window.app.rootGraph ?? window.app.graph)._nodes.map(n => ({
        type: n.type, values: (n.widgets || []).map(w => w.value)}))""")
    types = sorted(n["type"] for n in nodes)
    assert types == ["LikenessLoraStack", "LikenessReplicateFluxSampler"]
    sampler = next(n for n in nodes if n["type"] == "LikenessReplicateFluxSampler")
    assert "a portrait by a window" in sampler["values"]
    assert "likeness=playground" not in canvas.url
    canvas.close()

"""The training battery's panel in the real frontend: it counts the trainings while the user edits the tables,
asks for the tick above the limit, follows each variant live against the fake Replicate, and comes back after a
page reload."""
from __future__ import annotations

import os
import uuid

import pytest

from conftest import ARTIFACTS
from harness import photos

pytestmark = pytest.mark.browser
OWNER = "likeness-tester"
SEED_TABLE = "lora_rank: 16, 32, 64\nsteps_per_image: 30, 40, 50\nlayers: 7/12/16/20, all"


def shot(page, name: str) -> None:
    if os.environ.get("LIKENESS_SCREENSHOTS"):
        page.screenshot(ARTIFACTS / f"battery-panel-{name}.png")


def panel(p, node_id) -> dict:
    return p.evaluate("""(id) => {
        const root = document.querySelector(`.likeness-battery[data-node-id="${id}"]`);
        if (!root) return null;
        const rows = [...root.querySelectorAll('tr')].map(tr => ({
            label: tr.querySelector('.label').textContent, phase: tr.dataset.phase, step: Number(tr.dataset.step),
            title: tr.querySelector('.phase').textContent, cost: tr.querySelector('.cost').textContent,
            link: tr.querySelector('a').getAttribute('href') || ''}));
        return {count: root.querySelector('.plan').dataset.count, plan: root.querySelector('.plan').textContent,
                warn: root.querySelector('.warn').textContent, rows, total: root.querySelector('.total').textContent};
    }""", node_id)


def wait_panel(p, node_id, condition: str, timeout_ms: int = 120_000) -> dict:
    p.wait_for_function(f"""(id) => {{
        const root = document.querySelector(`.likeness-battery[data-node-id="${{id}}"]`);
        if (!root) return false;
        const count = root.querySelector('.plan').dataset.count, warn = root.querySelector('.warn').textContent;
        const rows = [...root.querySelectorAll('tr')].map(tr => ({{phase: tr.dataset.phase,
                                                                    step: Number(tr.dataset.step)}}));
        return {condition};
    }}""", arg=node_id, timeout=timeout_ms)
    return panel(p, node_id)


def test_the_panel_counts_trainings_and_follows_every_variant(no_templates_dialog, page, comfy, replicate_fake):
    trigger, model = f"tok{uuid.uuid4().hex[:6]}", f"face-{uuid.uuid4().hex[:6]}"
    folder = f"panel-{uuid.uuid4().hex[:6]}"
    photos.photo_set(comfy.base_dir / "input" / folder, 4, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    p = page.page
    node_id = p.evaluate("""([folder, trigger, destination]) => {
        app.graph.clear();
        const add = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; app.graph.add(n); return n; };
        const loader = add('LikenessDatasetLoader', [20, 150]);
        const battery = add('LikenessTrainingBattery', [400, 150]);
        loader.connect(2, battery, 0);
        const set = (n, k, v) => { n.widgets.find(w => w.name === k).value = v; };
        set(loader, 'folder', folder); set(loader, 'trigger_word', trigger); set(loader, 'crop', 'center');
        set(loader, 'size', 256); set(battery, 'destination', destination);
        app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1;
        app.graph.setDirtyCanvas(true, true);
        return battery.id;
    }""", [folder, trigger, f"{OWNER}/{model}"])

    first = wait_panel(p, node_id, "count === '3'")                 # the default table: rank 16, 32, 64
    assert first["plan"].startswith("3 trainings (one factor at a time around the base): base, lora_rank 16")
    assert first["warn"] == ""
    # the user types the seed's table into the variations box
    p.evaluate("""([id, table]) => {
        const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'variations');
        const box = w.element ?? w.inputEl;
        box.value = table; box.dispatchEvent(new Event('input', {bubbles: true}));
    }""", [node_id, SEED_TABLE])
    assert wait_panel(p, node_id, "count === '6'")["warn"].startswith("More than 4 trainings")
    p.evaluate("""(id) => {
        const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'expand');
        w.value = 'full grid'; w.callback?.(w.value);
    }""", node_id)
    grid = wait_panel(p, node_id, "count === '18'")
    assert grid["plan"].startswith("18 trainings (every combination)")
    p.evaluate("""(id) => {
        const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'variations');
        const box = w.element ?? w.inputEl;
        box.value = 'lora_rank: 16, sixteen'; box.dispatchEvent(new Event('input', {bubbles: true}));
    }""", node_id)
    assert "lora_rank takes whole numbers" in wait_panel(p, node_id, "count === '' && warn !== ''")["warn"]
    shot(page, "1-plan")

    # back to three variants, queued: each one's row follows its training
    p.evaluate("""(id) => {
        const node = app.graph.getNodeById(id);
        const w = node.widgets.find(w => w.name === 'variations'), box = w.element ?? w.inputEl;
        box.value = 'lora_rank: 16, 32, 64'; box.dispatchEvent(new Event('input', {bubbles: true}));
        const e = node.widgets.find(w => w.name === 'expand'); e.value = 'one factor at a time'; e.callback?.(e.value);
    }""", node_id)
    wait_panel(p, node_id, "count === '3' && warn === ''")
    for _ in range(3):
        replicate_fake.plan_next(ticks=10, stall_at_tick=5)
    p.evaluate("() => app.queuePrompt(0, 1)")
    # each stalls at tick 5 of 10: ticks 3..10 are the steps, so 3/8 of 4 × 40 = step 60
    running = wait_panel(p, node_id, "rows.length === 3 && rows.every(r => r.phase === 'processing' && r.step === 60)")
    assert sorted(r["label"] for r in running["rows"]) == ["base", "lora_rank 16", "lora_rank 64"]
    assert all(r["title"] == "Training" and r["cost"].endswith("so far") for r in running["rows"])
    assert {r["link"] for r in running["rows"]} == {f"{replicate_fake.url}/p/{i}" for i in replicate_fake.training_ids()}
    shot(page, "2-running")

    before_reload = len(page.page_errors)
    page.reload(marker=f"{OWNER}/{model}")                          # the user reloads mid-battery
    booting = page.page_errors[before_reload:]        # the frontend's own boot-time error, as in the trainer's test
    del page.page_errors[before_reload:]
    page.page_errors.extend(e for e in booting if e != "getCanvas: canvas is null")
    restored = wait_panel(p, node_id, "rows.length === 3 && rows.every(r => r.phase === 'processing')", 60_000)
    assert [r["step"] for r in restored["rows"]] == [60, 60, 60] and restored["rows"] == running["rows"]

    replicate_fake.release()
    done = wait_panel(p, node_id, "rows.length === 3 && rows.every(r => r.phase === 'succeeded')")
    assert all(r["title"] == "Finished" and r["cost"].startswith("$") and "so far" not in r["cost"]
               for r in done["rows"])
    assert "3 variants, 3 ended" in done["total"]
    assert replicate_fake.count("POST", r"/trainings$") == 3
    shot(page, "3-finished")
    assert page.our_errors() == []

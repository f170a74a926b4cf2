"""The LoRA stack's visual editor in the real frontend: add rows, drag a strength, read the balanced values
and the total live, queue, and find that the server applied exactly the strengths the widget showed."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from comfy_test_pack.lora_files import factors, write_lora, write_sd_lora, write_xlabs_lora
from conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    if os.environ.get("LIKENESS_SCREENSHOTS"):
        page.screenshot(ARTIFACTS / f"lora-stack-{name}.png")


@pytest.fixture
def three_loras(comfy):
    folder = comfy.base_dir / "models" / "loras"
    tag = uuid.uuid4().hex[:6]
    names = [f"me_{tag}.safetensors", f"style_{tag}.safetensors", f"xlabs_{tag}.safetensors"]
    write_lora(folder / names[0], "diffusers", factors(seed=1), {"likeness_trigger_word": f"tok{tag}"})
    write_lora(folder / names[1], "kohya", factors(seed=2, modules=("single_blocks.0.linear2",), alpha=2.0),
               {"ss_trigger_words": json.dumps([f"film{tag}"])})
    write_xlabs_lora(folder / names[2])
    return names, tag


def stack_graph(p) -> tuple[str, str]:
    """TinyFluxModel → LikenessLoraStack → TinyShow(LORA_STACK), the stack's rows emptied; the stack's and the
    show node's ids (as strings: numbers in frontend 1.32.9, strings for new nodes in 1.49)."""
    return p.evaluate("""() => {
        app.rootGraph.clear();
        const add = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; app.rootGraph.add(n); return n; };
        const model = add('TinyFluxModel', [20, 40]);
        const stack = add('LikenessLoraStack', [300, 40]);
        const show = add('TinyShow', [900, 40]);
        model.connect(0, stack, 0);
        stack.connect(2, show, 0);
        stack.widgets.find(w => w.name === 'rows').value = '[]';
        stack.likenessStack.readRows();
        stack.setSize([560, stack.size[1]]);
        app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1;
        app.rootGraph.setDirtyCanvas(true, true);
        return [String(stack.id), String(show.id)];
    }""")


def queue_and_collect(p, node_ids: list[str], timeout_ms: int = 120_000) -> dict:
    """Queues the canvas's workflow as the user does and returns the `executed` outputs of `node_ids`
    (the page's own server events: ComfyUI sends them to the client that queued)."""
    p.evaluate("""() => {
        const api = window.comfyAPI.api.api;
        window.__executed = {};
        if (!window.__executedListener) {
            window.__executedListener = ({detail}) => { window.__executed[detail.node] = detail.output; };
            api.addEventListener('executed', window.__executedListener);
        }
        app.queuePrompt(0, 1);
    }""")
    p.wait_for_function("(ids) => ids.every(id => window.__executed[id])", arg=node_ids, timeout=timeout_ms)
    return p.evaluate("(ids) => Object.fromEntries(ids.map(id => [id, window.__executed[id]]))", node_ids)


def widget_state(p, node_id: str) -> dict:
    return p.evaluate("""(id) => {
        const root = document.querySelector(`.likeness-stack[data-node-id="${id}"]`);
        const rows = [...root.querySelectorAll('.row')].map(r => ({
            name: r.querySelector('.name').firstChild.textContent,
            strength: Number(r.querySelector('input.strength').value),
            effective: Number(r.querySelector('.effective').dataset.value),
            shown: r.querySelector('.effective').textContent,
            info: r.querySelector('.info').textContent}));
        const node = app.rootGraph.getNodeById(id);
        return {rows, total: Number(root.querySelector('.summary').dataset.total),
                totalText: root.querySelector('.summary .total').textContent,
                gapText: root.querySelector('.summary .gap').textContent,
                bar: root.querySelectorAll('.bar .seg').length,
                json: (() => { const raw = node.widgets.find(w => w.name === 'rows').value;
                               try { return JSON.parse(raw); } catch { return raw; } })()};
    }""", node_id)


def test_add_three_rows_drag_a_strength_and_the_server_applies_what_the_widget_showed(no_templates_dialog, page, comfy,
                                                                                       client, three_loras):
    names, tag = three_loras
    p = page.page
    node_id, show_id = stack_graph(p)
    root = p.locator(f'.likeness-stack[data-node-id="{node_id}"]')
    p.wait_for_function("(n) => [...document.querySelectorAll('.likeness-stack select.add-lora option')]"
                        ".some(o => o.value === n)", arg=names[2], timeout=30_000)
    for name in names:                                         # the user picks each file and presses "+ Add LoRA"
        root.locator("select.add-lora").select_option(name)
        root.locator("button.add-row").click()
    assert root.locator(".row").count() == 3
    p.wait_for_function("(id) => [...document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] .info`)]"
                        ".every(i => !i.textContent.startsWith('reading'))", arg=node_id, timeout=30_000)
    before = widget_state(p, node_id)
    assert [r["name"] for r in before["rows"]] == names
    assert f"tok{tag}" in before["rows"][0]["info"] and "diffusers" in before["rows"][0]["info"]
    assert f"film{tag}" in before["rows"][1]["info"] and "kohya" in before["rows"][1]["info"]
    assert before["rows"][2]["info"] == "XLabs format: 4 keys"        # converted by the stack: no warning
    # anchor (the seed's rule): 0.9 kept, and 0.2 and 0.2 are typed inside 0.15–0.25: kept as typed (issue 17,
    # item 2); the total says how far from 1.2 that leaves the stack
    assert [r["effective"] for r in before["rows"]] == pytest.approx([0.9, 0.2, 0.2])
    assert before["total"] == pytest.approx(1.3) and before["gapText"].startswith("0.10 above the target 1.2")
    # the raw rows JSON the editor writes is not shown beside it (classic canvas: widget.hidden; Nodes 2.0 reads
    # widget.options.hidden and would draw it as a textarea)
    assert p.evaluate("""(id) => {
        const raw = app.rootGraph.getNodeById(id).widgets.find(w => w.name === 'rows').value;
        return [...document.querySelectorAll('textarea, input')].filter(e => e.value === raw && e.offsetParent !== null)
            .length; }""", node_id) == 0
    shot(page, "1-three-rows")

    # drag the third row's slider with the mouse, to the right end of its track (strength 2)
    slider = root.locator(".row").nth(2).locator("input.strength")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    p.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2)
    p.mouse.down()
    seen = []
    for fraction in (0.6, 0.8, 1.0):
        p.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2, steps=4)
        state = widget_state(p, node_id)
        seen.append((state["rows"][1]["effective"], state["rows"][2]["effective"]))
    p.mouse.up()
    after = widget_state(p, node_id)
    assert after["rows"][2]["strength"] > 1.5
    # live while dragging: above the range, the third row gets what is left of 1.2 (0.1), raised to the floor;
    # the second row, typed inside the range, never moves
    assert seen == [(pytest.approx(0.2), pytest.approx(0.15))] * 3
    assert after["json"][2]["strength"] == after["rows"][2]["strength"]   # the widget wrote the rows JSON
    shot(page, "2-after-drag")

    # a value with no clamp at its bound: target 1.3 and a 0.15–0.4 range leave the third row 1.3 − 0.9 − 0.2
    p.evaluate("""(id) => { const n = app.rootGraph.getNodeById(id);
        const set = (k, v) => { const w = n.widgets.find(x => x.name === k); w.value = v; w.callback?.(v); };
        set('target_total', 1.3); set('clamp_max', 0.4); }""", node_id)
    shown = widget_state(p, node_id)
    expected = [0.9, 0.2, 0.2]
    assert [r["effective"] for r in shown["rows"]] == pytest.approx(expected)
    assert shown["total"] == pytest.approx(sum(expected)) and shown["gapText"].startswith("on the target 1.3")
    assert shown["bar"] == 3

    outputs = queue_and_collect(p, [node_id, show_id])
    served = outputs[node_id]["likeness_stack"]
    assert [r["effective"] for r in served] == pytest.approx([r["effective"] for r in shown["rows"]], abs=1e-9)
    assert [r["keys_applied"] for r in served][2] == 4            # the XLabs row, converted
    applied = json.loads(outputs[show_id]["text"][0])           # the LORA_STACK the node output
    assert [name for name, _, _ in applied] == names
    assert [s for _, s, _ in applied] == pytest.approx([r["effective"] for r in shown["rows"]], abs=1e-9)
    # after the run the rows show the server's coverage: "N of M keys apply"
    p.wait_for_function("(id) => document.querySelector(`.likeness-stack[data-node-id='${id}'] .row .info`)"
                        ".textContent.includes('keys apply')", arg=node_id, timeout=30_000)
    ran = widget_state(p, node_id)["rows"]
    assert "2 of 2 keys apply" in ran[0]["info"] and "4 of 4 keys apply" in ran[2]["info"]
    shot(page, "3-after-run")
    assert page.our_errors() == []


def test_a_lora_that_applies_nothing_is_left_out_in_the_page_as_on_the_server(no_templates_dialog, page, comfy):
    """The page's live balance leaves an SD 1.5 LoRA out, as the node does, so both show the same strengths
    (issue 17, item 3)."""
    folder = comfy.base_dir / "models" / "loras"
    tag = uuid.uuid4().hex[:6]
    names = [f"me_{tag}.safetensors", f"sd15_{tag}.safetensors", f"ink_{tag}.safetensors"]
    write_lora(folder / names[0], "diffusers", factors(seed=3))
    write_sd_lora(folder / names[1])
    write_lora(folder / names[2], "kohya", factors(seed=4, modules=("single_blocks.0.linear2",), alpha=2.0))
    p = page.page
    node_id, _ = stack_graph(p)
    rows = [{"lora": n, "strength": s, "on": True} for n, s in zip(names, (0.9, 0.2, 0.6))]
    p.evaluate("""([id, rows]) => { const n = app.rootGraph.getNodeById(id);
        n.widgets.find(w => w.name === 'rows').value = JSON.stringify(rows); n.likenessStack.readRows(); }""",
               [node_id, rows])
    p.wait_for_function("(id) => document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] .row`)[1]"
                        ".querySelector('.effective').textContent === 'out'", arg=node_id, timeout=30_000)
    before = widget_state(p, node_id)
    assert [r["effective"] for r in before["rows"]] == pytest.approx([0.9, 0.0, 0.25])   # 0.3 left, clamped
    assert "left out" in before["rows"][1]["info"] and before["total"] == pytest.approx(1.15)
    outputs = queue_and_collect(p, [node_id])
    served = outputs[node_id]["likeness_stack"]
    assert [r["effective"] for r in served] == pytest.approx([0.9, 0.0, 0.25])
    assert "SD 1.5" in served[1]["left_out"]
    p.wait_for_function("(id) => document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] .row .info`)[1]"
                        ".textContent.includes('left out: an SD 1.5')", arg=node_id, timeout=30_000)
    assert widget_state(p, node_id)["rows"][1]["shown"] == "out"
    assert page.our_errors() == []


def test_rows_written_by_api_show_in_the_editor_and_reorder_rewrites_them(no_templates_dialog, page):
    p = page.page
    node_id, _ = stack_graph(p)
    p.evaluate("""(id) => { const n = app.rootGraph.getNodeById(id);
        n.widgets.find(w => w.name === 'rows').value = 'a.safetensors, 0.9\\nb.safetensors, 0.3, off';
        n.likenessStack.readRows(); }""", node_id)
    root = p.locator(f'.likeness-stack[data-node-id="{node_id}"]')
    assert widget_state(p, node_id)["rows"][1]["shown"] == "off"
    root.locator(".row").nth(1).locator("button.up").click()
    root.locator(".row").nth(1).locator("button.remove").click()
    state = widget_state(p, node_id)
    assert state["json"] == [{"lora": "b.safetensors", "strength": 0.3, "on": False}]
    assert page.our_errors() == []

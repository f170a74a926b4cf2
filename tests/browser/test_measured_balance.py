"""The stack widget in `measured` mode, in the real frontend: before a run each row says the sweeps will decide;
after it, each row shows the sweep that decided its strength and that sweep's likeness there, with the strengths
the sweep recommended."""
from __future__ import annotations

import json
import shutil

import pytest

from browser.test_lora_stack_widget import queue_and_collect, shot, stack_graph
from tools import real_faces
from integration.test_strength_sweep import replicate_graph, replicate_loras, shown, unique

pytestmark = pytest.mark.browser


def decided(p, node_id) -> list[str]:
    return p.evaluate("(id) => [...document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] .row .decided`)]"
                      ".map(d => d.textContent)", node_id)


def test_measured_rows_show_the_sweep_that_decided_them_and_its_likeness(no_templates_dialog, page, comfy, client,
                                                                        replicate_fake):
    replicate_fake.use_images(lambda model, version, inputs, i: real_faces.styled_portrait(inputs, i))
    photos = unique("my_photos")
    (comfy.base_dir / "input" / photos).mkdir(parents=True)
    for name in ("obama2.jpg", "obama3.jpg"):
        shutil.copy(real_faces.faces_dir() / name, comfy.base_dir / "input" / photos / name)
    me, style = loras = replicate_loras(comfy)
    sweep = client.run(replicate_graph(loras, photos, personal=(0.9, 1.0, 2), style=(0.15, 0.3, 2)))
    assert sweep.status == "success", sweep.error_message
    scores = json.loads(json.loads(shown(sweep, "scores")["text"][0]))
    rec = scores["recommendation"]
    assert rec["personal"] is not None

    p = page.page
    node_id, show_id = stack_graph(p)
    p.evaluate("""([id, rows]) => { const n = app.rootGraph.getNodeById(id);
        n.widgets.find(w => w.name === 'rows').value = rows;
        const balance = n.widgets.find(w => w.name === 'balance');
        balance.value = 'measured'; balance.callback?.('measured');
        n.likenessStack.readRows(); }""", [node_id, json.dumps([{"lora": me, "strength": 0.9, "on": True},
                                                                {"lora": style, "strength": 0.2, "on": True}])])
    assert decided(p, node_id) == ["measured · read from the sweeps when it runs"] * 2

    outputs = queue_and_collect(p, [node_id, show_id])
    applied = json.loads(outputs[show_id]["text"][0])
    assert applied == [[me, rec["personal"], rec["personal"]], [style, rec["style"], rec["style"]]]
    p.wait_for_function("(id) => [...document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] .decided`)]"
                        ".every(d => d.textContent.includes('sweep ' ))", arg=node_id, timeout=30_000)
    likeness = round(rec["likeness"])
    assert decided(p, node_id) == [f"measured · sweep {scores['sweep']} · likeness {likeness}"] * 2
    effective = p.evaluate("(id) => [...document.querySelectorAll(`.likeness-stack[data-node-id='${id}'] "
                           ".row .effective`)].map(e => Number(e.dataset.value))", node_id)
    assert effective == pytest.approx([rec["personal"], rec["style"]])

    p.evaluate("""(id) => { const n = app.rootGraph.getNodeById(id);                 // back to anchor: no stale label
        const balance = n.widgets.find(w => w.name === 'balance'); balance.value = 'anchor';
        balance.callback?.('anchor'); }""", node_id)
    assert decided(p, node_id) == ["typed (personal)", "anchor"]
    shot(page, "measured")
    assert page.our_errors() == []

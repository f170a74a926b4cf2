"""Each Likeness node with a canvas widget, moved into a subgraph, still shows its panel updating after a run.

Inside a subgraph a node runs on the server as "<subgraph node id>:<node id>", and the events about it carry
that id: the caption review, the stack bar, the training status and the journal panel must find their node
from it (web/js/comfy_compat.js). Each test builds the graph at top level, converts the Likeness node into a
subgraph as the canvas's "Convert to Subgraph" does, queues from the page, then opens the subgraph and reads
the panel the user sees. Runs in every frontend mode the host has (classic canvas, Nodes 2.0).
"""
from __future__ import annotations

import json
import uuid

import pytest

from comfy_test_pack.lora_files import factors, write_lora
from fakes.gemini_fixtures import photo_color, write_photo
from harness import photos

pytestmark = pytest.mark.browser

# Builds nodes at top level: spec = {name: [type, [x, y], {widget: value}]}, links = [[from, slot, to, slot]].
BUILD = """([spec, links]) => {
    const g = app.rootGraph;
    g.clear();
    const made = {};
    for (const [name, [type, pos, widgets]] of Object.entries(spec)) {
        const n = LiteGraph.createNode(type);
        n.pos = pos;
        g.add(n);
        for (const [k, v] of Object.entries(widgets || {})) n.widgets.find(w => w.name === k).value = v;
        made[name] = n;
    }
    for (const [from, out, to, inp] of links) made[from].connect(out, made[to], inp);
    app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1;
    g.setDirtyCanvas(true, true);
    return Object.fromEntries(Object.entries(made).map(([k, n]) => [k, String(n.id)]));
}"""
# Converts one node into a subgraph (the canvas's "Convert to Subgraph"); marks the panel of the node inside.
INTO_SUBGRAPH = """([id, panel]) => {
    const g = app.rootGraph;
    const node = g.getNodeById(id);
    const type = node.type;
    const { subgraph, node: holder } = g.convertToSubgraph(new Set([node]));
    const inner = subgraph.nodes.find(n => n.type === type);
    const element = inner[panel].root ?? inner[panel];
    element.dataset.test = 'in-subgraph';
    window.__inSubgraph = { subgraph, holder, inner, panel: element };
    return { holder: String(holder.id), inner: String(inner.id), top: g.nodes.map(n => n.type) };
}"""
OPEN_SUBGRAPH = """() => { const { subgraph, holder } = window.__inSubgraph; app.canvas.openSubgraph(subgraph, holder);
                         app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; app.canvas.setDirty(true, true); }"""
PANEL = '[data-test="in-subgraph"]'
# The panel element itself: while the canvas shows the root graph, a subgraph's widgets may be out of the document.
EL = "window.__inSubgraph.panel"


def into_subgraph(p, node_id: str, node_type: str, panel: str) -> dict:
    moved = p.evaluate(INTO_SUBGRAPH, [node_id, panel])
    assert node_type not in moved["top"], "the node moved into the subgraph"
    return moved


def open_subgraph_and_see(p) -> object:
    """Opens the subgraph on the canvas, as a double click on its node does, and returns the visible panel."""
    p.evaluate(OPEN_SUBGRAPH)
    panel = p.locator(PANEL)
    panel.wait_for(state="visible", timeout=30_000)
    return panel


def queue(p) -> None:
    p.evaluate("() => { app.queuePrompt(0, 1); }")


def test_caption_review_in_a_subgraph_shows_the_new_captions(no_templates_dialog, page, comfy, gemini):
    name, trigger = f"sub-{uuid.uuid4().hex[:6]}", f"sub{uuid.uuid4().hex[:6]}"
    source = comfy.base_dir / "input" / name
    source.mkdir(parents=True)
    for i in range(3):
        write_photo(source / f"{i:03d}.jpg", photo_color(i), size=(200, 200), variant=i)
    p = page.page
    ids = p.evaluate(BUILD, [{
        "loader": ["LikenessDatasetLoader", [20, 100], {"folder": name, "trigger_word": trigger, "crop": "center",
                                                        "size": 256, "output_folder": f"likeness/datasets/{name}"}],
        "captioner": ["LikenessGeminiCaptioner", [420, 100], {}]}, [["loader", 2, "captioner", 0]]])
    into_subgraph(p, ids["captioner"], "LikenessGeminiCaptioner", "likenessReview")
    queue(p)
    p.wait_for_function(f"() => {EL}.querySelectorAll('textarea').length === 3", timeout=120_000)
    panel = open_subgraph_and_see(p)
    captions = [t.input_value() for t in panel.locator("textarea").all()]
    assert len(captions) == 3 and all(c.startswith(f"{trigger}, ") for c in captions)
    assert len(gemini.generate_calls()) == 3
    assert page.our_errors() == []


def test_stack_bar_in_a_subgraph_shows_the_servers_coverage(no_templates_dialog, page, comfy):
    tag = uuid.uuid4().hex[:6]
    names = [f"sub_me_{tag}.safetensors", f"sub_style_{tag}.safetensors"]
    folder = comfy.base_dir / "models" / "loras"
    write_lora(folder / names[0], "diffusers", factors(seed=1))
    write_lora(folder / names[1], "kohya", factors(seed=2, modules=("single_blocks.0.linear2",), alpha=2.0))
    rows = json.dumps([{"lora": names[0], "strength": 0.9, "on": True}, {"lora": names[1], "strength": 0.2, "on": True}])
    p = page.page
    ids = p.evaluate(BUILD, [{
        "model": ["TinyFluxModel", [20, 60], {}],
        "stack": ["LikenessLoraStack", [300, 60], {"rows": rows}],
        "show": ["TinyShow", [900, 60], {}]}, [["model", 0, "stack", 0], ["stack", 2, "show", 0]]])
    p.evaluate("(id) => app.rootGraph.getNodeById(id).likenessStack.readRows()", ids["stack"])
    into_subgraph(p, ids["stack"], "LikenessLoraStack", "likenessStack")
    queue(p)
    # before the run the rows say "N keys"; the node's own report after it says "N of N keys apply"
    p.wait_for_function(f"""() => {{
        const infos = [...{EL}.querySelectorAll('.row .info')].map(i => i.textContent);
        return infos.length === 2 && infos.every(t => t.includes('keys apply'));
    }}""", timeout=120_000)
    panel = open_subgraph_and_see(p)
    infos = [i.inner_text() for i in panel.locator(".row .info").all()]
    assert "2 of 2 keys apply" in infos[0] and "1 of 1 keys apply" in infos[1]
    assert panel.locator(".row .name").first.inner_text().startswith(names[0])
    # the raw rows JSON is the editor's to write: hidden in the classic canvas and in Nodes 2.0
    shown_json = p.evaluate("""() => {
        const raw = window.__inSubgraph.inner.widgets.find(w => w.name === 'rows').value;
        return [...document.querySelectorAll('textarea, input')].filter(e => e.value === raw && e.offsetParent !== null)
            .length; }""")
    assert shown_json == 0
    assert page.our_errors() == []


def test_training_status_in_a_subgraph_follows_the_run_and_comes_back_after_a_reload(no_templates_dialog, page, comfy,
                                                                                      replicate_fake):
    trigger, folder = f"tok{uuid.uuid4().hex[:6]}", f"substatus-{uuid.uuid4().hex[:6]}"
    photos.photo_set(comfy.base_dir / "input" / folder, 4, width=320, height=240,
                     captions=trigger + ", a man in a garden, photo {i}")
    p = page.page
    ids = p.evaluate(BUILD, [{
        "loader": ["LikenessDatasetLoader", [20, 150], {"folder": folder, "trigger_word": trigger, "crop": "center",
                                                        "size": 256}],
        "trainer": ["LikenessReplicateTrainer", [400, 150],
                    {"destination": f"likeness-tester/sub-{uuid.uuid4().hex[:6]}"}]},
        [["loader", 2, "trainer", 0]]])
    moved = into_subgraph(p, ids["trainer"], "LikenessReplicateTrainer", "likenessTraining")
    queue(p)
    p.wait_for_function(f"() => {EL}.dataset.phase === 'succeeded'", timeout=120_000)
    panel = open_subgraph_and_see(p)
    assert panel.locator(".steps").inner_text() == "step 160/160 · 100%"
    assert "real cost $" in panel.locator(".cost").inner_text()
    (training_id,) = replicate_fake.training_ids()
    assert training_id in panel.locator("a.replicate").inner_text()
    # the server keeps the status under the node's execution id; a reloaded page finds the node from it
    execution_id = f"{moved['holder']}:{moved['inner']}"
    statuses = p.evaluate("async () => (await (await fetch('/likeness/training/status')).json()).statuses")
    assert statuses[execution_id]["phase"] == "succeeded"

    page.reload(marker=folder)
    p.evaluate("""(holderId) => {
        const holder = app.rootGraph.getNodeById(holderId);
        const inner = holder.subgraph.nodes.find(n => n.type === 'LikenessReplicateTrainer');
        const panel = inner.likenessTraining.root;
        panel.dataset.test = 'in-subgraph';
        window.__inSubgraph = { subgraph: holder.subgraph, holder, inner, panel };
    }""", moved["holder"])
    restored = open_subgraph_and_see(p)
    p.wait_for_function(f"() => {EL}.dataset.phase === 'succeeded'", timeout=30_000)
    assert restored.locator(".steps").inner_text() == "step 160/160 · 100%"
    assert replicate_fake.count("POST", r"/trainings$") == 1
    assert page.our_errors() == []


def test_journal_panel_in_a_subgraph_lists_the_new_image(no_templates_dialog, page, comfy):
    seed = 1000 + uuid.uuid4().int % 100_000
    prompt = f"a subgraph portrait {uuid.uuid4().hex[:6]}"
    p = page.page
    ids = p.evaluate(BUILD, [{
        "model": ["TinyFluxModel", [20, 40], {}],
        "clip": ["TinyFluxClip", [20, 200], {}],
        "vae": ["VAELoader", [20, 320], {"vae_name": "taef1"}],
        "sampler": ["LikenessFluxSampler", [350, 40], {"prompt": prompt, "seed": seed, "steps": 2, "width": 64,
                                                       "height": 64}],
        "preview": ["PreviewImage", [900, 40], {}]},
        [["model", 0, "sampler", 0], ["clip", 0, "sampler", 1], ["vae", 0, "sampler", 2], ["sampler", 0, "preview", 0]]])
    p.evaluate("""(id) => { const c = app.rootGraph.getNodeById(id).widgets.find(w => w.name === 'control_after_generate');
                            if (c) c.value = 'fixed'; }""", ids["sampler"])
    into_subgraph(p, ids["sampler"], "LikenessFluxSampler", "likenessJournal")
    queue(p)
    p.wait_for_function(f"""(seed) => [...{EL}.querySelectorAll('.entry')]
        .some(e => e.textContent.includes('seed ' + seed))""", arg=seed, timeout=180_000)
    panel = open_subgraph_and_see(p)
    newest = panel.locator(".entry").first.inner_text()
    assert f"seed {seed}" in newest and prompt in newest
    assert page.our_errors() == []

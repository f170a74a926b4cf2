"""The seed journal panel on the samplers, in the real frontend: each entry's likeness score (or why it has none),
the most alike first on request, and favourites filtered by score."""
from __future__ import annotations

import os
import uuid

import pytest

from conftest import ARTIFACTS
from likeness.generation.seed_journal import JournalEntry, SeedJournal

pytestmark = pytest.mark.browser
READY = "() => window.app && window.app.graph && window.__likeness && window.__likeness.loaded === true"


def rows(p) -> list[dict]:
    return p.evaluate("""() => [...document.querySelectorAll('.likeness-journal .entry')].map(r => ({
        id: r.dataset.id, score: r.dataset.score, text: r.textContent}))""")


def wait_rows(p, condition: str) -> list[dict]:
    p.wait_for_function(f"""() => {{
        const ids = [...document.querySelectorAll('.likeness-journal .entry')].map(r => r.dataset.id);
        return {condition};
    }}""", timeout=60_000)
    return rows(p)


def test_the_panel_shows_scores_sorts_by_likeness_and_filters_favourites_by_score(no_templates_dialog, page,
                                                                                  comfy):
    journal = SeedJournal(comfy.pack_dir)
    tag = uuid.uuid4().hex[:8]
    made = {}
    for name, score in (("low", 41.0), ("faceless", None), ("best", 97.5), ("next", 96.0)):
        likeness = {"score": score, "backend": "dlib", "reason": "" if score is not None else "no face",
                    "against": "your 3 photo(s)"}
        made[name] = journal.record(JournalEntry(prompt=f"pelarbues, {tag} {name}", seed=3, steps=35,
                                                 guidance=2.75, width=64, height=64, source="replicate",
                                                 likeness=likeness))
    journal.set_favourite(made["low"].id)
    journal.set_favourite(made["best"].id)
    ids = {name: e.id for name, e in made.items()}

    p = page.page
    p.wait_for_function(READY, timeout=120_000)
    p.evaluate("""() => {
        app.graph.clear();
        const node = LiteGraph.createNode('LikenessReplicateFluxSampler');
        node.pos = [20, 20];
        app.graph.add(node);
        app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1;
        app.graph.setDirtyCanvas(true, true);
    }""")
    newest = wait_rows(p, f"ids[0] === '{ids['next']}'")
    assert [r["id"] for r in newest[:4]] == [ids["next"], ids["best"], ids["faceless"], ids["low"]]
    by_id = {r["id"]: r for r in newest}
    assert by_id[ids["best"]]["text"].startswith("likeness 98 · dlib · ★ ")
    assert by_id[ids["faceless"]]["text"].startswith("no face · dlib · ") and by_id[ids["faceless"]]["score"] == ""
    if os.environ.get("LIKENESS_SCREENSHOTS"):
        page.screenshot(ARTIFACTS / "journal-panel-newest.png")

    p.select_option(".likeness-journal .sort", "likeness")
    alike = wait_rows(p, f"ids.indexOf('{ids['best']}') >= 0 && ids.indexOf('{ids['best']}') < "
                         f"ids.indexOf('{ids['next']}')")
    ours = [r["id"] for r in alike if r["id"] in ids.values()]   # the journal also holds other tests' entries
    assert ours[:3] == [ids["best"], ids["next"], ids["low"]]
    assert [float(r["score"]) for r in alike if r["score"]] == sorted((float(r["score"]) for r in alike if r["score"]),
                                                                      reverse=True)

    p.check(".likeness-journal .favourites")
    p.select_option(".likeness-journal .min-score", "50")
    favourites = wait_rows(p, f"ids.includes('{ids['best']}') && !ids.includes('{ids['low']}') && "
                              f"!ids.includes('{ids['next']}')")        # a favourite under 50, a 96 not one
    assert all(float(r["score"]) >= 50 and "★" in r["text"] for r in favourites)
    p.select_option(".likeness-journal .min-score", "")
    with_low = wait_rows(p, f"ids.includes('{ids['low']}')")
    assert ids["next"] not in [r["id"] for r in with_low], "favourites only"
    assert page.our_errors() == []

"""web/js/strength_balance.js (the stack widget's live maths) agrees with likeness/strength_balance.py.

Node.js runs the very file the browser loads (copied to an .mjs so Node reads it as a module) on every case.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from likeness.loras.strength_balance import StackRow, balance_strengths, describe_total

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "web" / "js" / "strength_balance.js"
ROWS = {
    "seed": [(0.9, True), (0.2, True)],
    "kept_and_free": [(0.9, True), (0.2, True), (1.0, True)],
    "kept_at_bounds": [(0.9, True), (0.15, True), (-0.25, True), (0.6, True)],
    "below_and_above": [(0.9, True), (0.05, True), (1.0, True), (-0.6, True)],
    "three": [(0.9, True), (0.2, True), (0.35, True)],
    "four_at_floor": [(0.9, True), (0.1, True), (0.1, True), (0.1, True)],
    "anchor_over_target": [(1.4, True), (0.2, True)],
    "one_off": [(0.9, True), (0.5, False), (0.3, True)],
    "anchor_off": [(0.9, False), (0.3, True), (0.1, True)],
    "negative": [(0.8, True), (-0.3, True), (0.2, True)],
    "zero_strength": [(0.9, True), (0.0, True), (0.4, True)],
    "all_off": [(0.9, False), (0.2, False)],
    "alone": [(0.7, True)],
    "empty": [],
}
CASES = [(name, mode, anchor, target, clamp)
         for name in ROWS
         for mode in ("off", "anchor", "proportional", "effect", "measured")
         for anchor, target, clamp in ((0, 1.2, (0.15, 0.25)), (1, 1.0, (0.3, 0.05)), (None, 1.5, (0.1, 0.5)))]


@pytest.fixture(scope="module")
def js_results(tmp_path_factory) -> dict[int, dict]:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "Node.js is needed to run the canvas maths (apt-get install nodejs)"
    folder = tmp_path_factory.mktemp("js")
    shutil.copy(JS, folder / "strength_balance.mjs")
    cases = [{"rows": [{"strength": s, "on": on} for s, on in ROWS[name]], "mode": mode, "anchor": anchor,
              "target": target, "clamp": list(clamp)} for name, mode, anchor, target, clamp in CASES]
    (folder / "cases.json").write_text(json.dumps(cases))
    (folder / "run.mjs").write_text(
        "import { readFileSync } from 'node:fs';\n"
        "import { balanceStrengths, describeTotal } from './strength_balance.mjs';\n"
        "const cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url)));\n"
        "console.log(JSON.stringify(cases.map(c => { const r = balanceStrengths(c.rows, c.mode, "
        "{ targetTotal: c.target, clamp: c.clamp, anchor: c.anchor }); "
        "return { ...r, described: describeTotal(r.total, c.target) }; })));\n")
    out = subprocess.run([node, str(folder / "run.mjs")], capture_output=True, text=True, timeout=60, check=True)
    return dict(enumerate(json.loads(out.stdout)))


@pytest.mark.parametrize("index", range(len(CASES)), ids=["-".join(map(str, c[:3])) for c in CASES])
def test_js_balance_matches_python(js_results, index):
    name, mode, anchor, target, clamp = CASES[index]
    rows = [StackRow(f"l{i}.safetensors", s, on) for i, (s, on) in enumerate(ROWS[name])]
    # effect without the LoRAs' factors is the anchor rule: what the page previews before the server answers
    want = balance_strengths(rows, mode, target_total=target, clamp=clamp, anchor=anchor)
    got = js_results[index]
    assert len(got["strengths"]) == len(want.strengths)
    for a, b in zip(got["strengths"], want.strengths):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (got, want)
    assert math.isclose(got["total"], want.total, rel_tol=1e-12, abs_tol=1e-12)
    assert got["anchor"] == want.anchor
    assert len(got["notes"]) == len([n for n in want.notes if not n.startswith("effect mode needs")])
    assert got["described"] == describe_total(want.total, target)     # the total's distance, in the same words

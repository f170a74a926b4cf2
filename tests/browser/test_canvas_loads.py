"""The real frontend in headless Chromium: the pack's extension runs without console errors, in each mode.

(Every shared workflow is loaded and validated in test_workflows_load.py.)"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_extension_runs_without_console_errors(page):
    assert page.page.evaluate("() => window.__likeness.loaded") is True
    assert page.our_errors() == []


def test_the_pack_widgets_draw_in_the_mode_under_test(page, frontend_mode):
    """Nodes 2.0 draws each node as a DOM (Vue) node, with the pack's widget inside it; the classic canvas draws
    nodes on the canvas and lays the widget's element over it."""
    p = page.page
    p.evaluate("""() => { app.rootGraph.clear(); const n = LiteGraph.createNode('LikenessLoraStack');
                          n.pos = [100, 100]; app.rootGraph.add(n); app.rootGraph.setDirtyCanvas(true, true); }""")
    p.locator(".likeness-stack").wait_for(state="visible", timeout=30_000)
    vue_nodes = p.evaluate("() => document.querySelectorAll('.lg-node').length")
    inside = p.evaluate("() => document.querySelectorAll('.lg-node .likeness-stack').length")
    if frontend_mode == "nodes2":
        assert (vue_nodes, inside) == (1, 1)
    else:
        assert (vue_nodes, inside) == (0, 0)
    assert page.our_errors() == []

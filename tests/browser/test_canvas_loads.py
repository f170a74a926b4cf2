"""The real frontend in headless Chromium: the pack's extension runs and the shared workflows load clean."""
from __future__ import annotations

import json

import pytest

from harness.comfy_server import REPO

pytestmark = pytest.mark.browser
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


def test_extension_runs_without_console_errors(page):
    assert page.page.evaluate("() => window.__likeness.loaded") is True
    assert page.our_errors() == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shared_workflow_loads_without_missing_nodes(page, path):
    result = page.load_workflow(json.loads(path.read_text(encoding="utf-8")))
    assert result["types"], "the workflow loaded no node"
    assert result["missing"] == []
    assert page.our_errors() == []

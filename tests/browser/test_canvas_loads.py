"""The real frontend in headless Chromium: the pack's extension runs without console errors.

(Every shared workflow is loaded and validated in test_workflows_load.py.)"""
from __future__ import annotations

import pytest


pytestmark = pytest.mark.browser


def test_extension_runs_without_console_errors(page):
    assert page.page.evaluate("() => window.__likeness.loaded") is True
    assert page.our_errors() == []

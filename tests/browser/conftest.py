"""Browser-test fixtures: every test in each frontend mode the host has; a canvas nothing covers."""
from __future__ import annotations

import os
from importlib import metadata

import pytest

from harness.client import ComfyClient

# Nodes 2.0 (Vue nodes) is on by default for Desktop and Cloud installs from frontend 1.41: test both modes there.
NODES2_FROM = (1, 41)


def frontend_modes() -> list[str]:
    """The modes to test: LIKENESS_FRONTEND_MODES=classic,nodes2 or, by default, what the host's frontend has."""
    chosen = os.environ.get("LIKENESS_FRONTEND_MODES", "").strip()
    if chosen:
        return [m.strip() for m in chosen.split(",") if m.strip()]
    version = metadata.version("comfyui-frontend-package")      # ComfyUI's python runs the tests
    numbers = tuple(int(n) for n in version.split(".")[:2])
    return ["classic", "nodes2"] if numbers >= NODES2_FROM else ["classic"]


def pytest_generate_tests(metafunc):
    if "page" in metafunc.fixturenames:
        metafunc.parametrize("frontend_mode", frontend_modes())


@pytest.fixture
def no_templates_dialog(comfy):
    """The first page a new user opens shows the templates browser over the canvas, which swallows clicks;
    marking the tutorial done (as that first page itself does) keeps it closed. List it before `page`."""
    client = ComfyClient(comfy.url)
    status, _ = client.request("POST", "/settings/Comfy.TutorialCompleted", True)
    client.close()
    assert status == 200

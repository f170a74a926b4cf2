"""Browser-test fixtures: a canvas nothing covers."""
from __future__ import annotations

import pytest

from harness.client import ComfyClient


@pytest.fixture
def no_templates_dialog(comfy):
    """The first page a new user opens shows the templates browser over the canvas, which swallows clicks;
    marking the tutorial done (as that first page itself does) keeps it closed. List it before `page`."""
    client = ComfyClient(comfy.url)
    status, _ = client.request("POST", "/settings/Comfy.TutorialCompleted", True)
    client.close()
    assert status == 200

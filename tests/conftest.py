"""Fixtures shared by every test: the ComfyUI server, its client, the browser, the fake clouds."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.client import ComfyClient
from harness.comfy_server import REPO, ComfyServer

ARTIFACTS = REPO / "test-artifacts"
# Session fixtures in tests/fakes/ that start a fake cloud service; each yields an object with `.env`,
# the SDK environment variables that point the real SDK at it. A name whose fixture does not exist is skipped.
CLOUD_FAKES = ["fake_gemini", "fake_replicate"]
pytest_plugins = [f"fakes.{p.stem}" for p in sorted((Path(__file__).parent / "fakes").glob("*_fixtures.py"))]

# The canary: a token-shaped value that must never show up anywhere the user or the log can see.
# (Fake keys in the source are split in two literals so that secret scanners do not take them for real ones.)
CANARY_TOKEN = "r8_" "LIKENESSCANARYtoken0000000000000000"
CANARY_KEY = "AIza" "LIKENESS-CANARY-key-000000000000000"
# The third-party tokens the pack hands to Replicate's models as secret inputs (gated LoRAs, the trainer's HF/W&B).
CANARY_HF = "hf_" "LIKENESSCANARYhf0000000000000000000"
CANARY_CIVITAI = "civitai" "LIKENESSCANARYciv00000000000000"
CANARY_WANDB = "wandb" "LIKENESSCANARYwandb000000000000000000"


@pytest.fixture(scope="session")
def cloud_env(request) -> dict[str, str]:
    env = {"REPLICATE_API_TOKEN": CANARY_TOKEN, "GEMINI_API_KEY": CANARY_KEY,
           "GOOGLE_API_KEY": "", "GOOGLE_GENAI_USE_VERTEXAI": "",
           "HF_TOKEN": CANARY_HF, "CIVITAI_API_TOKEN": CANARY_CIVITAI, "WANDB_API_KEY": CANARY_WANDB}
    for name in CLOUD_FAKES:
        try:
            env.update(request.getfixturevalue(name).env)
        except pytest.FixtureLookupError:
            continue
    return env


def _keep_log_on_failure(request, server: ComfyServer, name: str) -> None:
    if request.session.testsfailed:
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(server.log_path, ARTIFACTS / f"{name}-server.log")


@pytest.fixture(scope="session")
def comfy(request, tmp_path_factory, cloud_env) -> ComfyServer:
    """The session's ComfyUI server: real main.py, temp base directory, pack linked in."""
    server = ComfyServer(tmp_path_factory.mktemp("comfy-base"), env=cloud_env).start()
    yield server
    server.stop()
    _keep_log_on_failure(request, server, "session")


@pytest.fixture
def fresh_comfy(request, tmp_path, cloud_env):
    """A server of the test's own, for tests that restart or kill it; call with extra ComfyUI flags and extra
    env to start."""
    servers: list[ComfyServer] = []

    def start(*args: str, **env: str) -> ComfyServer:
        server = ComfyServer(tmp_path / "comfy-base", env={**cloud_env, **env}, args=args).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        _keep_log_on_failure(request, server, request.node.name)


@pytest.fixture
def client(comfy) -> ComfyClient:
    c = ComfyClient(comfy.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def browser():
    # Per module: Playwright's sync API runs an event loop in this thread while it is open, which the
    # tests that follow (synchronous library entry points) must not inherit.
    from harness.browser import Browser

    b = Browser()
    yield b
    b.close()


@pytest.fixture
def frontend_mode() -> str:
    """How the page draws nodes: "classic" (the LiteGraph canvas) or "nodes2" (Vue nodes, Nodes 2.0).
    tests/browser parametrizes it with every mode the host's frontend has (its conftest)."""
    return "classic"


@pytest.fixture
def page(request, browser, comfy, frontend_mode):
    """A fresh page on the session server's canvas, in `frontend_mode`; a screenshot is kept when the test fails."""
    client = ComfyClient(comfy.url)
    status, _ = client.request("POST", "/settings/Comfy.VueNodes.Enabled", frontend_mode == "nodes2")
    client.close()
    assert status == 200
    p = browser.open(comfy.url)
    assert p.frontend_mode() == frontend_mode, "the frontend did not take the Comfy.VueNodes.Enabled setting"
    yield p
    if request.session.testsfailed or os.environ.get("LIKENESS_SCREENSHOTS"):
        p.screenshot(ARTIFACTS / f"{request.node.name}.png")
    p.page.close()


def pytest_sessionfinish(session, exitstatus):
    """A skipped test proves nothing: the suite fails when any test was skipped (unless asked not to)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0 and not os.environ.get("LIKENESS_ALLOW_SKIPS"):
        reporter.write_line(f"{len(skipped)} test(s) skipped: a skip is not a pass (LIKENESS_ALLOW_SKIPS=1 "
                            "to allow while developing)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

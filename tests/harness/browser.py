"""Debian's Chromium driven by Playwright against the real ComfyUI frontend; nothing leaves localhost."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Console errors the stock frontend prints on a fresh user dir; anything else is ours to explain.
BENIGN_CONSOLE = ("user.css", "comfy.templates.json", "Failed to load resource", "net::ERR_FAILED",
                  "api.comfy.org", "Cannot read properties of undefined (reading 'id')")


@dataclass
class BrowserPage:
    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def our_errors(self) -> list[str]:
        """Page errors and console errors not in the frontend's own benign list."""
        return self.page_errors + [e for e in self.console_errors if not any(b in e for b in BENIGN_CONSOLE)]

    def load_workflow(self, workflow: dict) -> dict:
        """Loads a UI-format workflow into the canvas; returns its node types, missing ones, and dialogs."""
        return self.page.evaluate(
            """async (wf) => {
                await window.app.loadGraphData(wf);
                const registered = window.LiteGraph.registered_node_types;
                const types = window.app.graph._nodes.map(n => n.type);
                const missing = [...new Set(types.filter(t => !(t in registered)))];
                const dialogs = [...document.querySelectorAll('.p-dialog')].map(d => d.innerText);
                return {types, missing, dialogs};
            }""", json.loads(json.dumps(workflow)))

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


class Browser:
    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._ctx = self._pw.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="likeness-chromium-"), executable_path=CHROMIUM, headless=True,
            args=ARGS, viewport={"width": 1400, "height": 900})
        self._ctx.route(lambda url: urlparse(url).hostname not in ("127.0.0.1", "localhost"),
                        lambda route: route.abort())

    def open(self, url: str, ready_timeout_ms: int = 120_000) -> BrowserPage:
        page = self._ctx.new_page()
        result = BrowserPage(page)
        page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
        page.on("pageerror", lambda e: result.page_errors.append(str(e)))
        page.goto(url + "/", wait_until="domcontentloaded")
        page.wait_for_function("() => window.app && window.app.graph && document.querySelector('canvas')",
                               timeout=ready_timeout_ms)
        page.wait_for_function("() => window.__likeness && window.__likeness.loaded === true",
                               timeout=ready_timeout_ms)
        return result

    def close(self) -> None:
        self._ctx.close()
        self._pw.stop()

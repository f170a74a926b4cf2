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
# ("ComfyApp graph accessed before initialization": frontend 1.49 reading its own app.rootGraph while it boots.)
BENIGN_CONSOLE = ("user.css", "comfy.templates.json", "Failed to load resource", "net::ERR_FAILED",
                  "api.comfy.org", "Cannot read properties of undefined (reading 'id')",
                  "ComfyApp graph accessed before initialization")
# The page is ready when the app has its graph and canvas, the pack's extension ran, and the frontend's start-up
# has ended: frontend 1.49 restores the last workflow tab from browser storage after the extensions' setup
# (over anything loaded before), then removes its #splash-loader (1.32.9 has none and restores before setup).
READY = """() => window.app && ('isGraphReady' in app ? app.isGraphReady : !!app.graph)
    && document.querySelector('canvas') && window.__likeness && window.__likeness.loaded === true
    && !document.getElementById('splash-loader')"""
FRONTEND_MODES = ("classic", "nodes2")


@dataclass
class BrowserPage:
    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def our_errors(self) -> list[str]:
        """Page errors and console errors not in the frontend's own benign list."""
        return self.page_errors + [e for e in self.console_errors if not any(b in e for b in BENIGN_CONSOLE)]

    def wait_ready(self, timeout_ms: int = 120_000) -> None:
        """After a load or a reload: the app, its graph, the pack's extension, and the end of the start-up."""
        self.page.wait_for_function(READY, timeout=timeout_ms)

    def reload(self, marker: str, timeout_ms: int = 120_000) -> None:
        """Reloads the page as a user does, once the frontend has stored the canvas's workflow in browser storage
        (`marker`: a text of this graph, e.g. a widget value): a reloaded page restores the workflow from there.
        A graph built through the API is stored when the frontend's change tracker next looks, which a user's
        click or key would make it do; here it is asked to look."""
        self.page.evaluate("""() => {
            const tracker = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
            (tracker?.captureCanvasState ?? tracker?.checkState)?.call(tracker);
        }""")
        self.page.wait_for_function("""(marker) => [localStorage, sessionStorage].some(
            (store) => Object.keys(store).some((key) => (store.getItem(key) || '').includes(marker)))""",
                                    arg=marker, timeout=30_000)
        self.page.reload(wait_until="domcontentloaded")
        self.wait_ready(timeout_ms)

    def frontend_mode(self) -> str:
        """'nodes2' when the frontend draws Vue nodes (Nodes 2.0), else 'classic'."""
        on = self.page.evaluate("() => app.extensionManager?.setting?.get?.('Comfy.VueNodes.Enabled') ?? false")
        return "nodes2" if on else "classic"

    def load_workflow(self, workflow: dict) -> dict:
        """Loads a UI-format workflow into the canvas; returns its node types, missing ones, and dialogs."""
        return self.page.evaluate(
            """async (wf) => {
                await window.app.loadGraphData(wf);
                const registered = window.LiteGraph.registered_node_types;
                const types = window.app.rootGraph.nodes.map(n => n.type);
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
        result.wait_ready(ready_timeout_ms)
        return result

    def close(self) -> None:
        self._ctx.close()
        self._pw.stop()

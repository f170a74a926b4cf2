"""Debian's Chromium as a phone (Playwright's device emulation) for the playground page; nothing leaves localhost."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from harness.browser import ARGS, CHROMIUM, BrowserPage

AXE = Path(__file__).resolve().parents[1] / "browser" / "vendor" / "axe-core-4.14.1" / "axe.min.js"
DEVICE = "iPhone 13"                 # 390 × 664 CSS pixels, touch, mobile viewport


class PhoneBrowser:
    def __init__(self, device: str = DEVICE):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        descriptor = {k: v for k, v in self._pw.devices[device].items() if k != "default_browser_type"}
        self.context = self._browser.new_context(**descriptor, accept_downloads=True)
        self.context.route(lambda url: urlparse(url).hostname not in ("127.0.0.1", "localhost"),
                           lambda route: route.abort())

    def open(self, url: str, ready: str, timeout_ms: int = 60_000) -> BrowserPage:
        """A new tab on `url`, once the page's `ready` expression is true."""
        page = self.context.new_page()
        result = BrowserPage(page)
        page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
        page.on("pageerror", lambda e: result.page_errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(ready, timeout=timeout_ms)
        return result

    def close(self) -> None:
        self.context.close()
        self._browser.close()
        self._pw.stop()


def serious_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now (axe is injected once)."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
    }""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the layout viewport (0: nothing scrolls sideways). Not
    `innerWidth`: a mobile browser widens the visual viewport to fit wide content, hiding the overflow."""
    return page.evaluate("""() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)
                                  - document.documentElement.clientWidth""")

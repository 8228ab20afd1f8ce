"""Browser end-to-end fixtures: the real system serving the built app, and Debian's chromium.

The session's ``system`` (tests/conftest.py) is reused; if its hub does not serve
``frontend/dist`` yet, the hub is restarted once with ``FRONTEND_DIR`` pointing there. The app is
built first when ``dist`` is missing or older than the sources (``npm ci`` when ``node_modules``
is missing).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="tests/e2e/requirements.txt is not installed")

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)

from tests.client import Api
from tests.e2e.browser import CHROMIUM, launch
from tests.procs import System

if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
DIST = FRONTEND / "dist"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def _newest_source() -> float:
    files = [*FRONTEND.joinpath("src").rglob("*"), *FRONTEND.joinpath("public").rglob("*")]
    files += [FRONTEND / n for n in ("index.html", "package-lock.json", "vite.config.ts")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def build_frontend() -> None:
    index = DIST / "index.html"
    if index.exists() and index.stat().st_mtime >= _newest_source():
        return
    if not (FRONTEND / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run(["npm", "run", "build"], cwd=FRONTEND, check=True)


@dataclass
class Hub:
    """What the app's hub offers; tests of endpoints still to come skip with the reason."""

    base_url: str
    features: dict[str, bool] = field(default_factory=dict)

    def missing_endpoints(self) -> list[str]:
        """Requests that fail only because the hub lacks the endpoint so far."""
        missing = []
        if not self.features.get("brokers"):
            missing.append("GET /api/brokers 404")
        if not self.features.get("public_pages"):  # landing with the rest of the new endpoints
            missing += [
                "/api/public/",
                "GET /api/me/performance 404",
                "/performance 404",
                "/subscribers 404",
            ]
        if not self.features.get("cookie_refresh"):
            missing += ["POST /api/auth/refresh 4", "POST /api/auth/logout 404"]
        return missing

    def require(self, *names: str) -> None:
        missing = [n for n in names if not self.features.get(n)]
        if missing:
            pytest.skip(f"the hub lacks: {', '.join(missing)}")


def probe(base_url: str) -> dict[str, bool]:
    with httpx.Client(base_url=base_url, timeout=5) as http:
        refresh = http.post("/api/auth/refresh")
        spa = http.get("/dashboard")
        return {
            "spa_fallback": spa.status_code == 200
            and "text/html" in spa.headers.get("content-type", ""),
            "cookie_refresh": refresh.status_code == 401,
            "logout": http.post("/api/auth/logout").status_code == 204,
            "public_pages": http.get("/api/public/channels").status_code == 200,
            "brokers": http.get("/api/brokers").status_code == 200,
        }


@pytest.fixture(scope="session")
def hub(system: System) -> Hub:
    build_frontend()
    if Path(system.env.get("FRONTEND_DIR", "")).resolve() != DIST.resolve():
        for proc in [p for p in system.procs if p.name == "hub"]:
            proc.stop()
            system.procs.remove(proc)
        system.env["FRONTEND_DIR"] = str(DIST)
        system.start_hub()
    return Hub(system.base_url, probe(system.base_url))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = launch(playwright)
    yield b
    b.close()


class Console:
    """What went wrong in a page: console errors, uncaught exceptions and failed requests.

    The browser logs every 4xx/5xx answer as a console error without its address; those are
    judged by the responses instead, where a test names the failures it provokes on purpose
    (``expect("POST /api/broker-accounts 422")``) and endpoints the hub lacks so far are allowed.
    """

    def __init__(self, allowed: list[str]) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.expected: list[str] = list(allowed)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            path = "/" + response.url.split("/", 3)[3]
            self.failed.append(f"{response.request.method} {path} {response.status}")

    def expect(self, fragment: str) -> None:
        self.expected.append(fragment)

    def unexpected(self) -> list[str]:
        failed = [f for f in self.failed if not any(x in f for x in self.expected)]
        return self.errors + failed


@dataclass
class Browsing:
    browser: Browser
    hub: Hub
    contexts: list[tuple[BrowserContext, Console]] = field(default_factory=list)

    def page(self, viewport: dict[str, int] = DESKTOP) -> tuple[Page, Console]:
        context = self.browser.new_context(viewport=viewport, base_url=self.hub.base_url)
        context.set_default_timeout(15_000)
        console = Console(self.hub.missing_endpoints())
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        page.on("response", console.on_response)
        self.contexts.append((context, console))
        return page, console


@pytest.fixture
def browsing(browser: Browser, hub: Hub) -> Iterator[Browsing]:
    """New browser contexts for a test (each its own cookies); no console errors at the end."""
    b = Browsing(browser, hub)
    yield b
    errors = [e for _, console in b.contexts for e in console.unexpected()]
    for context, _ in b.contexts:
        context.close()
    assert not errors, f"console errors: {errors}"


@pytest.fixture
def rest(system: System) -> Iterator[Api]:
    with httpx.Client(base_url=system.base_url, timeout=15) as http:
        yield Api(http)

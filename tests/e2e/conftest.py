"""Browser end-to-end fixtures: the real system serving the built app, and Debian's chromium.

The session's ``system`` (tests/conftest.py) serves ``frontend/dist``, built first when it is
missing or older than the sources (``npm ci`` when ``node_modules`` is missing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)

from infra.publish.build import ensure_built
from tests.client import Api
from tests.e2e.browser import CHROMIUM, launch
from tests.procs import System

assert Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM}: apt-get install chromium"

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
DIST = FRONTEND / "dist"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


@dataclass
class Hub:
    base_url: str


@pytest.fixture(scope="session")
def hub(system: System) -> Hub:
    """The session's hub, serving the app built from the current sources."""
    ensure_built(FRONTEND, DIST)
    return Hub(system.base_url)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API keeps an asyncio loop running on the main thread while it
    is open, which the async tests of later modules (pytest-asyncio) cannot run beside."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = launch(playwright)
    yield b
    b.close()


class Console:
    """What went wrong in a page: console errors, uncaught exceptions and failed requests.

    The browser logs every 4xx/5xx answer as a console error without its address; those are
    judged by the responses instead, where a test names the failures it provokes on purpose
    (``expect("POST /api/broker-accounts 422")``).
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.expected: list[str] = []

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
        console = Console()
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        page.on("response", console.on_response)
        self.contexts.append((context, console))
        return page, console


@contextmanager
def browsing_on(browser: Browser, hub: Hub) -> Iterator[Browsing]:
    """New browser contexts on ``hub`` (each its own cookies); no console errors at the end."""
    b = Browsing(browser, hub)
    yield b
    errors = [e for _, console in b.contexts for e in console.unexpected()]
    for context, _ in b.contexts:
        context.close()
    assert not errors, f"console errors: {errors}"


@pytest.fixture
def browsing(browser: Browser, hub: Hub) -> Iterator[Browsing]:
    """New browser contexts on the session's hub for a test."""
    with browsing_on(browser, hub) as b:
        yield b


@pytest.fixture
def rest(system: System) -> Iterator[Api]:
    with httpx.Client(base_url=system.base_url, timeout=15) as http:
        yield Api(http)

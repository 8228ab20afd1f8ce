"""The operators' console in a real browser against the real processes (issue 15, item 4): an
admin made by the operator's command watches the pools (a Deriv worker's sessions and rate budget
among them) and the reaper's recent actions, suspends a channel (its provider's next
signal is refused, in the provider's own browser) and a user (their open dashboard ends), restores
both, and finds every action in the audit log; nobody else gets in; axe finds nothing serious.

The admin must exist before the hub opens the embedded store, so this module runs a system of its
own (as tests/test_admin.py does, on the same database number, flushed at start: pytest runs the
two modules one after the other, never together).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis
from playwright.sync_api import Browser, Locator, Page, expect

from core import keys
from core.clock import now_ms
from infra.publish.build import ensure_built
from tests.client import Api
from tests.conftest import LOG_DIR
from tests.e2e.conftest import DESKTOP, DIST, FRONTEND, PHONE, Browsing, Hub, browsing_on
from tests.e2e.helpers import login, paper_subscribers, provider_with_channel
from tests.e2e.test_a11y_browser import serious
from tests.e2e.test_provider_browser import pad_ready
from tests.procs import System, redis_url, running_system
from tests.test_admin import ADMIN_DB, create_admin

pytestmark = pytest.mark.browser

ADMIN_EMAIL = "console@example.com"
ADMIN_PASSWORD = "a-long-console-password"
PAGES = {
    "Pools": "/admin",
    "Reaper": "/admin/reaper",
    "Failures": "/admin/failures",
    "Users": "/admin/users",
    "Channels": "/admin/channels",
    "Audit log": "/admin/audit",
}


@pytest.fixture(scope="module")
def ops_system() -> Iterator[System]:
    ensure_built(FRONTEND, DIST)
    with running_system(ADMIN_DB, LOG_DIR / "admin-browser") as system:
        made = create_admin(system.env, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert made.returncode == 0, made.stderr
        system.start_hub()
        system.start_pool("paper", workers=1)
        system.start_deriv_sim()
        system.start_pool("deriv", workers=1)
        # what the reaper records when a worker dies holding claims (tests/test_observability.py
        # makes it happen for real)
        action = {
            "kind": "recovered",
            "signal_id": "6b0b8a0d5e9f0394",
            "broker": "paper",
            "subscribers": 4,
            "worker": "dead0worker",
            "at_ms": now_ms() - 90_000,
        }
        with sync_redis.Redis.from_url(redis_url(ADMIN_DB)) as r:
            r.lpush(keys.REAPER_ACTIONS, json.dumps(action))
        yield system


@pytest.fixture
def ops(browser: Browser, ops_system: System) -> Iterator[Browsing]:
    with browsing_on(browser, Hub(ops_system.base_url)) as b:
        yield b


@pytest.fixture
def ops_rest(ops_system: System) -> Iterator[Api]:
    with httpx.Client(base_url=ops_system.base_url, timeout=15) as http:
        yield Api(http)


def admin_login(page: Page) -> None:
    login(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page).to_have_url(re.compile(r"/admin$"))
    expect(page.get_by_role("heading", name="Pools", level=1)).to_be_visible()


def section(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Operations").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


def shown(locator: Locator) -> Locator:
    """The visible one: a phone shows the status inside the name cell, a wide screen beside it."""
    return locator.filter(visible=True)


def audit_row(page: Page, action: str, target: str) -> Any:
    return page.get_by_role("row").filter(has_text=action).filter(has_text=target)


def test_pools_show_each_broker_live(ops: Browsing) -> None:
    page, console = ops.page()
    admin_login(page)
    paper = page.get_by_role("region", name=re.compile(r"^Paper"))
    expect(paper.get_by_text("1 worker live")).to_be_visible()
    expect(paper.get_by_role("table", name="Paper copies by status")).to_contain_text("Last hour")
    expect(paper.get_by_role("table", name=re.compile(r"Paper workers"))).to_contain_text("ago")
    expect(paper.get_by_text("Latency p99")).to_be_visible()
    deriv = page.get_by_role("region", name=re.compile(r"^Deriv"))
    workers = deriv.get_by_role("table", name=re.compile(r"Deriv workers"))
    expect(workers.get_by_role("columnheader", name="Sessions")).to_be_visible()
    expect(workers).to_contain_text("2 of 2 connected")
    expect(workers).to_contain_text(re.compile(r"\d+ of \d+ a minute left"))
    expect(page.get_by_text(re.compile(r"^Updated \d\d:\d\d:\d\d"))).to_be_visible()
    # the page refreshes itself: a later reading replaces the first
    updated = page.get_by_text(re.compile(r"^Updated "))
    first = updated.inner_text().split()[1]
    expect(updated).not_to_have_text(re.compile(rf"^Updated {first}"), timeout=12_000)
    assert not console.unexpected()


def test_the_reaper_s_recent_actions_are_listed_in_words(ops: Browsing) -> None:
    page, console = ops.page()
    admin_login(page)
    section(page, "Reaper")
    table = page.get_by_role("table", name="The reaper's recent actions, newest first")
    row = table.get_by_role("row").filter(has_text="Recovered")
    expect(row).to_contain_text("4 claims of a dead worker taken back")
    expect(row).to_contain_text("Paper")
    expect(shown(row.get_by_text(re.compile(r"^\d+ min ago$")))).to_be_visible()
    assert not console.unexpected()


def test_suspending_a_channel_refuses_its_signals_until_restored(
    ops: Browsing, ops_rest: Api
) -> None:
    name = f"Ops channel {uuid.uuid4().hex[:6]}"
    provider, channel = provider_with_channel(ops_rest, name)
    paper_subscribers(ops_rest, channel["id"], 1)
    desk, _ = ops.page()
    login(desk, provider.email)
    pad_ready(desk, name)

    page, _ = ops.page()
    admin_login(page)
    section(page, "Channels")
    page.get_by_label("Search channels").fill(name)
    row = page.get_by_role("row", name=f"Channel {name}")
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name=f"Public page of {name}")).to_have_attribute(
        "href", f"/c/{channel['id']}"
    )
    row.get_by_role("button", name=f"Suspend {name}").click()
    form = page.get_by_role("form", name=f"Suspend “{name}”")
    form.get_by_role("button", name="Suspend", exact=True).click()
    expect(form.get_by_text("Give a reason: it goes into the audit log.")).to_be_visible()
    form.get_by_label("Reason").fill("Reported as a scam.")
    form.get_by_role("button", name="Suspend", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=f"“{name}” is suspended")).to_be_visible()
    expect(shown(row.get_by_text("Suspended", exact=True))).to_be_visible()
    expect(shown(row.get_by_text(f"by {ADMIN_EMAIL}"))).to_be_visible()
    expect(shown(row.get_by_text("“Reported as a scam.”"))).to_be_visible()

    # The provider, in its own browser, is refused with the reason.
    desk.get_by_role("button", name="CALL", exact=True).click()
    expect(desk.get_by_role("heading", name="Not sent")).to_be_visible()
    expect(desk.get_by_role("alert")).to_contain_text("This channel is suspended by the operators")

    row.get_by_role("button", name="Restore").click()
    expect(shown(row.get_by_text(f"Restore “{name}”?"))).to_be_visible()
    row.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("status").filter(has_text=f"“{name}” is restored")).to_be_visible()
    expect(shown(row.get_by_text("Active", exact=True))).to_be_visible()

    desk.get_by_role("button", name="CALL", exact=True).click()
    expect(desk.get_by_role("heading", name="Sent: CALL EURUSD, 1 min")).to_be_visible()
    feed = desk.get_by_role("region", name="Live copies of the current signal")
    expect(feed.get_by_text("1 placed", exact=True)).to_be_visible()

    section(page, "Audit log")
    expect(audit_row(page, "Suspended channel", name)).to_contain_text("Reported as a scam.")
    expect(audit_row(page, "Suspended channel", name)).to_contain_text(ADMIN_EMAIL)
    expect(audit_row(page, "Restored channel", name)).to_be_visible()


def test_suspending_a_user_ends_their_open_dashboard(ops: Browsing, ops_rest: Api) -> None:
    name = f"Suspended desk {uuid.uuid4().hex[:6]}"
    provider, _ = provider_with_channel(ops_rest, name)
    desk, desk_console = ops.page()
    # what the suspended browser is refused, on purpose
    for refused in ("/api/auth/refresh 401", "/readiness 401", " 403"):
        desk_console.expect(refused)
    login(desk, provider.email)
    pad_ready(desk, name)

    page, _ = ops.page(PHONE)  # an operator on call, from a phone
    admin_login(page)
    section(page, "Users")
    page.get_by_label("Search users").fill(provider.email)
    row = page.get_by_role("row", name=f"User {provider.email}")
    expect(row).to_be_visible()
    expect(shown(row.get_by_text("Active", exact=True))).to_be_visible()
    row.get_by_role("button", name=f"Suspend {provider.email}").click()
    form = page.get_by_role("form", name=re.compile(rf"^Suspend {re.escape(provider.email)}"))
    form.get_by_label("Reason").fill("Chargebacks on every account.")
    form.get_by_role("button", name="Suspend", exact=True).click()
    expect(
        page.get_by_role("status").filter(has_text=f"{provider.email} is suspended")
    ).to_be_visible()
    expect(shown(row.get_by_text("Suspended", exact=True))).to_be_visible()

    # Their open dashboard ends at once, and they cannot come back in.
    expect(desk).to_have_url(re.compile(r"/login\?"), timeout=10_000)
    expect(
        desk.get_by_text(re.compile(r"Your session has ended|This account is suspended"))
    ).to_be_visible()
    desk.get_by_label("Email").fill(provider.email)
    desk.get_by_label("Password").fill(ops_rest.password)
    desk.get_by_role("button", name="Log in").click()
    expect(desk.get_by_role("alert")).to_contain_text("suspended by the operators")

    row.get_by_role("button", name="Restore").click()
    row.get_by_role("button", name="Restore").click()
    expect(
        page.get_by_role("status").filter(has_text=f"{provider.email} is restored")
    ).to_be_visible()
    login(desk, provider.email)
    expect(desk).to_have_url(re.compile(r"/dashboard"))

    section(page, "Audit log")
    expect(audit_row(page, "Suspended user", provider.email)).to_contain_text("Chargebacks")
    expect(audit_row(page, "Restored user", provider.email)).to_be_visible()


def test_nobody_else_gets_into_the_console(ops: Browsing, ops_rest: Api) -> None:
    provider = ops_rest.signup("provider")
    subscriber = ops_rest.signup("subscriber")
    for user, home in ((provider, "/dashboard"), (subscriber, "/me")):
        page, console = ops.page()
        login(page, user.email)
        main_nav = page.get_by_role("navigation", name="Main")
        expect(main_nav.get_by_role("link", name="Operations")).to_have_count(0)
        page.goto("/admin/users")  # typed into the address bar
        expect(page).to_have_url(re.compile(rf"{home}$"))
        page.wait_for_load_state("networkidle")
        assert not [f for f in console.failed if "/api/admin" in f or " 403" in f], console.failed


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_console_pages_pass_axe_and_fit(
    ops: Browsing, ops_rest: Api, viewport: dict[str, int]
) -> None:
    ops_rest.signup("provider")  # someone to suspend
    page, _ = ops.page(viewport)
    admin_login(page)
    report: dict[str, list[dict[str, Any]]] = {}
    for title, path in PAGES.items():
        page.goto(path)
        expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
        page.wait_for_load_state("networkidle")
        report[path] = serious(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (
            f"{path} is {overflow} px wider than the {viewport['width']} px screen"
        )
    # the suspend step, open
    page.goto("/admin/users")
    row = page.get_by_role("row", name=re.compile(r"^User "))
    row.get_by_role("button", name=re.compile(r"^Suspend ")).first.click()
    expect(page.get_by_label("Reason")).to_be_focused()
    report["/admin/users (suspending)"] = serious(page)
    assert not any(report.values()), report

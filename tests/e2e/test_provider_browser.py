"""The provider's dashboard in a real browser against the real processes (issue 11, item 9)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.client import Api, User
from tests.e2e.conftest import Browsing
from tests.e2e.helpers import login, paper_subscribers, provider_with_channel

pytestmark = pytest.mark.browser


def pad_ready(page: Page, channel_name: str) -> None:
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("region", name="New signal").get_by_role("status")).to_have_text("Live")
    page.get_by_label("Channel").select_option(label=channel_name)
    page.get_by_label("Asset").select_option("EURUSD")
    page.get_by_label("Expiry").select_option(label="1 min")


def feed(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("region", name="Live copies of the current signal")


def stored_counts(rest: Api, provider: User, channel_id: str, n: int) -> list[dict[str, int]]:
    """The per-status counts of the channel's last ``n`` signals, once the store has them."""
    deadline = time.monotonic() + 15
    while True:
        r = rest.call("GET", f"/api/signals?channel_id={channel_id}&limit={n}", provider)
        counts = [s["counts"] for s in r.json()["items"]]
        if (len(counts) == n and all(c["placed"] for c in counts)) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_send_by_mouse_and_by_shortcut_every_subscriber_placed(
    browsing: Browsing, rest: Api
) -> None:
    provider, channel = provider_with_channel(rest, "Pad channel")
    paper_subscribers(rest, channel["id"], 5)
    page, _ = browsing.page()
    login(page, provider.email)
    pad_ready(page, "Pad channel")

    call = page.get_by_role("button", name="CALL", exact=True)
    expect(call).to_have_attribute("aria-keyshortcuts", "C")
    call.click()
    expect(page.get_by_role("heading", name="Sent: CALL EURUSD, 1 min")).to_be_visible()
    expect(feed(page).get_by_text("5 placed", exact=True)).to_be_visible()
    expect(feed(page).get_by_text("of 5", exact=True)).to_be_visible()
    expect(feed(page).get_by_text("Every copy has answered.")).to_be_visible()
    expect(feed(page).get_by_role("row")).to_have_count(6)  # header + one per subscriber

    # A shortcut typed into a field sends nothing.
    page.get_by_label("Schedule for later").check()
    page.get_by_label("Send at").press("p")
    page.get_by_label("Schedule for later").uncheck()
    expect(page.get_by_role("heading", name="Sent: CALL EURUSD, 1 min")).to_be_visible()

    # Off the fields, P sends a PUT.
    page.get_by_role("heading", name="Signal pad").click()
    page.keyboard.press("p")
    expect(page.get_by_role("heading", name="Sent: PUT EURUSD, 1 min")).to_be_visible()
    expect(feed(page).get_by_text("5 placed", exact=True)).to_be_visible()

    counts = stored_counts(rest, provider, channel["id"], 2)
    assert [c["placed"] for c in counts] == [5, 5], counts

    # Recent signals list both; one click opens a signal's trades.
    recent = page.get_by_role("region", name="Recent signals")
    expect(recent.get_by_role("link", name=re.compile(r"^Trades"))).to_have_count(2)
    recent.get_by_role("link", name=re.compile(r"^Trades of CALL EURUSD")).click()
    expect(page).to_have_url(re.compile(r"/dashboard/signals/"))
    expect(page.get_by_text("5 placed", exact=True)).to_be_visible()


def test_schedule_then_cancel(browsing: Browsing, rest: Api) -> None:
    provider, channel = provider_with_channel(rest, "Schedule channel")
    paper_subscribers(rest, channel["id"], 2)
    page, _ = browsing.page()
    login(page, provider.email)
    pad_ready(page, "Schedule channel")

    page.get_by_label("Schedule for later").check()
    at = (datetime.now() + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Send at").fill(at)
    page.get_by_role("button", name="CALL", exact=True).click()
    expect(page.get_by_role("heading", name="Scheduled: CALL EURUSD, 1 min")).to_be_visible()
    page.get_by_role("button", name="Cancel signal").click()
    expect(page.get_by_role("heading", name="Cancelled: CALL EURUSD")).to_be_visible()
    expect(page.get_by_text(re.compile(r"The cancel stopped \d+ purchases?\."))).to_be_visible()

    r = rest.call("GET", f"/api/signals?channel_id={channel['id']}", provider)
    assert [s["status"] for s in r.json()["items"]] == ["cancelled"], r.text


def test_reload_keeps_the_session(browsing: Browsing, rest: Api) -> None:
    provider, _ = provider_with_channel(rest, "Reload channel")
    page, _ = browsing.page()
    login(page, provider.email)
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    page.reload()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("button", name="CALL", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_logout_then_refused(browsing: Browsing, rest: Api) -> None:
    provider, _ = provider_with_channel(rest, "Logout channel")
    page, console = browsing.page()
    login(page, provider.email)
    expect(page.get_by_role("button", name="CALL", exact=True)).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()

    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?redirect=(%2F|/)dashboard"))
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    console.expect("401")  # the refused refresh below
    refused = page.request.post("/api/auth/refresh")
    assert refused.status == 401, refused.text()


def test_pad_says_who_would_not_be_copied_now(browsing: Browsing, rest: Api) -> None:
    provider, channel = provider_with_channel(rest, "Readiness channel")
    pauser, *_ = paper_subscribers(rest, channel["id"], 3)
    (sub,) = rest.call("GET", "/api/subscriptions", pauser).json()["items"]
    r = rest.call("PATCH", f"/api/subscriptions/{sub['id']}", pauser, json={"paused": True})
    assert r.status_code == 200, r.text

    page, _ = browsing.page()
    login(page, provider.email)
    pad_ready(page, "Readiness channel")
    pad = page.get_by_role("region", name="New signal")
    warning = pad.get_by_text("1 of 3 subscribers would not be copied now", exact=True)
    expect(warning).to_be_visible()
    expect(pad.get_by_role("listitem").filter(has_text=re.compile(r"^1 paused$"))).to_be_visible()
    call = page.get_by_role("button", name="CALL", exact=True)
    expect(call).to_have_accessible_description(re.compile(r"1 of 3 subscribers would not be"))
    # the live region says it once
    live = pad.locator("[aria-live=polite]")
    expect(live).to_have_text(re.compile(r"^1 of 3 subscribers would not be copied now: 1 paused"))

    # Sending is never held up by it; the paused subscriber is skipped.
    call.click()
    expect(feed(page).get_by_text("2 placed", exact=True)).to_be_visible()
    expect(feed(page).get_by_text("1 skipped", exact=True)).to_be_visible()

    # Resumed: the pad sees it at its next reading and says so once.
    r = rest.call("PATCH", f"/api/subscriptions/{sub['id']}", pauser, json={"paused": False})
    assert r.status_code == 200, r.text
    expect(call).to_have_accessible_description(
        "All 3 subscribers can be copied now.", timeout=20_000
    )
    expect(live).to_have_text(re.compile(r"^All 3 subscribers can be copied now"))

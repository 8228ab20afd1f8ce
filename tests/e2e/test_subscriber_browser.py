"""Subscribers in a real browser against the real processes (issue 12, item 5): a newcomer copies
a provider from a phone, watches its own trade placed then settled, pauses, leaves; a refused
Deriv token saves nothing."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.client import Api, new_email
from tests.e2e.conftest import DESKTOP, PHONE, Browsing
from tests.e2e.helpers import PASSWORD, login, provider_with_channel

pytestmark = pytest.mark.browser


def send(desk: Page, channel_name: str, direction: str, expiry_label: str = "15 s") -> None:
    """The provider, in its own browser, sends a signal from the pad."""
    expect(desk.get_by_role("region", name="New signal").get_by_role("status")).to_have_text("Live")
    desk.get_by_label("Channel").select_option(label=channel_name)
    desk.get_by_label("Asset").select_option("EURUSD")
    desk.get_by_label("Expiry").select_option(label=expiry_label)
    desk.get_by_role("button", name=direction, exact=True).click()
    expect(
        desk.get_by_role("heading", name=re.compile(rf"^Sent: {direction} EURUSD"))
    ).to_be_visible()


def test_newcomer_copies_from_a_phone(browsing: Browsing, rest: Api) -> None:
    provider, channel = provider_with_channel(
        rest, "Phone copy channel", description="Majors only."
    )

    phone, _ = browsing.page(PHONE)
    started = time.monotonic()
    phone.goto(f"/c/{channel['id']}")
    expect(phone.get_by_role("heading", name="Phone copy channel")).to_be_visible()
    phone.get_by_role("button", name="Copy this provider").click()
    phone.get_by_label("Email").fill(new_email("newcomer"))
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Create account").click()
    phone.get_by_label("Starting balance (USD)").fill("1000")
    phone.get_by_role("button", name="Add paper account").click()
    phone.get_by_label("Stake", exact=True).fill("2")
    phone.get_by_role("button", name="Start copying").click()
    expect(phone).to_have_url(re.compile(r"/me\?subscribed="))
    subscription = phone.get_by_role("article", name="Subscription to Phone copy channel")
    expect(subscription).to_be_visible()
    expect(subscription.get_by_text("2.00 USD a trade")).to_be_visible()
    print(f"newcomer: channel page to subscribed in {time.monotonic() - started:.1f} s")
    expect(phone.get_by_role("status").filter(has_text="Live")).to_be_visible()

    desk, _ = browsing.page(DESKTOP)
    login(desk, provider.email)
    send(desk, "Phone copy channel", "CALL")

    trades = phone.get_by_role("list", name="My trades")
    first = trades.get_by_role("listitem").first
    expect(first.get_by_text("Placed", exact=True)).to_be_visible()
    expect(first.get_by_text(re.compile(r"^(Won|Lost|Refunded)$"))).to_be_visible(timeout=45_000)
    expect(first.get_by_text("stake 2.00")).to_be_visible()

    subscription.get_by_role("button", name=re.compile(r"^Pause")).click()
    expect(
        subscription.get_by_text("Paused by you: signals are skipped until you resume")
    ).to_be_visible()
    send(desk, "Phone copy channel", "PUT")
    expect(trades.get_by_text("Skipped: your copying of this channel is paused")).to_be_visible()

    subscription.get_by_role("button", name="Leave").click()
    phone.get_by_role("button", name="Leave channel").click()
    expect(phone.get_by_text("You copy no channel yet")).to_be_visible()


def test_refused_deriv_token_shows_the_error_and_saves_nothing(
    browsing: Browsing, rest: Api
) -> None:
    subscriber = rest.signup("subscriber")
    page, console = browsing.page(PHONE)
    console.expect("POST /api/broker-accounts 422")
    login(page, subscriber.email)
    expect(page).to_have_url(re.compile(r"/me"))
    page.get_by_role("button", name="Add account").click()
    page.get_by_text("Deriv", exact=True).click()
    expect(page.get_by_role("link", name="app.deriv.com/account/api-token")).to_have_attribute(
        "href", "https://app.deriv.com/account/api-token"
    )
    expect(page.get_by_text("The token needs the Read and Trade scopes")).to_be_visible()
    page.get_by_label("API token").fill("not-a-real-token-123")
    page.get_by_role("button", name="Check and add Deriv account").click()
    expect(page.get_by_role("alert")).to_contain_text("refused by Deriv")
    r = rest.call("GET", "/api/broker-accounts", subscriber)
    assert r.json()["items"] == [], r.text

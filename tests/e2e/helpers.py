"""What the end-to-end tests do the way a person would: one login helper for all of them."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.client import Api, User

PASSWORD = "correct horse battery"  # tests.client.Api's password


def login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Logs in through /login with the fields 'Email' and 'Password' and the 'Log in' button."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def provider_with_channel(
    api: Api, name: str = "E2E channel", **channel: Any
) -> tuple[User, dict[str, Any]]:
    provider = api.signup("provider", display_name="E2E Desk")
    r = api.call("POST", "/api/channels", provider, json={"name": name, **channel})
    assert r.status_code == 201, r.text
    return provider, r.json()


def paper_subscribers(api: Api, channel_id: str, n: int, stake: float = 2) -> list[User]:
    """``n`` subscribers copying the channel on paper accounts, through the REST API."""
    users = []
    for i in range(n):
        user = api.signup("subscriber", display_name=f"E2E subscriber {i}")
        account = api.call(
            "POST", "/api/broker-accounts", user, json={"broker": "paper", "credentials": {}}
        )
        assert account.status_code == 201, account.text
        sub = api.call(
            "POST",
            f"/api/channels/{channel_id}/subscribe",
            user,
            json={
                "broker_account_id": account.json()["id"],
                "stake": {"mode": "fixed", "amount": stake},
            },
        )
        assert sub.status_code == 201, sub.text
        users.append(user)
    return users

"""The REST API over real HTTP against the running hub and paper worker pool: channels and their
traders, broker accounts, subscriptions, signal and trade history, and the operational endpoints.

Refusals are checked for their exact status and the contract's error shape, and bad input for
changing nothing (through the API and through the hub's Redis directory).
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

from core import keys
from signal_hub.settings import Settings, load_settings
from tests.client import Api, User, assert_error, assert_no_secrets, live, new_email
from tests.procs import System, redis_url, wait_until

UNKNOWN_ID = "000000000000000000000000"


@pytest.fixture(scope="module")
def settings(system: System) -> Settings:
    return load_settings(system.env)


@pytest.fixture
def directory(system: System) -> Iterator[sync_redis.Redis]:
    """The Redis database the hub keeps its directory in (read only here)."""
    client = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    yield client
    client.close()


def raw_json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


def signal(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "asset": "EURUSD",
        "direction": "CALL",
        "expiry_seconds": 60,
        **extra,
    }


def subscriptions_of(api: Api, user: User) -> list[dict[str, Any]]:
    return api.ok("GET", "/api/subscriptions", user)["items"]  # type: ignore[no-any-return]


def without_times(subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subscriptions minus their timestamps (MongoDB keeps milliseconds, the answer had micro)."""
    return [{k: v for k, v in s.items() if k not in {"created_at", "updated_at"}} for s in subs]


def subscribe_body(account_id: str, **extra: Any) -> dict[str, Any]:
    return {"broker_account_id": account_id, "stake": {"mode": "fixed", "amount": 10}, **extra}


# --- channels --------------------------------------------------------------------------------


def test_provider_creates_a_channel_with_defaults(
    api: Api, settings: Settings, directory: sync_redis.Redis
) -> None:
    provider = api.signup("provider", display_name="Prov")
    r = api.call("POST", "/api/channels", provider, json={"name": "  Morning EURUSD  "})
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["id"]
    assert channel["name"] == "Morning EURUSD"
    assert channel["provider_id"] == provider.id
    assert channel["provider_name"] == "Prov"
    assert channel["description"] == ""
    assert channel["assets"] is None
    assert channel["max_signal_delay_ms"] == settings.default_max_signal_delay_ms == 2000
    assert channel["traders"] == []
    assert channel["created_at"]
    assert_no_secrets(r)

    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id]
    assert entry["max_signal_delay_ms"] == 2000


def test_channel_with_assets_and_delay(api: Api) -> None:
    provider = api.signup("provider")
    body = {
        "name": "majors",
        "description": "EUR and GBP only",
        "assets": ["GBPUSD", "EURUSD", "EURUSD"],
        "max_signal_delay_ms": 5000,
    }
    channel = api.ok("POST", "/api/channels", provider, 201, json=body)
    assert channel["assets"] == ["EURUSD", "GBPUSD"]
    assert channel["max_signal_delay_ms"] == 5000
    assert channel["description"] == "EUR and GBP only"
    again = api.ok("GET", f"/api/channels/{channel['id']}", provider)
    assert again["assets"] == ["EURUSD", "GBPUSD"] and again["max_signal_delay_ms"] == 5000


def test_only_providers_create_channels(api: Api) -> None:
    subscriber = api.signup("subscriber")
    body = {"name": "not mine to make"}
    assert_error(api.call("POST", "/api/channels", subscriber, json=body), 403, "wrong_role")
    assert_error(api.call("POST", "/api/channels", json=body), 401, "missing_token")
    r = api.with_token("POST", "/api/channels", "garbage", json=body)
    assert_error(r, 401, "invalid_token")
    names = [c["name"] for c in api.ok("GET", "/api/channels")["items"]]
    assert "not mine to make" not in names


def test_channel_input_is_validated_and_changes_nothing(api: Api) -> None:
    provider = api.signup("provider")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "assets": ["EURUSD", "NOPE"]}, "unknown_asset"),
        ({"name": "x", "assets": ["eurusd"]}, "unknown_asset"),
        ({"name": ""}, "validation_error"),
        ({"name": "   "}, "validation_error"),
        ({"name": "n" * 81}, "validation_error"),
        ({}, "validation_error"),
        ({"name": "x", "max_signal_delay_ms": 50}, "validation_error"),
        ({"name": "x", "max_signal_delay_ms": 60_001}, "validation_error"),
        ({"name": "x", "assets": "EURUSD"}, "validation_error"),
        ({"name": "x", "provider_id": "someone-else"}, "validation_error"),
    ]
    for body, code in cases:
        r = api.call("POST", "/api/channels", provider, json=body)
        error = assert_error(r, 422, code)
        if code == "unknown_asset":
            assert "NOPE" in error["message"] or "eurusd" in error["message"]
    for raw in ('{"name": ', "[]", '{"name": "x", "max_signal_delay_ms": NaN}'):
        assert_error(api.call("POST", "/api/channels", provider, **raw_json(raw)), 400)
    assert api.ok("GET", "/api/channels?mine=1", provider)["items"] == []


def test_channels_are_public_and_only_the_owner_sees_traders(api: Api) -> None:
    provider = api.signup("provider", display_name="Owner")
    trader = api.signup("provider")
    channel = api.channel(provider)
    api.add_trader(provider, channel["id"], trader)
    other_provider = api.signup("provider")
    subscriber = api.signup("subscriber")

    listing = api.call("GET", "/api/channels")
    assert listing.status_code == 200, listing.text
    mine = [c for c in listing.json()["items"] if c["id"] == channel["id"]]
    assert len(mine) == 1
    assert "traders" not in mine[0]
    assert mine[0]["provider_name"] == "Owner"
    assert mine[0]["stats"]["signals"] == 0 and "pnl" not in mine[0]["stats"]
    assert trader.id not in listing.text
    assert_no_secrets(listing)
    # The owner's listing is public data too.
    owner_list = api.ok("GET", "/api/channels", provider)["items"]
    assert all("traders" not in c for c in owner_list)

    for who in (None, other_provider, subscriber, trader):
        page = api.call("GET", f"/api/channels/{channel['id']}", who)
        assert page.status_code == 200, page.text
        assert "traders" not in page.json(), who
        assert "pnl" not in page.json()["stats"]
        assert trader.id not in page.text
    owned = api.ok("GET", f"/api/channels/{channel['id']}", provider)
    assert owned["traders"] == [{"email": trader.email}]
    assert trader.email not in page.text
    assert "pnl" in owned["stats"]

    public_stats = api.ok("GET", f"/api/channels/{channel['id']}/stats")
    assert public_stats["channel_id"] == channel["id"] and "pnl" not in public_stats
    assert "pnl" in api.ok("GET", f"/api/channels/{channel['id']}/stats", provider)


def test_mine_lists_only_the_callers_channels(api: Api) -> None:
    provider = api.signup("provider")
    other = api.signup("provider")
    a = api.channel(provider)
    b = api.channel(provider)
    api.channel(other)
    ids = [c["id"] for c in api.ok("GET", "/api/channels?mine=1", provider)["items"]]
    assert sorted(ids) == sorted([a["id"], b["id"]])
    assert_error(api.call("GET", "/api/channels?mine=1"), 401, "missing_token")
    subscriber = api.signup("subscriber")
    assert api.ok("GET", "/api/channels?mine=1", subscriber)["items"] == []
    # A named trader (of any role) finds the channels it may send to, marked as such.
    api.add_trader(other, api.ok("GET", "/api/channels?mine=1", other)["items"][0]["id"], provider)
    mine = api.ok("GET", "/api/channels?mine=1", provider)["items"]
    roles = {c["id"]: c["my_role"] for c in mine}
    assert sorted(roles.values()) == ["owner", "owner", "trader"]
    traded = next(c for c in mine if c["my_role"] == "trader")
    assert "traders" not in traded and "pnl" not in traded["stats"]


def test_unknown_channel_is_404_everywhere(api: Api) -> None:
    provider = api.signup("provider")
    subscriber = api.signup("subscriber")
    account = api.account(subscriber)
    for method, path, user, kw in [
        ("GET", f"/api/channels/{UNKNOWN_ID}", None, {}),
        ("GET", f"/api/channels/{UNKNOWN_ID}/stats", None, {}),
        ("GET", "/api/channels/no-such-channel", provider, {}),
        ("POST", f"/api/channels/{UNKNOWN_ID}/traders", provider, {"json": {"email": "a@b.co"}}),
        ("DELETE", f"/api/channels/{UNKNOWN_ID}/traders/{provider.id}", provider, {}),
        (
            "POST",
            f"/api/channels/{UNKNOWN_ID}/subscribe",
            subscriber,
            {"json": subscribe_body(account["id"])},
        ),
        ("GET", f"/api/signals?channel_id={UNKNOWN_ID}", provider, {}),
    ]:
        assert_error(api.call(method, path, user, **kw), 404, "channel_not_found")


# --- traders ---------------------------------------------------------------------------------


def test_owner_adds_and_removes_traders(api: Api, directory: sync_redis.Redis) -> None:
    provider = api.signup("provider")
    trader = api.signup("provider", display_name="Helper")
    channel = api.channel(provider)
    path = f"/api/channels/{channel['id']}/traders"

    r = api.call("POST", path, provider, json={"email": trader.email.upper()})
    assert r.status_code == 201, r.text
    assert r.json() == {"channel_id": channel["id"], "trader": {"email": trader.email}}
    assert_no_secrets(r)
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id, trader.id]
    # The named trader may now read the channel's signals.
    assert api.ok("GET", f"/api/signals?channel_id={channel['id']}", trader)["items"] == []

    # Naming the same trader (or the owner) again changes nothing and says the same.
    for email in (trader.email, provider.email):
        again = api.ok("POST", path, provider, 201, json={"email": email})
        assert again == {"channel_id": channel["id"], "trader": {"email": email}}
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id, trader.id]

    r = api.call("DELETE", f"{path}/{trader.id}", provider)
    assert r.status_code == 204, r.text
    assert r.content == b""
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id]
    assert api.ok("GET", f"/api/channels/{channel['id']}", provider)["traders"] == [
        {"email": provider.email}
    ]
    r = api.call("GET", f"/api/signals?channel_id={channel['id']}", trader)
    assert_error(r, 403, "forbidden")

    assert_error(api.call("DELETE", f"{path}/{trader.id}", provider), 404, "trader_not_found")
    assert_error(api.call("DELETE", f"{path}/{UNKNOWN_ID}", provider), 404, "trader_not_found")
    # Re-adding after removal works, and removal by email too.
    api.ok("POST", path, provider, 201, json={"email": trader.email})
    api.ok("DELETE", f"{path}/{trader.email}", provider, 204)
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id]


def test_naming_a_trader_says_nothing_of_who_has_an_account(
    api: Api, directory: sync_redis.Redis
) -> None:
    """The same answer for an email with and without an account; the account made later with
    that email is the trader, and a named email is removed by itself."""
    provider = api.signup("provider")
    existing = api.signup("provider")
    channel = api.channel(provider)
    path = f"/api/channels/{channel['id']}/traders"
    newcomer = new_email("later")

    for email in (existing.email, newcomer):
        r = api.call("POST", path, provider, json={"email": email})
        assert r.status_code == 201, r.text
        assert r.json() == {"channel_id": channel["id"], "trader": {"email": email}}
    assert api.ok("GET", f"/api/channels/{channel['id']}", provider)["traders"] == [
        {"email": existing.email},
        {"email": newcomer},
    ]
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id, existing.id]

    r = api.http.post(
        "/api/auth/signup",
        json={"email": newcomer, "password": api.password, "role": "provider"},
    )
    assert r.status_code == 201, r.text
    later_id = r.json()["user"]["id"]
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id, existing.id, later_id]

    api.ok("DELETE", f"{path}/{newcomer}", provider, 204)
    entry = json.loads(directory.get(keys.channel(channel["id"])) or "{}")
    assert entry["senders"] == [provider.id, existing.id]
    nobody = new_email("nobody")
    api.ok("POST", path, provider, 201, json={"email": nobody})
    api.ok("DELETE", f"{path}/{nobody}", provider, 204)
    assert api.ok("GET", f"/api/channels/{channel['id']}", provider)["traders"] == [
        {"email": existing.email}
    ]


def test_trader_refusals(api: Api) -> None:
    provider = api.signup("provider")
    trader = api.signup("provider")
    channel = api.channel(provider)
    path = f"/api/channels/{channel['id']}/traders"
    stranger = api.signup("provider")
    subscriber = api.signup("subscriber")

    assert_error(api.call("POST", path, provider, json={"email": "not-an-email"}), 422)
    assert_error(api.call("POST", path, provider, json={}), 422, "validation_error")
    assert_error(api.call("POST", path, provider, **raw_json("{")), 400, "invalid_json")
    body = {"email": trader.email}
    assert_error(api.call("POST", path, stranger, json=body), 403, "not_channel_owner")
    assert_error(api.call("POST", path, subscriber, json=body), 403, "wrong_role")
    assert_error(api.call("POST", path, json=body), 401, "missing_token")
    # None of that added anyone.
    assert api.ok("GET", f"/api/channels/{channel['id']}", provider)["traders"] == []

    api.ok("POST", path, provider, 201, json=body)
    assert_error(api.call("DELETE", f"{path}/{trader.id}", stranger), 403, "not_channel_owner")
    assert_error(api.call("DELETE", f"{path}/{trader.id}", subscriber), 403, "wrong_role")
    assert_error(api.call("DELETE", f"{path}/{trader.id}"), 401, "missing_token")
    # ...nor removed anyone.
    assert api.ok("GET", f"/api/channels/{channel['id']}", provider)["traders"] == [
        {"email": trader.email}
    ]


# --- broker accounts -------------------------------------------------------------------------


def test_credentials_are_never_returned(api: Api, directory: sync_redis.Redis) -> None:
    subscriber = api.signup("subscriber")
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    body = {
        "broker": "paper",
        "credentials": {"api_token": secret, "starting_balance": 500},
        "label": "main paper",
    }
    r = api.call("POST", "/api/broker-accounts", subscriber, json=body)
    assert r.status_code == 201, r.text
    assert_no_secrets(r, secret)
    account = r.json()
    assert set(account) == {"id", "broker", "label", "currency", "created_at", "balance", "health"}
    assert (account["broker"], account["label"], account["currency"]) == (
        "paper",
        "main paper",
        "USD",
    )

    listing = api.call("GET", "/api/broker-accounts", subscriber)
    assert listing.status_code == 200, listing.text
    assert_no_secrets(listing, secret)
    assert [a["id"] for a in listing.json()["items"]] == [account["id"]]
    assert "credentials" not in listing.text

    # Encrypted at rest in the hub's directory too.
    stored = directory.hget(keys.accounts("paper"), account["id"])
    assert stored and secret not in stored

    default = api.account(subscriber)
    assert default["label"] == "paper account"


def test_broker_account_list_shows_only_own_accounts(api: Api) -> None:
    alice = api.signup("subscriber")
    bob = api.signup("subscriber")
    alice_ids = [api.account(alice)["id"] for _ in range(2)]
    bob_id = api.account(bob)["id"]
    assert [a["id"] for a in api.ok("GET", "/api/broker-accounts", alice)["items"]] == alice_ids
    assert [a["id"] for a in api.ok("GET", "/api/broker-accounts", bob)["items"]] == [bob_id]
    assert api.ok("GET", "/api/broker-accounts", api.signup("subscriber"))["items"] == []


def test_broker_account_refusals_change_nothing(api: Api) -> None:
    subscriber = api.signup("subscriber")
    provider = api.signup("provider")
    secret = f"leak-{uuid.uuid4().hex}"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"broker": "nope", "credentials": {"token": secret}}, 422, "unknown_broker"),
        ({"broker": "PAPER", "credentials": {}}, 422, "unknown_broker"),
        ({"broker": "", "credentials": {}}, 422, "validation_error"),
        ({"credentials": {"token": secret}}, 422, "validation_error"),
        (
            {"broker": "paper", "credentials": {"token": {"nested": secret}}},
            422,
            "validation_error",
        ),
        ({"broker": "paper", "credentials": {"token": [secret]}}, 422, "validation_error"),
        ({"broker": "paper", "credentials": secret}, 422, "validation_error"),
        (
            {"broker": "paper", "credentials": {f"k{i}": secret for i in range(11)}},
            422,
            "validation_error",
        ),
        ({"broker": "paper", "currency": "usd"}, 422, "validation_error"),
        ({"broker": "paper", "label": "l" * 81}, 422, "validation_error"),
        ({"broker": "paper", "user_id": provider.id}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        r = api.call("POST", "/api/broker-accounts", subscriber, json=body)
        assert_error(r, status, code)
        assert secret not in r.text, body
    r = api.call("POST", "/api/broker-accounts", subscriber, **raw_json('{"broker": "paper", '))
    assert_error(r, 400, "invalid_json")

    ok_body = {"broker": "paper", "credentials": {"token": secret}}
    r = api.call("POST", "/api/broker-accounts", provider, json=ok_body)
    assert_error(r, 403, "wrong_role")
    assert secret not in r.text
    assert_error(api.call("POST", "/api/broker-accounts", json=ok_body), 401, "missing_token")
    assert_error(api.call("GET", "/api/broker-accounts", provider), 403, "wrong_role")
    assert_error(api.call("GET", "/api/broker-accounts"), 401, "missing_token")

    assert api.ok("GET", "/api/broker-accounts", subscriber)["items"] == []


def test_deriv_account_needs_a_token_and_never_shows_it(
    api: Api, settings: Settings, directory: sync_redis.Redis, system: System
) -> None:
    if "deriv" not in settings.brokers:
        pytest.skip("the deriv broker is not enabled (BROKERS)")
    subscriber = api.signup("subscriber")
    r = api.call("POST", "/api/broker-accounts", subscriber, json={"broker": "deriv"})
    assert_error(r, 422, "missing_credentials")
    body = {"broker": "deriv", "credentials": {"token": ""}}
    assert_error(api.call("POST", "/api/broker-accounts", subscriber, json=body), 422)
    assert api.ok("GET", "/api/broker-accounts", subscriber)["items"] == []

    token = f"a1-{uuid.uuid4().hex}"
    body = {"broker": "deriv", "credentials": {"token": token}}
    # Checked with Deriv (the simulator) by a worker of the deriv pool: unknown there, refused.
    r = api.call("POST", "/api/broker-accounts", subscriber, json=body)
    error = assert_error(r, 422, "broker_token_refused")
    assert error["message"] == "This token was refused by Deriv: check it has the Trade scope."
    assert_no_secrets(r, token)
    assert api.ok("GET", "/api/broker-accounts", subscriber)["items"] == []
    sim = {"token": token, "balance": 1234.5, "currency": "USD"}
    assert httpx.post(f"{system.sim_url}/_sim/accounts", json=sim).status_code == 201
    r = api.call("POST", "/api/broker-accounts", subscriber, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == 1234.5 and r.json()["health"]["status"] == "ok"
    assert_no_secrets(r, token)
    account = r.json()
    assert account["broker"] == "deriv"
    listing = api.call("GET", "/api/broker-accounts", subscriber)
    assert_no_secrets(listing, token)
    assert [a["id"] for a in listing.json()["items"]] == [account["id"]]
    stored = directory.hget(keys.accounts("deriv"), account["id"])
    assert stored and token not in stored

    # Stake minimums are the broker's own: 0.5 is enough on Deriv (not on paper).
    provider = api.signup("provider")
    channel = api.channel(provider)
    sub = api.ok(
        "POST",
        f"/api/channels/{channel['id']}/subscribe",
        subscriber,
        201,
        json={"broker_account_id": account["id"], "stake": {"mode": "fixed", "amount": 0.5}},
    )
    assert sub["broker"] == "deriv"
    assert sub["id"] in directory.smembers(keys.directory(channel["id"], "deriv"))
    r = api.call(
        "PATCH", f"/api/subscriptions/{sub['id']}", subscriber,
        json={"stake": {"mode": "fixed", "amount": 0.1}},
    )  # fmt: skip
    assert_error(r, 422, "stake_below_minimum")


def test_assets_lists_paper_assets(api: Api, settings: Settings) -> None:
    r = api.call("GET", "/api/assets")
    assert r.status_code == 200, r.text
    assets = r.json()
    assert set(assets) == set(settings.brokers)
    paper = assets["paper"]
    assert {"EURUSD", "GBPUSD", "USDJPY", "R_100"} <= set(paper)
    assert paper == sorted(paper) and len(paper) == len(set(paper))
    assert all(isinstance(a, str) and a for a in paper)


# --- subscriptions ---------------------------------------------------------------------------


def test_subscribe_fixed_and_percent(api: Api, directory: sync_redis.Redis) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)

    fixed_user = api.signup("subscriber")
    fixed_account = api.account(fixed_user)
    r = api.call(
        "POST",
        f"/api/channels/{channel['id']}/subscribe",
        fixed_user,
        json=subscribe_body(fixed_account["id"]),
    )
    assert r.status_code == 201, r.text
    fixed = r.json()
    assert fixed["channel_id"] == channel["id"]
    assert fixed["user_id"] == fixed_user.id
    assert fixed["broker_account_id"] == fixed_account["id"]
    assert fixed["broker"] == "paper"
    assert fixed["stake"] == {"mode": "fixed", "amount": 10}
    assert fixed["limits"] == {}
    assert fixed["paused"] is False

    percent_user = api.signup("subscriber")
    percent_account = api.account(percent_user)
    body = {
        "broker_account_id": percent_account["id"],
        "stake": {"mode": "percent", "percent": 2.5},
        "limits": {"max_stake": 100, "max_trades_per_day": 5},
    }
    percent = api.ok(
        "POST", f"/api/channels/{channel['id']}/subscribe", percent_user, 201, json=body
    )
    assert percent["stake"] == {"mode": "percent", "percent": 2.5}
    assert percent["limits"] == {"max_stake": 100, "max_trades_per_day": 5}

    assert without_times(subscriptions_of(api, fixed_user)) == without_times([fixed])
    assert without_times(subscriptions_of(api, percent_user)) == without_times([percent])
    members = directory.smembers(keys.directory(channel["id"], "paper"))
    assert members == {fixed["id"], percent["id"]}
    entry = json.loads(directory.hget(keys.subscriptions(channel["id"]), percent["id"]) or "{}")
    assert entry["stake"] == {"mode": "percent", "percent": 2.5}
    assert entry["account_id"] == percent_account["id"]
    assert api.ok("GET", f"/api/channels/{channel['id']}/stats")["subscribers"] == 2


def test_stake_and_limits_are_validated_and_change_nothing(
    api: Api, directory: sync_redis.Redis
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscriber = api.signup("subscriber")
    account = api.account(subscriber)
    path = f"/api/channels/{channel['id']}/subscribe"

    def with_stake(stake: Any, **extra: Any) -> dict[str, Any]:
        return {"broker_account_id": account["id"], "stake": stake, **extra}

    cases: list[tuple[dict[str, Any], str]] = [
        (with_stake({"mode": "fixed", "amount": 0}), "validation_error"),
        (with_stake({"mode": "fixed", "amount": -5}), "validation_error"),
        (with_stake({"mode": "fixed", "amount": 50_001}), "stake_above_maximum"),
        (with_stake({"mode": "fixed", "amount": "ten"}), "validation_error"),
        (with_stake({"mode": "fixed", "amount": 0.5}), "stake_below_minimum"),
        (with_stake({"mode": "fixed"}), "validation_error"),
        (with_stake({"mode": "percent", "percent": 0}), "validation_error"),
        (with_stake({"mode": "percent", "percent": 100.01}), "validation_error"),
        (with_stake({"mode": "percent", "percent": 150}), "validation_error"),
        (with_stake({"mode": "percent", "amount": 10}), "validation_error"),
        (with_stake({"mode": "martingale", "amount": 10}), "validation_error"),
        (with_stake({"amount": 10}), "validation_error"),
        (with_stake({"mode": "fixed", "amount": 10, "max": 5}), "validation_error"),
        (with_stake(10), "validation_error"),
        (with_stake({"mode": "fixed", "amount": 10}, extra=1), "validation_error"),
        (with_stake({"mode": "fixed", "amount": 10}, paused="maybe"), "validation_error"),
        (
            with_stake({"mode": "fixed", "amount": 10}, limits={"max_trades_per_day": 0}),
            "validation_error",
        ),
        (with_stake({"mode": "fixed", "amount": 10}, limits={"max_stake": -1}), "validation_error"),
        (
            with_stake({"mode": "fixed", "amount": 10}, limits={"daily_loss_limit": 0}),
            "validation_error",
        ),
        (with_stake({"mode": "fixed", "amount": 10}, limits={"martingale": 2}), "validation_error"),
        ({"stake": {"mode": "fixed", "amount": 10}}, "validation_error"),
        ({"broker_account_id": account["id"]}, "validation_error"),
    ]
    for body, code in cases:
        r = api.call("POST", path, subscriber, json=body)
        assert r.status_code == 422, (body, r.text)
        assert_error(r, 422, code)

    def raw(amount: str, limits: str = "{}") -> str:
        stake = f'{{"mode": "fixed", "amount": {amount}}}'
        return f'{{"broker_account_id": "{account["id"]}", "stake": {stake}, "limits": {limits}}}'

    for text in (
        raw("10")[:-1],
        raw("NaN"),
        raw("Infinity"),
        raw("-Infinity"),
        raw("1e400"),
        raw("10", '{"max_stake": Infinity}'),
        raw("10", '{"daily_loss_limit": 1e999}'),
    ):
        r = api.call("POST", path, subscriber, **raw_json(text))
        assert_error(r, 400, "invalid_json")
    assert json.loads(raw("10"))["stake"]["amount"] == 10  # the control is valid JSON

    assert subscriptions_of(api, subscriber) == []
    assert directory.scard(keys.directory(channel["id"], "paper")) == 0
    # And the way is still clear for a good one.
    api.ok("POST", path, subscriber, 201, json=with_stake({"mode": "fixed", "amount": 1}))


def test_subscribe_refusals(api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    other_channel = api.channel(provider)
    path = f"/api/channels/{channel['id']}/subscribe"
    subscriber = api.signup("subscriber")
    account = api.account(subscriber)
    second_account = api.account(subscriber)
    someone_else = api.signup("subscriber")
    their_account = api.account(someone_else)

    r = api.call("POST", path, subscriber, json=subscribe_body(their_account["id"]))
    assert_error(r, 404, "broker_account_not_found")
    r = api.call("POST", path, subscriber, json=subscribe_body(UNKNOWN_ID))
    assert_error(r, 404, "broker_account_not_found")
    r = api.call("POST", path, provider, json=subscribe_body(account["id"]))
    assert_error(r, 403, "wrong_role")
    assert_error(api.call("POST", path, json=subscribe_body(account["id"])), 401, "missing_token")
    assert_error(api.call("POST", path, subscriber, **raw_json("{")), 400, "invalid_json")
    assert subscriptions_of(api, subscriber) == []

    api.ok("POST", path, subscriber, 201, json=subscribe_body(account["id"]))
    r = api.call("POST", path, subscriber, json=subscribe_body(account["id"]))
    assert_error(r, 409, "already_subscribed")
    r = api.call("POST", path, subscriber, json=subscribe_body(second_account["id"]))
    assert_error(r, 409, "already_subscribed")
    assert len(subscriptions_of(api, subscriber)) == 1
    # One account may copy several channels.
    other_path = f"/api/channels/{other_channel['id']}/subscribe"
    api.ok("POST", other_path, subscriber, 201, json=subscribe_body(account["id"]))
    assert len(subscriptions_of(api, subscriber)) == 2
    # Someone else using their own account on the same channel is fine.
    api.ok("POST", path, someone_else, 201, json=subscribe_body(their_account["id"]))


def test_owner_patches_paused_stake_and_limits(api: Api, directory: sync_redis.Redis) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    user, _, sub = api.subscriber(channel["id"], limits={"max_stake": 50})
    path = f"/api/subscriptions/{sub['id']}"

    def entry() -> dict[str, Any]:
        return json.loads(directory.hget(keys.subscriptions(channel["id"]), sub["id"]) or "{}")  # type: ignore[no-any-return]

    paused = api.ok("PATCH", path, user, json={"paused": True})
    assert paused["paused"] is True
    assert paused["stake"] == sub["stake"] and paused["limits"] == {"max_stake": 50}
    assert entry()["paused"] is True

    staked = api.ok("PATCH", path, user, json={"stake": {"mode": "percent", "percent": 5}})
    assert staked["stake"] == {"mode": "percent", "percent": 5}
    assert staked["paused"] is True
    assert entry()["stake"] == {"mode": "percent", "percent": 5}

    limited = api.ok(
        "PATCH", path, user, json={"limits": {"daily_loss_limit": 40, "max_trades_per_day": 3}}
    )
    assert limited["limits"] == {"daily_loss_limit": 40, "max_trades_per_day": 3}
    assert entry()["limits"] == {"daily_loss_limit": 40, "max_trades_per_day": 3}

    resumed = api.ok(
        "PATCH", path, user, json={"paused": False, "stake": {"mode": "fixed", "amount": 25}}
    )
    assert resumed["paused"] is False and resumed["stake"] == {"mode": "fixed", "amount": 25}
    assert resumed["limits"] == {"daily_loss_limit": 40, "max_trades_per_day": 3}

    unchanged = api.ok("PATCH", path, user, json={})
    assert {k: unchanged[k] for k in ("paused", "stake", "limits")} == {
        k: resumed[k] for k in ("paused", "stake", "limits")
    }
    assert unchanged["created_at"][:19] == sub["created_at"][:19]
    assert without_times(subscriptions_of(api, user)) == without_times([unchanged])


def test_bad_patch_changes_nothing(api: Api, directory: sync_redis.Redis) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    user, _, sub = api.subscriber(
        channel["id"], stake={"mode": "fixed", "amount": 12}, limits={"max_trades_per_day": 7}
    )
    path = f"/api/subscriptions/{sub['id']}"
    before = subscriptions_of(api, user)
    entry_before = directory.hget(keys.subscriptions(channel["id"]), sub["id"])

    cases: list[tuple[dict[str, Any], str]] = [
        ({"stake": {"mode": "percent", "percent": 101}}, "validation_error"),
        ({"stake": {"mode": "fixed", "amount": 0}}, "validation_error"),
        ({"stake": {"mode": "fixed", "amount": 0.5}}, "stake_below_minimum"),
        ({"stake": {"mode": "double"}}, "validation_error"),
        ({"paused": True, "stake": {"mode": "fixed", "amount": -1}}, "validation_error"),
        ({"paused": True, "stake": {"mode": "fixed", "amount": 0.5}}, "stake_below_minimum"),
        ({"paused": "maybe"}, "validation_error"),
        ({"limits": {"max_trades_per_day": 0}}, "validation_error"),
        ({"paused": True, "limits": {"whatever": 1}}, "validation_error"),
        ({"paused": True, "channel_id": UNKNOWN_ID}, "validation_error"),
    ]
    for body, code in cases:
        r = api.call("PATCH", path, user, json=body)
        assert r.status_code == 422, (body, r.text)
        assert_error(r, 422, code)
    for raw in (
        '{"paused": true',
        "[]",
        '{"paused": true, "limits": {"max_stake": Infinity}}',
        '{"paused": true, "limits": {"daily_loss_limit": NaN}}',
        '{"paused": true, "limits": {"max_stake": 1e400}}',
    ):
        assert_error(api.call("PATCH", path, user, **raw_json(raw)), 400, "invalid_json")

    assert subscriptions_of(api, user) == before
    assert directory.hget(keys.subscriptions(channel["id"]), sub["id"]) == entry_before


def test_others_cannot_patch_or_delete_a_subscription(
    api: Api, directory: sync_redis.Redis
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    owner, _, sub = api.subscriber(channel["id"])
    path = f"/api/subscriptions/{sub['id']}"
    intruder = api.signup("subscriber")
    api.account(intruder)

    assert_error(
        api.call("PATCH", path, intruder, json={"paused": True}), 404, "subscription_not_found"
    )
    assert_error(api.call("DELETE", path, intruder), 404, "subscription_not_found")
    assert_error(api.call("PATCH", path, provider, json={"paused": True}), 403, "wrong_role")
    assert_error(api.call("DELETE", path, provider), 403, "wrong_role")
    assert_error(api.call("PATCH", path, json={"paused": True}), 401, "missing_token")
    assert_error(api.call("DELETE", path), 401, "missing_token")
    unknown = f"/api/subscriptions/{UNKNOWN_ID}"
    assert_error(
        api.call("PATCH", unknown, owner, json={"paused": True}), 404, "subscription_not_found"
    )
    assert_error(api.call("DELETE", unknown, owner), 404, "subscription_not_found")
    assert subscriptions_of(api, intruder) == []

    assert without_times(subscriptions_of(api, owner)) == without_times([sub])
    assert sub["id"] in directory.smembers(keys.directory(channel["id"], "paper"))


async def test_deleted_subscription_gets_no_more_signals(
    system: System, api: Api, directory: sync_redis.Redis
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    kept, _, _ = api.subscriber(channel["id"])
    gone, gone_account, gone_sub = api.subscriber(channel["id"])
    dir_key = keys.directory(channel["id"], "paper")
    assert gone_sub["id"] in directory.smembers(dir_key)

    r = api.call("DELETE", f"/api/subscriptions/{gone_sub['id']}", gone)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert gone_sub["id"] not in directory.smembers(dir_key)
    assert directory.scard(dir_key) == 1
    assert not directory.hexists(keys.subscriptions(channel["id"]), gone_sub["id"])
    assert subscriptions_of(api, gone) == []
    path = f"/api/subscriptions/{gone_sub['id']}"
    assert_error(api.call("DELETE", path, gone), 404, "subscription_not_found")
    assert_error(api.call("PATCH", path, gone, json={"paused": True}), 404)
    assert api.ok("GET", f"/api/channels/{channel['id']}/stats")["subscribers"] == 1

    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"]))
    finally:
        await watcher.close()
    assert ack["ok"] is True, ack
    assert ack["fanout"] == {"total": 1, "by_broker": {"paper": 1}}

    found: list[dict[str, Any]] = []

    def written() -> bool:
        found[:] = api.ok("GET", f"/api/trades?signal_id={ack['signal_id']}", provider)["items"]
        return len(found) >= 1

    wait_until(written, timeout=20, what="the kept subscriber's trade")
    assert [t["subscriber_id"] for t in found] == [kept.id]
    assert api.ok("GET", "/api/trades?mine=1", gone)["items"] == []
    assert [t["signal_id"] for t in api.ok("GET", "/api/trades?mine=1", kept)["items"]] == [
        ack["signal_id"]
    ]

    # Subscribing again after leaving is allowed and lands in the directory again.
    again = api.ok(
        "POST",
        f"/api/channels/{channel['id']}/subscribe",
        gone,
        201,
        json=subscribe_body(gone_account["id"]),
    )
    assert again["id"] != gone_sub["id"]
    assert again["id"] in directory.smembers(dir_key)


# --- signals and trades ----------------------------------------------------------------------


def test_signal_history_access(api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscriber, _, _ = api.subscriber(channel["id"])
    stranger = api.signup("provider")

    assert_error(api.call("GET", "/api/signals", provider), 400, "missing_channel_id")
    assert_error(api.call("GET", "/api/signals?channel_id=", provider), 400, "missing_channel_id")
    path = f"/api/signals?channel_id={channel['id']}"
    assert_error(api.call("GET", path), 401, "missing_token")
    assert_error(api.call("GET", path, stranger), 403, "forbidden")
    assert_error(api.call("GET", path, subscriber), 403, "forbidden")
    assert api.ok("GET", path, provider) == {"items": []}
    for limit in ("1", "500"):
        assert api.ok("GET", f"{path}&limit={limit}", provider) == {"items": []}
    for limit in ("0", "-1", "501", "abc", "1.5", "", " 5", "²", "9" * 5000):
        params = {"channel_id": channel["id"], "limit": limit}
        r = api.call("GET", "/api/signals", provider, params=params)
        assert r.status_code == 400, (limit, r.text)
        assert_error(r, 400, "invalid_limit")

    assert_error(api.call("GET", f"/api/signals/{UNKNOWN_ID}", provider), 404, "signal_not_found")
    assert_error(api.call("GET", f"/api/signals/{UNKNOWN_ID}"), 401, "missing_token")


def test_trade_history_filters(api: Api) -> None:
    subscriber = api.signup("subscriber")
    provider = api.signup("provider")
    assert_error(api.call("GET", "/api/trades", subscriber), 400, "missing_filter")
    assert_error(api.call("GET", "/api/trades?mine=0", subscriber), 400, "missing_filter")
    assert_error(api.call("GET", "/api/trades", provider), 400, "missing_filter")
    assert_error(api.call("GET", "/api/trades?mine=1"), 401, "missing_token")
    assert api.ok("GET", "/api/trades?mine=1", subscriber) == {"items": []}
    assert api.ok("GET", "/api/trades?mine=1&limit=100000", subscriber) == {"items": []}
    r = api.call("GET", f"/api/trades?signal_id={UNKNOWN_ID}", provider)
    assert_error(r, 404, "signal_not_found")
    for limit in ("0", "100001", "x", "²", "9" * 5000):
        r = api.call("GET", "/api/trades", subscriber, params={"mine": "1", "limit": limit})
        assert r.status_code == 400, (limit, r.text)
        assert_error(r, 400, "invalid_limit")


async def test_signal_and_its_trades_are_for_the_channel_only(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscriber, _, _ = api.subscriber(channel["id"])
    stranger = api.signup("provider")
    trader = api.signup("provider")
    api.add_trader(provider, channel["id"], trader)

    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"], direction="PUT"))
    finally:
        await watcher.close()
    assert ack["ok"] is True, ack
    signal_id = ack["signal_id"]

    wait_until(
        lambda: len(api.ok("GET", f"/api/trades?signal_id={signal_id}", provider)["items"]) == 1,
        timeout=20,
        what="the trade record",
    )
    for who in (provider, trader):
        record = api.ok("GET", f"/api/signals/{signal_id}", who)
        assert record["id"] == signal_id and record["channel_id"] == channel["id"]
        assert (record["asset"], record["direction"], record["expiry_seconds"]) == (
            "EURUSD",
            "PUT",
            60,
        )
        assert set(record["counts"]) >= {"placed", "rejected", "skipped", "failed", "won", "lost"}
        history = api.ok("GET", f"/api/signals?channel_id={channel['id']}", who)["items"]
        assert [s["id"] for s in history] == [signal_id]
        trades = api.ok("GET", f"/api/trades?signal_id={signal_id}", who)["items"]
        assert [t["subscriber_id"] for t in trades] == [subscriber.id]
        assert_no_secrets(api.call("GET", f"/api/trades?signal_id={signal_id}", who))

    for who in (stranger, subscriber):
        assert_error(api.call("GET", f"/api/signals/{signal_id}", who), 403, "forbidden")
        assert_error(api.call("GET", f"/api/trades?signal_id={signal_id}", who), 403, "forbidden")
    mine = api.ok("GET", "/api/trades?mine=1", subscriber)["items"]
    assert [(t["signal_id"], t["subscriber_id"]) for t in mine] == [(signal_id, subscriber.id)]
    assert api.ok("GET", f"/api/trades?mine=1&signal_id={signal_id}", stranger)["items"] == []


# --- operational endpoints, unknown routes, wrong methods ------------------------------------


def test_health_and_readiness(api: Api) -> None:
    r = api.call("GET", "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = api.call("GET", "/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}


def test_metrics_are_prometheus_text(api: Api) -> None:
    r = api.call("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.endswith("\n")
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN)$")
    typed: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in {"gauge", "counter", "histogram", "summary", "untyped"}, line
            typed[name] = kind
        elif line.startswith("# HELP ") or not line:
            continue
        else:
            match = sample.match(line)
            assert match, f"not a Prometheus sample: {line!r}"
            samples[match.group(1)] = float(match.group(3))
    assert {"ctc_results_lag_entries", "ctc_results_lag_seconds", "ctc_pending_work"} <= set(
        samples
    )
    suffixes = ("_bucket", "_sum", "_count", "_created")
    assert all(
        name in typed or any(name.removesuffix(x) in typed for x in suffixes) for name in samples
    )
    assert all(value >= 0 for value in samples.values())


def test_openapi_describes_the_routes(api: Api) -> None:
    r = api.call("GET", "/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"]
    paths = doc["paths"]
    expected = {
        "/api/auth/signup": {"post"},
        "/api/auth/login": {"post"},
        "/api/auth/refresh": {"post"},
        "/api/me": {"get"},
        "/api/channels": {"get", "post"},
        "/api/channels/{channel_id}": {"get"},
        "/api/channels/{channel_id}/traders": {"post"},
        "/api/channels/{channel_id}/traders/{user_id}": {"delete"},
        "/api/broker-accounts": {"get", "post"},
        "/api/channels/{channel_id}/subscribe": {"post"},
        "/api/subscriptions/{subscription_id}": {"patch", "delete"},
        "/api/signals": {"get"},
        "/api/signals/{signal_id}": {"get"},
        "/api/trades": {"get"},
        "/api/assets": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, paths[path])
        assert all(op.get("summary") for op in paths[path].values())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/api/channels/abc/nope"),
        ("POST", "/api/nope"),
        ("GET", "/api/auth"),
        ("GET", "/assets/no-such-chunk-1234.js"),
    ],
)
def test_unknown_route_is_404_in_the_error_shape(api: Api, method: str, path: str) -> None:
    r = api.call(method, path)
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/me"),
        ("GET", "/api/auth/login"),
        ("PUT", "/api/channels"),
        ("DELETE", "/api/channels"),
        ("PUT", f"/api/subscriptions/{UNKNOWN_ID}"),
        ("GET", f"/api/channels/{UNKNOWN_ID}/subscribe"),
        ("POST", "/healthz"),
        ("DELETE", "/api/subscriptions"),
    ],
)
def test_wrong_method_is_405_in_the_error_shape(api: Api, method: str, path: str) -> None:
    r = api.call(method, path)
    assert_error(r, 405, "method_not_allowed")

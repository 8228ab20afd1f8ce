"""The REST endpoints the web app's pages need (docs/api.md), over real HTTP against the running
system, each with who may see what: channel management and performance for providers and their
traders, the public directory and channel pages for anyone, and a subscriber's own home.

One track record is made once for the module: a channel with three subscribers, three signals
that settle (15 s) and one that stays open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis as sync_redis

from core import keys
from core.clock import utc_day
from tests.client import Api, User, assert_error, assert_no_secrets, live
from tests.procs import System, redis_url, wait_until

UNKNOWN_ID = "000000000000000000000000"


@dataclass
class Track:
    provider: User
    trader: User
    channel: dict[str, Any]
    subscribers: list[User]
    settled: list[str]  # signal ids
    open_signal: str
    trades: list[dict[str, Any]]  # of the settled signals


def signal(channel_id: str, asset: str, direction: str, expiry: int) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": asset, "direction": direction,
            "expiry_seconds": expiry}  # fmt: skip


async def _send(base_url: str, provider: User, payloads: list[dict[str, Any]]) -> list[str]:
    socket = await live(base_url, "/provider", provider)
    try:
        acks = [await socket.emit("signal", p) for p in payloads]
    finally:
        await socket.close()
    assert all(a["ok"] for a in acks), acks
    return [a["signal_id"] for a in acks]


@pytest.fixture(scope="module")
def track(system: System) -> Iterator[Track]:
    with httpx.Client(base_url=system.base_url, timeout=10) as http:
        api = Api(http)
        provider = api.signup("provider", display_name="Track Desk")
        trader = api.signup("subscriber", display_name="Helper")
        channel = api.channel(provider, assets=["EURUSD", "GBPUSD"], description="Momentum.")
        api.add_trader(provider, channel["id"], trader)
        subscribers = [
            api.subscriber(channel["id"], stake={"mode": "fixed", "amount": 2 + i})[0]
            for i in range(3)
        ]
        ids = asyncio.run(
            _send(
                system.base_url,
                provider,
                [
                    signal(channel["id"], "EURUSD", "CALL", 15),
                    signal(channel["id"], "EURUSD", "PUT", 15),
                    signal(channel["id"], "GBPUSD", "CALL", 15),
                    signal(channel["id"], "GBPUSD", "PUT", 3600),
                ],
            )
        )
        trades: list[dict[str, Any]] = []

        def settled() -> bool:
            trades[:] = [
                t
                for signal_id in ids[:3]
                for t in api.ok("GET", f"/api/trades?signal_id={signal_id}", provider)["items"]
            ]
            return len(trades) == 9 and all(t["outcome"] for t in trades)

        wait_until(settled, timeout=60, interval=0.5, what="9 settled trades")
        yield Track(provider, trader, channel, subscribers, ids[:3], ids[3], trades)


# --- providers: channels, subscribers, performance -------------------------------------------


def test_owner_edits_a_channel_and_the_directory_follows(api: Api, system: System) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    path = f"/api/channels/{channel['id']}"
    edited = api.ok(
        "PATCH", path, provider,
        json={"name": "Renamed", "description": "New words.", "assets": ["USDJPY", "EURUSD"],
              "max_signal_delay_ms": 1500},
    )  # fmt: skip
    assert edited["name"] == "Renamed" and edited["assets"] == ["EURUSD", "USDJPY"]
    assert edited["max_signal_delay_ms"] == 1500 and edited["my_role"] == "owner"
    entry = _directory_entry(system, channel["id"])
    assert entry["assets"] == ["EURUSD", "USDJPY"] and entry["max_signal_delay_ms"] == 1500
    # [] means every asset again; omitted fields stay.
    again = api.ok("PATCH", path, provider, json={"assets": []})
    assert again["assets"] is None and again["name"] == "Renamed"

    stranger = api.signup("provider")
    trader = api.signup("provider")
    api.add_trader(provider, channel["id"], trader)
    for who, status in ((stranger, 403), (trader, 403), (None, 401)):
        assert_error(api.call("PATCH", path, who, json={"name": "mine now"}), status)
    for bad in ({"name": ""}, {"name": "x\u202e"}, {"assets": ["NOPE"]}, {"max_signal_delay_ms": 5},
                {"surprise": 1}):  # fmt: skip
        assert_error(api.call("PATCH", path, provider, json=bad), 422)
    assert api.ok("GET", path, provider)["name"] == "Renamed"


def _directory_entry(system: System, channel_id: str) -> dict[str, Any]:
    client = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    try:
        return json.loads(client.get(keys.channel(channel_id)) or "{}")  # type: ignore[no-any-return]
    finally:
        client.close()


def test_the_owner_sees_its_subscribers_but_no_balance_email_or_token(
    api: Api, track: Track
) -> None:
    path = f"/api/channels/{track.channel['id']}/subscribers"
    r = api.call("GET", path, track.provider)
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["counts"] == {"active": 3, "paused": 0, "total": 3}
    assert {i["subscriber_id"] for i in listing["items"]} == {s.id for s in track.subscribers}
    assert sorted(i["stake"]["amount"] for i in listing["items"]) == [2, 3, 4]
    for item in listing["items"]:
        assert set(item) == {"subscription_id", "subscriber_id", "subscriber", "broker", "stake",
                             "limits", "paused", "since"}  # fmt: skip
    for s in track.subscribers:
        assert s.email not in r.text
    assert "balance" not in r.text
    assert_no_secrets(r)
    stranger = api.signup("provider")
    for who, status in ((track.trader, 403), (stranger, 403), (track.subscribers[0], 403),
                        (None, 401)):  # fmt: skip
        assert_error(api.call("GET", path, who), status)


def test_performance_for_the_owner_and_its_traders(api: Api, track: Track) -> None:
    path = f"/api/channels/{track.channel['id']}/performance"
    perf = api.ok("GET", path, track.provider)
    assert api.ok("GET", path, track.trader) == perf
    assert perf["signals"] == 4 and perf["settled_signals"] == 3
    pnl = round(sum(t["profit"] for t in track.trades), 2)
    staked = round(sum(t["stake"] for t in track.trades), 2)
    assert perf["pnl"] == pnl and perf["staked"] == staked
    assert perf["roi"] == round(pnl / staked, 4)
    assert perf["subscribers"] == {"active": 3, "paused": 0, "total": 3}
    assert perf["latency_ms"]["samples"] == 12 and perf["latency_ms"]["p99"] is not None
    assert [p["pnl"] for p in perf["equity"]][-1] == pnl and len(perf["equity"]) == 3
    by_asset = {row["asset"]: row for row in perf["by_asset"]}
    assert {a: r["signals"] for a, r in by_asset.items()} == {"EURUSD": 2, "GBPUSD": 1}
    gbp = round(sum(t["profit"] for t in track.trades if t["asset"] == "GBPUSD"), 2)
    assert by_asset["GBPUSD"]["pnl"] == gbp
    assert perf["won"] + perf["lost"] + perf["refund"] == 3
    stranger = api.signup("provider")
    assert_error(api.call("GET", path, stranger), 403)
    assert_error(api.call("GET", path, track.subscribers[0]), 403)
    assert_error(api.call("GET", path), 401)
    assert_error(api.call("GET", f"/api/channels/{UNKNOWN_ID}/performance", stranger), 404)


def test_a_signals_trades_carry_each_subscribers_name(api: Api, track: Track) -> None:
    trades = api.ok("GET", f"/api/trades?signal_id={track.settled[0]}", track.provider)["items"]
    assert len(trades) == 3 and all(t["subscriber_name"] for t in trades)
    own = api.ok("GET", "/api/trades?mine=1", track.subscribers[0])["items"]
    assert own and all("subscriber_name" not in t for t in own)


# --- public pages ----------------------------------------------------------------------------


def test_the_public_directory_shows_public_figures_only(api: Api, track: Track) -> None:
    r = api.call("GET", "/api/public/channels")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["min_settled_signals"] == 20
    row = next(c for c in body["items"] if c["id"] == track.channel["id"])
    outcomes = _signal_outcomes(track)
    won, lost = outcomes.count("won"), outcomes.count("lost")
    assert row["settled_signals"] == 3 and row["won"] == won and row["lost"] == lost
    assert row["win_rate"] == (round(won / (won + lost), 4) if won + lost else None)
    assert row["copiers"] == 3 and row["provider_name"] == "Track Desk"
    assert row["brokers"] == ["deriv", "paper"] and row["ranked"] is False
    assert row["track_record_days"] == 0 and row["first_signal_at"]
    assert set(row) == {
        "id", "name", "description", "provider_name", "created_at", "assets", "brokers",
        "copiers", "settled_signals", "won", "lost", "win_rate", "result_per_unit",
        "first_signal_at", "track_record_days", "score", "ranked", "suspended",
    }  # fmt: skip
    assert row["suspended"] is False
    _assert_public(r, track)


def _signal_outcomes(track: Track) -> list[str]:
    """Each settled signal's outcome by the majority of its trades (ties: the sign of P/L)."""
    outcomes = []
    for signal_id in track.settled:
        trades = [t for t in track.trades if t["signal_id"] == signal_id]
        won = sum(t["outcome"] == "won" for t in trades)
        lost = sum(t["outcome"] == "lost" for t in trades)
        profit = sum(t["profit"] for t in trades)
        if won == lost:
            outcomes.append("refund" if profit == 0 else ("won" if profit > 0 else "lost"))
        else:
            outcomes.append("won" if won > lost else "lost")
    return outcomes


def _assert_public(r: httpx.Response, track: Track) -> None:
    """Nothing of a subscriber's, nor the provider's email, in a public answer."""
    for s in track.subscribers:
        assert s.id not in r.text and s.email not in r.text
    assert track.provider.email not in r.text and track.trader.email not in r.text
    for word in ('"stake"', '"balance"', '"subscriber', '"email"', '"traders"'):
        assert word not in r.text, word
    assert_no_secrets(r)


def test_directory_filters_and_sorts(api: Api, track: Track) -> None:
    def ids(query: str) -> list[str]:
        return [c["id"] for c in api.ok("GET", f"/api/public/channels{query}")["items"]]

    assert track.channel["id"] in ids("?asset=GBPUSD")
    assert track.channel["id"] not in ids("?asset=USDJPY")
    assert track.channel["id"] in ids("?broker=deriv")
    assert track.channel["id"] not in ids("?broker=nope")
    names = [c["name"].casefold() for c in api.ok("GET", "/api/public/channels?sort=name")["items"]]
    assert names == sorted(names)
    rows = api.ok("GET", "/api/public/channels?sort=copiers&order=desc")["items"]
    assert [r["copiers"] for r in rows] == sorted((r["copiers"] for r in rows), reverse=True)
    assert_error(api.call("GET", "/api/public/channels?sort=password"), 400, "invalid_sort")
    assert_error(api.call("GET", "/api/public/channels?order=up"), 400, "invalid_order")


def test_a_public_channel_page_never_shows_an_open_signal(api: Api, track: Track) -> None:
    path = f"/api/public/channels/{track.channel['id']}"
    r = api.call("GET", path)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["description"] == "Momentum." and page["settled_signals"] == 3
    assert len(page["equity"]) == 3 and page["latency_ms"]["p50"] is not None
    assert {row["asset"]: row["signals"] for row in page["by_asset"]} == {"EURUSD": 2, "GBPUSD": 1}
    _assert_public(r, track)
    r = api.call("GET", f"{path}/signals")
    signals = r.json()["items"]
    assert [s["id"] for s in signals] == list(reversed(track.settled))
    assert track.open_signal not in r.text and track.open_signal not in api.call("GET", path).text
    assert [s["outcome"] for s in reversed(signals)] == _signal_outcomes(track)
    _assert_public(r, track)
    assert api.ok("GET", f"{path}/signals?limit=1")["items"][0]["id"] == track.settled[-1]
    assert_error(api.call("GET", f"{path}/signals?limit=0"), 400, "invalid_limit")
    assert_error(api.call("GET", f"/api/public/channels/{UNKNOWN_ID}"), 404, "channel_not_found")


# --- subscribers -----------------------------------------------------------------------------


def test_a_subscriber_sees_its_subscriptions_with_their_state(api: Api, system: System) -> None:
    provider = api.signup("provider", display_name="Desk")
    channel = api.channel(provider, name="Trend")
    user, _, sub = api.subscriber(
        channel["id"], limits={"daily_loss_limit": 50, "max_trades_per_day": 3}
    )
    (listed,) = api.ok("GET", "/api/subscriptions", user)["items"]
    assert listed["channel_name"] == "Trend" and listed["provider_name"] == "Desk"
    assert (listed["state"], listed["state_reason"]) == ("active", None)

    counters = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    counters.hset(keys.daily(sub["id"], utc_day()), mapping={"trades": 1, "loss": 50})
    (listed,) = api.ok("GET", "/api/subscriptions", user)["items"]
    assert (listed["state"], listed["state_reason"]) == ("stopped", "daily_loss_limit")
    counters.delete(keys.daily(sub["id"], utc_day()))
    counters.close()

    paused = api.ok("PATCH", f"/api/subscriptions/{sub['id']}", user, json={"paused": True})
    assert (paused["state"], paused["state_reason"]) == ("paused", "paused")
    other = api.signup("subscriber")
    for who, status in ((other, 404), (provider, 403), (None, 401)):
        assert_error(api.call("PATCH", f"/api/subscriptions/{sub['id']}", who, json={}), status)
    foreign = api.account(other)
    r = api.call("PATCH", f"/api/subscriptions/{sub['id']}", user,
                 json={"broker_account_id": foreign["id"]})  # fmt: skip
    assert_error(r, 404, "broker_account_not_found")


async def test_removing_an_account_in_use_asks_first_then_pauses_what_uses_it(
    api: Api, system: System
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    user, account, sub = api.subscriber(channel["id"])
    path = f"/api/broker-accounts/{account['id']}"
    assert_error(api.call("DELETE", path, user), 409, "account_in_use")
    assert len(api.ok("GET", "/api/broker-accounts", user)["items"]) == 1
    other = api.signup("subscriber")
    assert_error(api.call("DELETE", f"{path}?confirm=1", other), 404)
    api.ok("DELETE", f"{path}?confirm=1", user, 204)
    assert api.ok("GET", "/api/broker-accounts", user)["items"] == []
    (listed,) = api.ok("GET", "/api/subscriptions", user)["items"]
    assert (listed["state"], listed["state_reason"]) == ("paused", "account_removed")

    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"], "EURUSD", "CALL", 60))
        await watcher.wait_for("the record", lambda: len(watcher.executions) == 1)
        assert watcher.executions[0]["status"] == "skipped"
        assert watcher.executions[0]["reason"] == "paused"
        assert watcher.executions[0]["signal_id"] == ack["signal_id"]
    finally:
        await watcher.close()

    fresh = api.account(user)
    moved = api.ok("PATCH", f"/api/subscriptions/{sub['id']}", user,
                   json={"broker_account_id": fresh["id"]})  # fmt: skip
    assert moved["broker_account_id"] == fresh["id"]
    assert (moved["state"], moved["paused"]) == ("active", False)


def test_accounts_show_balance_and_health_and_check_again(api: Api) -> None:
    user = api.signup("subscriber")
    body = {"broker": "paper", "starting_balance": 750, "label": "Practice"}
    r = api.call("POST", "/api/broker-accounts", user, json=body)
    assert r.status_code == 201, r.text
    account = r.json()
    assert account["label"] == "Practice"
    checked = api.ok("POST", f"/api/broker-accounts/{account['id']}/check", user)
    assert checked["balance"] == 750 and checked["health"]["status"] == "ok"
    assert checked["health"]["checked_at"]
    (listed,) = api.ok("GET", "/api/broker-accounts", user)["items"]
    assert listed["balance"] == 750
    other = api.signup("subscriber")
    assert_error(api.call("POST", f"/api/broker-accounts/{account['id']}/check", other), 404)
    for bad in ({"broker": "paper", "starting_balance": 0},
                {"broker": "paper", "starting_balance": 1e12}):  # fmt: skip
        assert_error(api.call("POST", "/api/broker-accounts", user, json=bad), 422)


def test_my_performance_is_my_own(api: Api, track: Track) -> None:
    me = track.subscribers[0]
    mine = [t for t in track.trades if t["subscriber_id"] == me.id]
    perf = api.ok("GET", "/api/me/performance", me)
    assert perf["settled"] >= len(mine) == 3
    assert perf["pnl"] == round(sum(t["profit"] for t in mine), 2)
    assert len(perf["equity"]) == 3
    stranger = api.signup("subscriber")
    assert api.ok("GET", "/api/me/performance", stranger)["trades"] == 0
    assert_error(api.call("GET", "/api/me/performance"), 401)


def test_brokers_say_what_connecting_needs(api: Api) -> None:
    brokers = {b["name"]: b for b in api.ok("GET", "/api/brokers")["items"]}
    assert brokers["deriv"]["credential_fields"] == ["token"]
    assert brokers["paper"]["credential_fields"] == []
    assert brokers["paper"]["min_stake"] <= brokers["paper"]["max_stake"]
    assert "EURUSD" in brokers["paper"]["assets"]


def test_readiness_counts_who_would_not_be_copied_and_why(api: Api, system: System) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    trader = api.signup("provider")
    api.add_trader(provider, channel["id"], trader)
    api.subscriber(channel["id"], stake={"mode": "fixed", "amount": 10})  # copyable
    pauser, _, paused = api.subscriber(channel["id"])
    api.ok("PATCH", f"/api/subscriptions/{paused['id']}", pauser, json={"paused": True})
    poor = api.signup("subscriber")
    small = api.ok("POST", "/api/broker-accounts", poor, 201,
                   json={"broker": "paper", "starting_balance": 3})  # fmt: skip
    api.ok("POST", f"/api/broker-accounts/{small['id']}/check", poor)  # the worker's balance
    stake = {"mode": "fixed", "amount": 5}
    api.ok("POST", f"/api/channels/{channel['id']}/subscribe", poor, 201,
           json={"broker_account_id": small["id"], "stake": stake})  # fmt: skip
    _, _, limited = api.subscriber(channel["id"], limits={"max_trades_per_day": 2})
    _, refused_account, _ = api.subscriber(channel["id"])
    client = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    client.hset(keys.daily(limited["id"], utc_day()), mapping={"trades": 2, "loss": 0})
    # What a worker's check records for a token the broker refuses (the real check is
    # test_api's refused Deriv token); here only the hub's count of it is under test.
    client.hset(keys.account_health(refused_account["id"]), mapping={"status": "refused"})
    client.close()

    path = f"/api/channels/{channel['id']}/readiness"
    ready = api.ok("GET", path, provider)
    assert ready["total"] == 5 and ready["copyable"] == 1
    assert ready["not_copyable"] == {
        "paused": 1, "token_refused": 1, "balance_below_stake": 1, "daily_limit_reached": 1,
    }  # fmt: skip
    assert api.ok("GET", path, trader)["copyable"] == 1
    assert_error(api.call("GET", path, api.signup("provider")), 403)
    assert_error(api.call("GET", path, poor), 403)
    assert_error(api.call("GET", path), 401)

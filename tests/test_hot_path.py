"""End to end through real processes: signup -> channel -> subscribe -> signal -> executions ->
trades -> settlement and stats, with every subscriber ending in exactly one record."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import redis as sync_redis

from tests.client import Api, User, live
from tests.procs import System, redis_url, wait_until


def signal(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": "EURUSD", "direction": "CALL",
            "expiry_seconds": 60, **extra}  # fmt: skip


def trades_of(api: Api, provider: User, signal_id: str, expected: int) -> list[dict[str, Any]]:
    """The signal's trade records, once the relay has written all ``expected`` of them."""
    found: list[dict[str, Any]] = []

    def all_written() -> bool:
        found[:] = api.ok("GET", f"/api/trades?signal_id={signal_id}", provider)["items"]
        return len(found) >= expected

    wait_until(all_written, timeout=15, what=f"{expected} trades of {signal_id}")
    return found


async def test_signal_reaches_every_subscriber_exactly_once(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscribers = [api.subscriber(channel["id"])[0] for _ in range(6)]
    watcher = await live(system.base_url, "/provider", provider)
    own_feed = await live(system.base_url, "/subscriber", subscribers[0])
    try:
        ack = await watcher.emit("signal", signal(channel["id"]))
        assert ack["ok"] is True, ack
        assert ack["fanout"] == {"total": 6, "by_broker": {"paper": 6}}

        await watcher.wait_for("6 executions", lambda: len(watcher.executions) >= 6)
        await own_feed.wait_for("own execution", lambda: len(own_feed.executions) >= 1)
        await asyncio.sleep(0.5)  # a duplicate would arrive within this
        per_subscriber = Counter(e["subscriber_id"] for e in watcher.executions)
        assert per_subscriber == Counter({s.id: 1 for s in subscribers})
        assert {e["status"] for e in watcher.executions} == {"placed"}
        assert all(e["signal_id"] == ack["signal_id"] for e in watcher.executions)
        assert all(e["stake"] == 10 and e["contract_id"] for e in watcher.executions)
        assert [e["subscriber_id"] for e in own_feed.executions] == [subscribers[0].id]
    finally:
        await watcher.close()
        await own_feed.close()

    trades = trades_of(api, provider, ack["signal_id"], 6)
    assert sorted(t["subscriber_id"] for t in trades) == sorted(s.id for s in subscribers)
    record = api.ok("GET", f"/api/signals/{ack['signal_id']}", provider)
    assert record["counts"]["placed"] == 6
    assert record["asset"] == "EURUSD" and record["direction"] == "CALL"
    mine = api.ok("GET", "/api/trades?mine=1", subscribers[1])["items"]
    assert [t["signal_id"] for t in mine] == [ack["signal_id"]]


async def test_resend_with_same_client_signal_id_copies_nothing_twice(
    system: System, api: Api
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    for _ in range(3):
        api.subscriber(channel["id"])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        first = await watcher.emit("signal", signal(channel["id"], client_signal_id="abc-1"))
        again = await watcher.emit("signal", signal(channel["id"], client_signal_id="abc-1"))
        assert first["ok"] and again == first
        other = await watcher.emit("signal", signal(channel["id"], client_signal_id="abc-2"))
        assert other["signal_id"] != first["signal_id"]
        await watcher.wait_for("6 executions", lambda: len(watcher.executions) >= 6)
        await asyncio.sleep(0.5)
        assert Counter(e["signal_id"] for e in watcher.executions) == {
            first["signal_id"]: 3,
            other["signal_id"]: 3,
        }
    finally:
        await watcher.close()


async def test_refusals_end_as_records_with_reasons(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    placed, _, _ = api.subscriber(channel["id"])
    poor, _, _ = api.subscriber(channel["id"], credentials={"starting_balance": 5})
    paused, _, paused_sub = api.subscriber(channel["id"])
    api.ok("PATCH", f"/api/subscriptions/{paused_sub['id']}", paused, json={"paused": True})
    loser, _, loser_sub = api.subscriber(channel["id"], limits={"daily_loss_limit": 50})
    capped, _, _ = api.subscriber(channel["id"], limits={"max_trades_per_day": 1})
    percent, _, _ = api.subscriber(channel["id"], stake={"mode": "percent", "percent": 2.5})
    # Today's realized loss of one subscriber, as settlement records it, already at the limit.
    from core import keys
    from core.clock import utc_day

    r = sync_redis.Redis.from_url(redis_url(system.db))
    r.hset(keys.daily(loser_sub["id"], utc_day()), "loss", 75)

    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"]))
        await watcher.wait_for("6 executions", lambda: len(watcher.executions) >= 6)
        second = await watcher.emit("signal", signal(channel["id"], direction="PUT"))
        await watcher.wait_for("12 executions", lambda: len(watcher.executions) >= 12)
    finally:
        await watcher.close()

    first = {
        e["subscriber_id"]: e for e in watcher.executions if e["signal_id"] == ack["signal_id"]
    }
    assert first[placed.id]["status"] == "placed"
    assert (first[poor.id]["status"], first[poor.id]["reason"]) == (
        "rejected",
        "insufficient_balance",
    )
    assert (first[paused.id]["status"], first[paused.id]["reason"]) == ("skipped", "paused")
    assert (first[loser.id]["status"], first[loser.id]["reason"]) == (
        "rejected",
        "daily_loss_limit",
    )
    assert first[capped.id]["status"] == "placed"
    assert first[percent.id]["status"] == "placed"
    assert first[percent.id]["stake"] == 250.0  # 2.5 % of the paper account's 10,000
    later = {
        e["subscriber_id"]: e for e in watcher.executions if e["signal_id"] == second["signal_id"]
    }
    assert (later[capped.id]["status"], later[capped.id]["reason"]) == (
        "rejected",
        "max_trades_per_day",
    )
    assert later[percent.id]["stake"] == 243.75  # 2.5 % of what the first purchase left

    counts = api.ok("GET", f"/api/signals/{ack['signal_id']}", provider)["counts"]
    wait_until(
        lambda: (
            api.ok("GET", f"/api/signals/{ack['signal_id']}", provider)["counts"]["placed"] == 3
        ),
        what="counts",
    )
    counts = api.ok("GET", f"/api/signals/{ack['signal_id']}", provider)["counts"]
    assert (counts["placed"], counts["rejected"], counts["skipped"]) == (3, 2, 1)


async def test_named_trader_may_send_and_others_may_not(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    api.subscriber(channel["id"])
    trader = api.signup("provider")
    stranger = api.signup("provider")
    api.add_trader(provider, channel["id"], trader)
    as_trader = await live(system.base_url, "/provider", trader)
    as_stranger = await live(system.base_url, "/provider", stranger)
    try:
        ack = await as_trader.emit("signal", signal(channel["id"]))
        assert ack["ok"] and ack["fanout"]["total"] == 1
        refused = await as_stranger.emit("signal", signal(channel["id"]))
        assert refused == {
            "ok": False,
            "error": {"code": "forbidden", "message": "You may not send signals to this channel."},
        }
        await as_trader.wait_for("execution", lambda: len(as_trader.executions) == 1)
        assert as_stranger.executions == []
        api.ok("DELETE", f"/api/channels/{channel['id']}/traders/{trader.id}", provider, 204)
        removed = await as_trader.emit("signal", signal(channel["id"]))
        assert removed["ok"] is False and removed["error"]["code"] == "forbidden"
    finally:
        await as_trader.close()
        await as_stranger.close()


async def test_bad_signals_get_clear_errors_and_fan_out_nothing(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider, assets=["EURUSD"])
    api.subscriber(channel["id"])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        cases = [
            ("not an object", "validation_error"),
            ({**signal(channel["id"]), "direction": "UP"}, "validation_error"),
            ({**signal(channel["id"]), "expiry_seconds": 3}, "validation_error"),
            ({**signal(channel["id"]), "asset": "NOPE"}, "unknown_asset"),
            ({**signal(channel["id"]), "asset": "GBPUSD"}, "asset_not_allowed"),
            ({**signal(channel["id"]), "surprise": 1}, "validation_error"),
            (signal("000000000000000000000000"), "channel_not_found"),
        ]
        for payload, code in cases:
            ack = await watcher.emit("signal", payload)
            assert ack["ok"] is False and ack["error"]["code"] == code, (payload, ack)
            assert ack["error"]["message"]
        await asyncio.sleep(0.5)
        assert watcher.executions == []
        assert api.ok("GET", f"/api/signals?channel_id={channel['id']}", provider)["items"] == []
    finally:
        await watcher.close()


async def test_socket_refuses_missing_or_forged_tokens(system: System, api: Api) -> None:
    """Refused by the hub, for the token's sake: the refusal carries the contract's error (a hub
    that is down, or any other failure to connect, would not)."""
    import socketio

    provider = api.signup("provider")
    cases = [(None, "missing_token"), ({"token": "nope"}, "invalid_token"),
             ({"token": provider.refresh_token}, "invalid_token")]  # fmt: skip
    for auth, code in cases:
        client = socketio.AsyncClient(reconnection=False)
        refusals: list[Any] = []
        client.on("connect_error", refusals.append, namespace="/provider")
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(system.base_url, namespaces=["/provider"], auth=auth,
                                     transports=["websocket"], wait_timeout=5)  # fmt: skip
        finally:
            await client.disconnect()
        # the hub's refusal (python-socketio passes it as its message), naming the code
        assert len(refusals) == 1 and code in str(refusals[0]), (auth, refusals)


async def test_settlement_updates_trades_stats_and_subscriber_feed(
    system: System, api: Api
) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subs = [api.subscriber(channel["id"])[0] for _ in range(3)]
    watcher = await live(system.base_url, "/provider", provider)
    feed = await live(system.base_url, "/subscriber", subs[0])
    try:
        ack = await watcher.emit("signal", signal(channel["id"], expiry_seconds=15))
        await watcher.wait_for("3 settlements", lambda: len(watcher.settlements) >= 3, timeout=40)
        await feed.wait_for("own settlement", lambda: len(feed.settlements) >= 1)
    finally:
        await watcher.close()
        await feed.close()
    for s in watcher.settlements:
        assert s["signal_id"] == ack["signal_id"]
        expected = {"won": 8.5, "lost": -10.0, "refund": 0.0}[s["outcome"]]
        assert s["profit"] == expected
    trades = trades_of(api, provider, ack["signal_id"], 3)
    wait_until(
        lambda: all(
            t["outcome"]
            for t in api.ok("GET", f"/api/trades?signal_id={ack['signal_id']}", provider)["items"]
        ),
        what="settled trades",
    )
    trades = api.ok("GET", f"/api/trades?signal_id={ack['signal_id']}", provider)["items"]
    outcomes = Counter(t["outcome"] for t in trades)
    stats = api.ok("GET", f"/api/channels/{channel['id']}/stats", provider)
    assert stats["signals"] == 1 and stats["subscribers"] == 3
    assert stats["settled_trades"] == 3
    decided = outcomes["won"] + outcomes["lost"]
    assert stats["win_rate"] == (round(outcomes["won"] / decided, 4) if decided else None)
    assert stats["pnl"] == round(sum(t["profit"] for t in trades), 2)
    assert stats["execution_latency_ms"]["samples"] == 3
    public = api.ok("GET", f"/api/channels/{channel['id']}/stats")
    assert "pnl" not in public and public["settled_trades"] == 3


async def test_mixed_brokers_place_settle_and_reach_the_broker_once(
    system: System, api: Api
) -> None:
    """Paper and Deriv subscribers of one channel: each broker sees exactly one purchase per
    subscriber, tagged with the trade, and every trade settles into the same events and stats."""
    import httpx

    provider = api.signup("provider")
    channel = api.channel(provider)
    for _ in range(2):
        api.subscriber(channel["id"])
    deriv = []
    for i in range(3):
        token = f"tok-{channel['id']}-{i}"
        account = {"token": token, "balance": 1000, "currency": "USD"}
        httpx.post(f"{system.sim_url}/_sim/accounts", json=account).raise_for_status()
        stake = {"mode": "fixed", "amount": 0.35 if i == 0 else 2}
        deriv.append(api.subscriber(channel["id"], stake, "deriv", {"token": token})[0])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"], asset="R_100", expiry_seconds=15))
        assert ack["fanout"] == {"total": 5, "by_broker": {"paper": 2, "deriv": 3}}
        await watcher.wait_for("5 executions", lambda: len(watcher.executions) >= 5)
        await watcher.wait_for("5 settlements", lambda: len(watcher.settlements) >= 5, timeout=45)
    finally:
        await watcher.close()
    by_user = {e["subscriber_id"]: e for e in watcher.executions}
    assert len(watcher.executions) == 5 and {e["status"] for e in by_user.values()} == {"placed"}
    assert {by_user[u.id]["broker"] for u in deriv} == {"deriv"}
    assert by_user[deriv[0].id]["stake"] == 0.35  # decimals kept all the way to the broker

    purchases = httpx.get(f"{system.sim_url}/_sim/purchases").json()["purchases"]
    mine = [p for p in purchases if str(p.get("token", "")).startswith(f"tok-{channel['id']}")]
    assert len(mine) == 3
    assert sorted(p["amount"] for p in mine) == [0.35, 2, 2]
    tagged = {str(p["passthrough"]) for p in mine}
    for user in deriv:  # the trade id is {signal}-{subscription}; the broker's tag names both
        signal_id, subscription_id = by_user[user.id]["trade_id"].split("-", 1)
        assert any(signal_id in t and subscription_id in t for t in tagged)

    assert {s["trade_id"] for s in watcher.settlements} == {
        e["trade_id"] for e in watcher.executions
    }
    wait_until(
        lambda: (
            api.ok("GET", f"/api/channels/{channel['id']}/stats", provider)["settled_trades"] == 5
        ),
        what="5 settled trades in the stats",
    )

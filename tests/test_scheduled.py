"""Scheduled signals (``at``) through the real hub and workers: recorded as scheduled, fanned
out at their instant and not before, cancellable until then; bad instants refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.client import Api, User, live
from tests.procs import System, wait_until


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def signal(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": "EURUSD", "direction": "PUT",
            "expiry_seconds": 60, **extra}  # fmt: skip


def history_entry(api: Api, provider: User, channel_id: str, signal_id: str) -> dict[str, Any]:
    items = api.ok("GET", f"/api/signals?channel_id={channel_id}", provider)["items"]
    return next(s for s in items if s["id"] == signal_id)


async def test_scheduled_signal_fans_out_at_its_instant(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    for _ in range(3):
        api.subscriber(channel["id"])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        when = at(1.5)
        ack = await watcher.emit("signal", signal(channel["id"], at=when))
        assert ack["ok"] and ack["status"] == "scheduled", ack
        assert ack["fanout"] == {"total": 0, "by_broker": {}}
        at_ms = ack["scheduled_ms"]
        assert abs(at_ms - datetime.fromisoformat(when).timestamp() * 1000) < 1

        wait_until(
            lambda: (
                history_entry(api, provider, channel["id"], ack["signal_id"])["status"]
                == "scheduled"
            ),
            what="the scheduled signal in the history",
        )
        entry = history_entry(api, provider, channel["id"], ack["signal_id"])
        assert entry["scheduled_at"].startswith(when[:19])

        await asyncio.sleep(max(0.0, (at_ms - 300) / 1000 - time.time()))
        assert watcher.executions == [], "bought before its instant"
        await watcher.wait_for("3 executions", lambda: len(watcher.executions) >= 3)
        assert {e["status"] for e in watcher.executions} == {"placed"}
        # latency counts from the instant it was scheduled for
        assert all(0 <= e["latency_ms"] < 2000 for e in watcher.executions)
    finally:
        await watcher.close()
    wait_until(
        lambda: history_entry(api, provider, channel["id"], ack["signal_id"])["status"] == "active",
        what="the fired signal in the history",
    )
    entry = history_entry(api, provider, channel["id"], ack["signal_id"])
    assert entry["fanout"]["total"] == 3 and entry["scheduled_at"].startswith(when[:19])


async def test_scheduled_signal_cancelled_before_its_instant(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    for _ in range(2):
        api.subscriber(channel["id"])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal(channel["id"], at=at(1.0)))
        assert ack["ok"], ack
        cancel = await watcher.emit("cancel", {"signal_id": ack["signal_id"]})
        assert cancel == {"ok": True, "signal_id": ack["signal_id"], "cancellable": 2}
        await asyncio.sleep(1.6)
        assert watcher.executions == []
    finally:
        await watcher.close()
    wait_until(
        lambda: (
            history_entry(api, provider, channel["id"], ack["signal_id"])["status"] == "cancelled"
        ),
        what="the cancelled signal in the history",
    )


async def test_bad_instants_are_refused_and_change_nothing(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    api.subscriber(channel["id"])
    watcher = await live(system.base_url, "/provider", provider)
    try:
        for bad in (at(-60), at(10 * 24 * 3600), "2026-01-01T10:00:00", "tomorrow", 12):
            ack = await watcher.emit("signal", signal(channel["id"], at=bad))
            assert ack["ok"] is False and ack["error"]["code"] == "validation_error", (bad, ack)
            assert "at" in ack["error"]["message"], ack
        await asyncio.sleep(0.3)
        assert watcher.executions == []
    finally:
        await watcher.close()
    assert api.ok("GET", f"/api/signals?channel_id={channel['id']}", provider)["items"] == []

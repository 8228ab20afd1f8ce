"""How many of a channel's subscribers would not be copied if the provider sent now, and why.

Read before a signal, never at signal time: the account health the workers keep current (token
refused at the last check, balance), the subscriptions' own state (paused) and today's risk
counters (a daily limit reached). Computed for a channel at most every :data:`TTL_S` seconds per
hub, in chunks of pipelined Redis reads, so a provider watching its dashboard costs little.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from core import keys
from core.clock import now_ms, utc_day
from core.shards import daily_counters
from signal_hub.hub import Hub

TTL_S = 5.0
CHUNK = 1000
REASONS = ("paused", "token_refused", "balance_below_stake", "daily_limit_reached")

_cache: dict[tuple[int, str], tuple[float, dict[str, Any]]] = {}


def _blocked(
    sub: dict[str, Any], health: dict[str, str], today: dict[str, str], min_stake: Decimal
) -> str | None:
    """Why ``sub`` would not be copied now (the first reason that applies), or None."""
    if sub.get("paused"):
        return "paused"
    if health.get("status") == "refused":
        return "token_refused"
    limits = sub.get("limits") or {}
    loss, trades = Decimal(today.get("loss") or 0), int(today.get("trades") or 0)
    if limits.get("daily_loss_limit") is not None and loss >= Decimal(
        str(limits["daily_loss_limit"])
    ):
        return "daily_limit_reached"
    if limits.get("max_trades_per_day") is not None and trades >= int(limits["max_trades_per_day"]):
        return "daily_limit_reached"
    if not health.get("balance"):
        return None  # never checked: not counted as a miss
    balance = Decimal(health["balance"])
    stake_cfg = sub["stake"]
    if stake_cfg["mode"] == "fixed":
        stake = Decimal(str(stake_cfg["amount"]))
    else:
        stake = balance * Decimal(str(stake_cfg["percent"])) / 100
    if limits.get("max_stake") is not None:
        stake = min(stake, Decimal(str(limits["max_stake"])))
    if stake > balance or stake < min_stake:
        return "balance_below_stake"
    return None


async def channel_readiness(hub: Hub, channel_id: str) -> dict[str, Any]:
    cached = _cache.get((id(hub), channel_id))
    if cached and time.monotonic() - cached[0] < TTL_S:
        return cached[1]
    subs = await hub.store.subscriptions.find(
        {"channel_id": channel_id},
        {"broker_account_id": 1, "broker": 1, "paused": 1, "stake": 1, "limits": 1},
    ).to_list()
    counts = dict.fromkeys(REASONS, 0)
    unchecked, oldest = 0, None
    day = utc_day()
    for start in range(0, len(subs), CHUNK):
        chunk = subs[start : start + CHUNK]
        async with hub.redis.pipeline(transaction=False) as pipe:
            for sub in chunk:
                pipe.hgetall(keys.account_health(sub["broker_account_id"] or ""))
                pipe.hgetall(keys.daily(sub["_id"], day))
            replies = await pipe.execute()
        if hub.shards.sharded:  # the counters are on each account's shard
            for i, today in enumerate(await daily_counters(hub.shards, chunk, day)):
                replies[2 * i + 1] = today
        for i, sub in enumerate(chunk):
            health, today = replies[2 * i], replies[2 * i + 1]
            if not health:
                unchecked += 1
            elif health.get("checked_ms"):
                checked = int(health["checked_ms"])
                oldest = checked if oldest is None else min(oldest, checked)
            caps = hub.brokers.get(sub["broker"])
            min_stake = caps["min_stake"] if caps else Decimal(0)
            reason = _blocked(sub, health, today, min_stake)
            if reason:
                counts[reason] += 1
    blocked = sum(counts.values())
    channel = await hub.store.channels.find_one({"_id": channel_id}, {"suspended": 1})
    result = {
        "channel_id": channel_id,
        "channel_suspended": bool(channel and channel.get("suspended")),
        "total": len(subs),
        "copyable": len(subs) - blocked,
        "not_copyable": counts,
        "unchecked": unchecked,
        "oldest_check_ms": oldest,
        "at_ms": now_ms(),
    }
    _cache[(id(hub), channel_id)] = (time.monotonic(), result)
    return result

"""Channel and signal statistics, computed from the trade records in the store."""

from __future__ import annotations

import statistics
from typing import Any

from signal_hub.store import Store

STATUSES = ("placed", "rejected", "skipped", "failed")
OUTCOMES = ("won", "lost", "refund")


def empty_counts() -> dict[str, int]:
    return dict.fromkeys((*STATUSES, *OUTCOMES), 0)


async def signal_counts(store: Store, signal_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per signal: how many trades ended in each status, and how placed ones settled."""
    counts = {signal_id: empty_counts() for signal_id in signal_ids}
    for field in ("status", "outcome"):
        cursor = await store.trades.aggregate(
            [
                {"$match": {"signal_id": {"$in": signal_ids}, field: {"$ne": None}}},
                {
                    "$group": {
                        "_id": {"signal": "$signal_id", "value": f"${field}"},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
        for row in await cursor.to_list():
            counts[row["_id"]["signal"]][row["_id"]["value"]] = row["n"]
    return counts


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


async def channel_stats(store: Store, channel_id: str, full: bool) -> dict[str, Any]:
    """Public: signals, subscribers, settled trades, win rate. The owner also gets P/L, latency."""
    signals = await store.signals.count_documents({"channel_id": channel_id})
    subscribers = await store.subscriptions.count_documents({"channel_id": channel_id})
    counts = empty_counts()
    cursor = await store.trades.aggregate(
        [
            {"$match": {"channel_id": channel_id}},
            {"$group": {"_id": {"status": "$status", "outcome": "$outcome"}, "n": {"$sum": 1}}},
        ]
    )
    for row in await cursor.to_list():
        counts[row["_id"]["status"]] += row["n"]
        if row["_id"].get("outcome"):
            counts[row["_id"]["outcome"]] += row["n"]
    decided = counts["won"] + counts["lost"]
    stats: dict[str, Any] = {
        "signals": signals,
        "subscribers": subscribers,
        "settled_trades": decided + counts["refund"],
        "win_rate": round(counts["won"] / decided, 4) if decided else None,
    }
    if not full:
        return stats
    cursor = await store.trades.aggregate(
        [
            {"$match": {"channel_id": channel_id, "profit": {"$ne": None}}},
            {"$group": {"_id": None, "pnl": {"$sum": "$profit"}, "staked": {"$sum": "$stake"}}},
        ]
    )
    totals = (await cursor.to_list()) or [{"pnl": 0.0, "staked": 0.0}]
    latencies = [
        float(t["latency_ms"])
        async for t in store.trades.find(
            {"channel_id": channel_id, "status": "placed"}, {"latency_ms": 1}
        )
        .sort("created_at", -1)
        .limit(5000)
    ]
    stats.update(
        counts=counts,
        pnl=round(totals[0]["pnl"], 2),
        staked_settled=round(totals[0]["staked"], 2),
        execution_latency_ms={
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "max": max(latencies) if latencies else None,
            "samples": len(latencies),
        },
    )
    return stats

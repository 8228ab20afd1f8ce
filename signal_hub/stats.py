"""Figures computed from the store: per-signal counts and results, channels' track records, a
provider's performance and a subscriber's own.

A signal's *result* is what its settled trades made per unit staked (``profit / staked``); its
*outcome* is won, lost or refund by the majority of those trades. A signal counts in a track
record only once its expiry has passed and some of its trades settled, so that no page shows an
open signal. Once every placed trade of a signal has settled (or an hour after its expiry) its
result is written on the signal's document and never computed again, so a track record costs a
read of signal documents plus an aggregation over the few signals still settling.

Every function reads a constant number of queries whatever the number of channels or signals.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne

from signal_hub.store import Store, utcnow

STATUSES = ("placed", "rejected", "skipped", "failed")
OUTCOMES = ("won", "lost", "refund")
FINAL_AFTER = timedelta(hours=1)  # after its expiry, a signal's result is final whatever is left
LATENCY_SAMPLES = 5000
WILSON_Z = 1.96  # 95 %


def empty_counts() -> dict[str, int]:
    return dict.fromkeys((*STATUSES, *OUTCOMES), 0)


async def _rows(store: Store, collection: Any, pipeline: list[dict[str, Any]]) -> list[Any]:
    cursor = await collection.aggregate(pipeline)
    rows: list[Any] = await cursor.to_list()
    return rows


async def signal_counts(store: Store, signal_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per signal: how many trades ended in each status, and how placed ones settled."""
    counts = {signal_id: empty_counts() for signal_id in signal_ids}
    for name in ("status", "outcome"):
        rows = await _rows(
            store,
            store.trades,
            [
                {"$match": {"signal_id": {"$in": signal_ids}, name: {"$ne": None}}},
                {
                    "$group": {
                        "_id": {"signal": "$signal_id", "value": f"${name}"},
                        "n": {"$sum": 1},
                    }
                },
            ],
        )
        for row in rows:
            counts[row["_id"]["signal"]][row["_id"]["value"]] = row["n"]
    return counts


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1]


def wilson_lower_bound(won: int, decided: int, z: float = WILSON_Z) -> float:
    """The lower bound of the Wilson score interval on a win rate: a short lucky streak scores
    low (3 of 3 is 0.44), a long good record scores near its rate (60 of 100 is 0.50)."""
    if decided == 0:
        return 0.0
    p = won / decided
    z2 = z * z
    centre = p + z2 / (2 * decided)
    spread = z * math.sqrt(p * (1 - p) / decided + z2 / (4 * decided * decided))
    return (centre - spread) / (1 + z2 / decided)


@dataclass(slots=True)
class SignalResult:
    """One signal of a track record, with what its settled trades made."""

    signal_id: str
    channel_id: str
    asset: str
    direction: str
    expiry_seconds: int
    created_at: datetime
    won: int = 0
    lost: int = 0
    refund: int = 0
    staked: float = 0.0
    profit: float = 0.0

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(seconds=self.expiry_seconds)

    @property
    def settled(self) -> bool:
        return self.won + self.lost + self.refund > 0

    @property
    def outcome(self) -> str | None:
        if not self.settled:
            return None
        if self.won == self.lost:
            return "refund" if self.profit == 0 else ("won" if self.profit > 0 else "lost")
        return "won" if self.won > self.lost else "lost"

    @property
    def result(self) -> float:
        """Net result per unit staked (0.85 = won 85 %, -1 = lost the stake)."""
        return self.profit / self.staked if self.staked else 0.0

    def document(self) -> dict[str, Any]:
        return {
            "won": self.won,
            "lost": self.lost,
            "refund": self.refund,
            "staked": self.staked,
            "profit": self.profit,
        }


async def signal_results(
    store: Store, channel_ids: list[str], now: datetime | None = None
) -> dict[str, list[SignalResult]]:
    """The expired signals of ``channel_ids`` with their results, oldest first, by channel."""
    now = now or utcnow()
    signals = (
        await store.signals.find(
            {"channel_id": {"$in": channel_ids}, "status": "active"},
            {
                "channel_id": 1,
                "asset": 1,
                "direction": 1,
                "expiry_seconds": 1,
                "created_at": 1,
                "result": 1,
            },
        )
        .sort("created_at", 1)
        .to_list()
    )
    results: list[SignalResult] = []
    pending: dict[str, SignalResult] = {}
    for doc in signals:
        result = SignalResult(
            doc["_id"], doc["channel_id"], doc["asset"], doc["direction"],
            int(doc["expiry_seconds"]), _aware(doc["created_at"]),
        )  # fmt: skip
        if result.expires_at > now:
            continue
        if doc.get("result") is not None:
            for name, value in doc["result"].items():
                setattr(result, name, value)
        else:
            pending[result.signal_id] = result
        results.append(result)
    if pending:
        await _settle_pending(store, pending, now)
    by_channel: dict[str, list[SignalResult]] = {c: [] for c in channel_ids}
    for result in results:
        by_channel[result.channel_id].append(result)
    return by_channel


async def _settle_pending(store: Store, pending: dict[str, SignalResult], now: datetime) -> None:
    """Fill in the results of signals not yet final, and write those that now are."""
    ids = list(pending)
    settled = await _rows(
        store,
        store.trades,
        [
            {"$match": {"signal_id": {"$in": ids}, "outcome": {"$ne": None}}},
            {
                "$group": {
                    "_id": {"signal": "$signal_id", "outcome": "$outcome"},
                    "n": {"$sum": 1},
                    "staked": {"$sum": "$stake"},
                    "profit": {"$sum": "$profit"},
                }
            },
        ],
    )
    for row in settled:
        result = pending[row["_id"]["signal"]]
        setattr(result, row["_id"]["outcome"], row["n"])
        result.staked += float(row["staked"] or 0)
        result.profit += float(row["profit"] or 0)
    open_rows = await _rows(
        store,
        store.trades,
        [
            {"$match": {"signal_id": {"$in": ids}, "status": "placed", "outcome": None}},
            {"$group": {"_id": "$signal_id", "n": {"$sum": 1}}},
        ],
    )
    still_open = {row["_id"] for row in open_rows}
    final = [
        UpdateOne({"_id": r.signal_id}, {"$set": {"result": r.document()}})
        for r in pending.values()
        if r.signal_id not in still_open or r.expires_at + FINAL_AFTER < now
    ]
    if final:
        await store.signals.bulk_write(final, ordered=False)


def _aware(moment: datetime) -> datetime:
    """The embedded store hands back naive UTC datetimes, MongoDB aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


@dataclass
class TrackRecord:
    """A channel's public figures, from its settled signals."""

    settled_signals: int = 0
    won: int = 0
    lost: int = 0
    refund: int = 0
    result_per_unit: float | None = None
    first_signal_at: datetime | None = None
    equity: list[dict[str, Any]] = field(default_factory=list)
    by_asset: list[dict[str, Any]] = field(default_factory=list)

    @property
    def win_rate(self) -> float | None:
        decided = self.won + self.lost
        return round(self.won / decided, 4) if decided else None

    @property
    def score(self) -> float:
        return round(wilson_lower_bound(self.won, self.won + self.lost), 4)


def track_record(results: Iterable[SignalResult]) -> TrackRecord:
    settled = [r for r in results if r.settled]
    record = TrackRecord(settled_signals=len(settled))
    if not settled:
        return record
    record.first_signal_at = settled[0].created_at
    cumulative = 0.0
    assets: dict[str, list[SignalResult]] = defaultdict(list)
    for r in settled:
        outcome = r.outcome
        record.won += outcome == "won"
        record.lost += outcome == "lost"
        record.refund += outcome == "refund"
        cumulative += r.result
        record.equity.append({"t": r.expires_at, "result": round(cumulative, 4)})
        assets[r.asset].append(r)
    record.result_per_unit = round(cumulative / len(settled), 4)
    for asset, rows in sorted(assets.items()):
        won = sum(r.outcome == "won" for r in rows)
        lost = sum(r.outcome == "lost" for r in rows)
        record.by_asset.append(
            {
                "asset": asset,
                "signals": len(rows),
                "won": won,
                "lost": lost,
                "refund": len(rows) - won - lost,
                "win_rate": round(won / (won + lost), 4) if won + lost else None,
                "result_per_unit": round(sum(r.result for r in rows) / len(rows), 4),
            }
        )
    return record


async def latency_ms(store: Store, query: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of the execution latency (signal to the broker's acceptance) of the newest
    placed trades matching ``query``."""
    latencies = [
        float(t["latency_ms"])
        for t in await store.trades.find(
            {**query, "status": "placed", "latency_ms": {"$ne": None}}, {"latency_ms": 1}
        )
        .sort("created_at", -1)
        .limit(LATENCY_SAMPLES)
        .to_list()
    ]
    return {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies) if latencies else None,
        "samples": len(latencies),
    }


async def copiers(store: Store, channel_ids: list[str]) -> dict[str, dict[str, int]]:
    """Active and paused subscriptions per channel."""
    counts = {c: {"active": 0, "paused": 0} for c in channel_ids}
    rows = await _rows(
        store,
        store.subscriptions,
        [
            {"$match": {"channel_id": {"$in": channel_ids}}},
            {"$group": {"_id": {"c": "$channel_id", "p": "$paused"}, "n": {"$sum": 1}}},
        ],
    )
    for row in rows:
        counts[row["_id"]["c"]]["paused" if row["_id"].get("p") else "active"] += row["n"]
    return counts


async def channel_stats(
    store: Store, channel_ids: list[str], full: bool
) -> dict[str, dict[str, Any]]:
    """The ``stats`` of ``GET /api/channels[/{id}]`` per channel, in a constant number of
    queries. Public: signals, subscribers, settled trades, win rate. Full (the owner): also
    counts, P/L and execution latency."""
    signals = await _rows(
        store,
        store.signals,
        [
            {"$match": {"channel_id": {"$in": channel_ids}}},
            {"$group": {"_id": "$channel_id", "n": {"$sum": 1}}},
        ],
    )
    trades = await _rows(
        store,
        store.trades,
        [
            {"$match": {"channel_id": {"$in": channel_ids}}},
            {
                "$group": {
                    "_id": {"c": "$channel_id", "status": "$status", "outcome": "$outcome"},
                    "n": {"$sum": 1},
                    "staked": {"$sum": "$stake"},
                    "profit": {"$sum": "$profit"},
                }
            },
        ],
    )
    subscribers = await copiers(store, channel_ids)
    stats: dict[str, dict[str, Any]] = {}
    counts = {c: empty_counts() for c in channel_ids}
    money = {c: [0.0, 0.0] for c in channel_ids}  # P/L and stake of settled trades
    for row in trades:
        key = row["_id"]
        counts[key["c"]][key["status"]] += row["n"]
        if key.get("outcome"):
            counts[key["c"]][key["outcome"]] += row["n"]
            money[key["c"]][0] += float(row["profit"] or 0)
            money[key["c"]][1] += float(row["staked"] or 0)
    signal_totals = {row["_id"]: row["n"] for row in signals}
    for channel_id in channel_ids:
        c = counts[channel_id]
        decided = c["won"] + c["lost"]
        stats[channel_id] = {
            "signals": signal_totals.get(channel_id, 0),
            "subscribers": sum(subscribers[channel_id].values()),
            "settled_trades": decided + c["refund"],
            "win_rate": round(c["won"] / decided, 4) if decided else None,
        }
        if full:
            stats[channel_id].update(
                counts=c,
                pnl=round(money[channel_id][0], 2),
                staked_settled=round(money[channel_id][1], 2),
                execution_latency_ms=await latency_ms(store, {"channel_id": channel_id}),
            )
    return stats

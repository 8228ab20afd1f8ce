"""The results relay: from the results stream to the live rooms and the store.

Workers publish every signal, execution and settlement record to one Redis stream. Each hub reads
it through a consumer group, so several hubs share the work and a record stays pending until the
hub that took it has emitted it and written it to the store. Only then is it acknowledged and
deleted. A hub that dies leaves its pending records to be claimed by another (or by itself on
restart); the store writes are idempotent upserts keyed by the record's id, so a record handled
twice is written once. Nothing in flight is lost on a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from pymongo import UpdateOne
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from signal_hub import keys
from signal_hub.hub import Hub
from signal_hub.sockets import channel_room, user_room

READ_COUNT = 1000
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000

EXECUTION_FIELDS = (
    "signal_id", "trade_id", "subscriber_id", "broker", "status", "reason", "contract_id",
    "stake", "payout", "latency_ms", "channel_id", "asset", "direction", "expiry_seconds",
)  # fmt: skip
SETTLEMENT_FIELDS = ("signal_id", "trade_id", "subscriber_id", "channel_id", "outcome", "profit")


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def ensure_group(redis: Redis) -> None:
    try:
        await redis.xgroup_create(keys.RESULTS, keys.RESULTS_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Relay:
    def __init__(self, hub: Hub, consumer: str) -> None:
        self.hub = hub
        self.redis = hub.redis
        self.consumer = consumer

    async def run(self) -> None:
        await ensure_group(self.redis)
        await self._drain_pending()
        while True:
            try:
                await self._claim_abandoned()
                reply: Any = await self.redis.xreadgroup(
                    keys.RESULTS_GROUP,
                    self.consumer,
                    {keys.RESULTS: ">"},
                    count=READ_COUNT,
                    block=BLOCK_MS,
                )
                for _, entries in reply or []:
                    await self.handle(entries)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("relay pass failed; retrying")
                await asyncio.sleep(0.5)

    async def _drain_pending(self) -> None:
        """Records this consumer took before a restart and never acknowledged."""
        while True:
            reply: Any = await self.redis.xreadgroup(
                keys.RESULTS_GROUP, self.consumer, {keys.RESULTS: "0"}, count=READ_COUNT
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self.handle(entries)

    async def _claim_abandoned(self) -> None:
        """Records another hub took and left unacknowledged for too long (it died)."""
        claimed: Any = await self.redis.xautoclaim(
            keys.RESULTS,
            keys.RESULTS_GROUP,
            self.consumer,
            min_idle_time=CLAIM_IDLE_MS,
            count=READ_COUNT,
        )
        entries = claimed[1]
        if entries:
            await self.handle(entries)

    async def handle(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _, fields in entries:
            if fields and "data" in fields:
                by_kind[fields["kind"]].append(json.loads(fields["data"]))
        await self._emit(by_kind.get("execution", []), by_kind.get("settlement", []))
        await self._persist(by_kind)
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(keys.RESULTS, keys.RESULTS_GROUP, *ids)
            pipe.xdel(keys.RESULTS, *ids)
            await pipe.execute()

    async def _emit(
        self, executions: list[dict[str, Any]], settlements: list[dict[str, Any]]
    ) -> None:
        for event, records, fields in (
            ("execution", executions, EXECUTION_FIELDS),
            ("settlement", settlements, SETTLEMENT_FIELDS),
        ):
            by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
            by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in records:
                payload = {f: record.get(f) for f in fields}
                by_channel[record["channel_id"]].append(payload)
                if record.get("subscriber_id"):
                    by_user[record["subscriber_id"]].append(payload)
            sio = self.hub.sio
            for channel_id, payloads in by_channel.items():
                await sio.emit(
                    event, payloads, room=channel_room(channel_id), namespace="/provider"
                )
            for user_id, payloads in by_user.items():
                await sio.emit(event, payloads, room=user_room(user_id), namespace="/subscriber")

    async def _persist(self, by_kind: dict[str, list[dict[str, Any]]]) -> None:
        store = self.hub.store
        signal_ops = [
            UpdateOne({"_id": s["id"]}, {"$set": signal_document(s)}, upsert=True)
            for s in by_kind.get("signal", [])
        ]
        status_ops = [
            UpdateOne({"_id": s["signal_id"]}, {"$set": {"status": s["status"]}})
            for s in by_kind.get("signal_status", [])
        ]
        trade_ops = [
            UpdateOne({"_id": e["trade_id"]}, {"$set": trade_document(e)}, upsert=True)
            for e in by_kind.get("execution", [])
        ] + [
            UpdateOne({"_id": s["trade_id"]}, {"$set": settlement_fields(s)}, upsert=True)
            for s in by_kind.get("settlement", [])
        ]
        if signal_ops or status_ops:
            await store.signals.bulk_write(signal_ops + status_ops, ordered=True)
        if trade_ops:
            await store.trades.bulk_write(trade_ops, ordered=False)


def signal_document(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel_id": record["channel_id"],
        "sender_id": record["sender_id"],
        "asset": record["asset"],
        "direction": record["direction"],
        "expiry_seconds": record["expiry_seconds"],
        "client_signal_id": record.get("client_signal_id") or None,
        "created_at": ms_to_datetime(record["created_ms"]),
        "deadline_at": ms_to_datetime(record["deadline_ms"]),
        "fanout": record["fanout"],
        "status": record.get("status", "active"),
    }


def trade_document(record: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in record.items() if k not in ("trade_id", "executed_ms")}
    doc.pop("signal_created_ms", None)
    doc["created_at"] = ms_to_datetime(record["executed_ms"])
    return doc


def settlement_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "signal_id": record["signal_id"],
        "channel_id": record["channel_id"],
        "subscriber_id": record["subscriber_id"],
        "outcome": record["outcome"],
        "profit": record["profit"],
        "settled_at": ms_to_datetime(record["settled_ms"]),
    }

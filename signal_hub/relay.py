"""The results relay: from the results stream to the live rooms and the store.

Workers publish every signal, execution and settlement record (:mod:`core.records`) to one Redis
stream (a worker's batch of executions as one entry holding a list). Each hub reads it through a
consumer group, so several hubs share the work and a record stays pending until the hub that took
it has written it to the store and then emitted it: the live feed never shows a trade that ``GET
/api/trades`` does not have yet. Only then is it acknowledged and deleted. A hub killed between the
two is taken over and its records emitted again; events carry ``trade_id``, so a client drops a
repeat. Each hub keeps a heartbeat key; the pending records of a consumer whose heartbeat is gone
(a hub that was killed) are claimed by one live hub within a second (a short lock in Redis says
which), and any record idle too long is claimed anyway. The store writes are idempotent upserts
keyed by the record's id, so a record handled twice is written once. A subscriber's own events go
only to subscribers connected to some hub (``presence.py``). On SIGTERM the relay finishes the
batch in hand (written, acknowledged) and stops. Nothing in flight is lost on a restart.

With several hot-path shards (:mod:`core.shards`) each shard has its own results stream (the
workers' scripts write a record with the state it ends, on one shard) and the hub runs one relay
per shard; heartbeats and presence stay on ``REDIS_URL``.

Once a slice is acknowledged its copies are counted (:func:`signal_hub.metrics.count_results`):
the relay is where every terminal record passes, once per hub that handles it. Copies that failed
are logged per signal and reason; with ``LOG_LEVEL=DEBUG`` every record is, with its
``signal_id`` and ``trade_id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from loguru import logger
from pymongo import UpdateOne
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core import keys, records
from core.shards import Shard
from signal_hub import metrics
from signal_hub.hub import Hub
from signal_hub.sockets import channel_room, user_room

READ_COUNT = 1000  # entries; a worker's entry holds a batch of records
SLICE_RECORDS = 250  # written and acknowledged together, then the event loop gets a turn
BLOCK_MS = 500
HOUSEKEEPING_S = 1.0
CLAIM_IDLE_MS = 30_000
HEARTBEAT_MS = 5_000
TAKEOVER_MS = 30_000  # a hub that dies while taking over leaves it to another after this


async def ensure_group(redis: Redis, stream: str = keys.RESULTS) -> None:
    try:
        await redis.xgroup_create(stream, keys.RESULTS_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def live_hubs(redis: Redis, home: Shard, but: str) -> list[str]:
    """The other hubs whose relay is running (its heartbeat, on ``redis``, is there), ``but``
    this one; every hub reads the home shard's results stream."""
    results = home.key(keys.RESULTS)
    await ensure_group(home.redis, results)
    consumers: Any = await home.redis.xinfo_consumers(results, keys.RESULTS_GROUP)
    names = [str(c["name"]) for c in consumers if str(c["name"]) != but]
    beats = [await redis.exists(keys.hub_heartbeat(name)) for name in names]
    return [name for name, beat in zip(names, beats, strict=True) if beat]


class Relay:
    def __init__(self, hub: Hub, consumer: str, shard: Shard | None = None) -> None:
        """``shard``: relay that shard's results stream (default: ``REDIS_URL``'s)."""
        self.hub = hub
        self.shard = shard or Shard(hub.redis)  # unsharded: REDIS_URL, the keys as they are
        self.redis = self.shard.redis
        self.results = self.shard.key(keys.RESULTS)
        self._transaction = not self.shard.cluster  # a cluster client has no MULTI
        self.consumer = consumer
        self._stopping = asyncio.Event()
        self._per_record = hub.settings.log_level.upper() in ("DEBUG", "TRACE")

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        await ensure_group(self.redis, self.results)
        await self._beat()
        await self._drain_pending()
        housekept = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() - housekept >= HOUSEKEEPING_S:
                    await self._beat()
                    await self._claim_from_dead_hubs()
                    await self._claim_abandoned()
                    housekept = time.monotonic()
                reply: Any = await self.redis.xreadgroup(
                    keys.RESULTS_GROUP,
                    self.consumer,
                    {self.results: ">"},
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
        await self.hub.redis.delete(keys.hub_heartbeat(self.consumer))

    async def _beat(self) -> None:
        await self.hub.redis.set(keys.hub_heartbeat(self.consumer), "1", px=HEARTBEAT_MS)

    async def _drain_pending(self) -> None:
        """Records this consumer took before a restart and never acknowledged."""
        while True:
            reply: Any = await self.redis.xreadgroup(
                keys.RESULTS_GROUP, self.consumer, {self.results: "0"}, count=READ_COUNT
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self.handle(entries)

    async def _claim_from_dead_hubs(self) -> None:
        """The pending records of consumers whose heartbeat is gone, taken over now, each dead
        consumer by one live hub: every hub looks each second, and two that both claimed the
        same records would both emit them."""
        consumers: Any = await self.redis.xinfo_consumers(self.results, keys.RESULTS_GROUP)
        for consumer in consumers:
            name = str(consumer["name"])
            if name == self.consumer:
                continue
            if await self.hub.redis.exists(keys.hub_heartbeat(name)):
                continue
            # one lock per dead hub and results stream (a shard's, on that shard)
            taking = self.shard.key(keys.hub_takeover(name))
            if not await self.redis.set(taking, self.consumer, nx=True, px=TAKEOVER_MS):
                continue  # another hub is at it
            await self._take_over(name)
            await self.redis.delete(taking)

    async def _take_over(self, name: str) -> None:
        while True:
            pending: Any = await self.redis.xpending_range(
                self.results, keys.RESULTS_GROUP, "-", "+", READ_COUNT, consumername=name
            )
            if not pending:
                break
            ids = [p["message_id"] for p in pending]
            entries: Any = await self.redis.xclaim(
                self.results, keys.RESULTS_GROUP, self.consumer, 0, ids
            )
            logger.warning("taking over {} results of dead hub {}", len(ids), name)
            live = [(i, f) for i, f in entries if f]
            if live:
                await self.handle(live)
            gone = {i for i, _ in live} ^ set(ids)
            if gone:  # deleted from the stream meanwhile: nothing to write
                await self.redis.xack(self.results, keys.RESULTS_GROUP, *gone)
        await self.hub.presence.forget(name)  # first: forgetting twice is harmless
        await self.redis.xgroup_delconsumer(self.results, keys.RESULTS_GROUP, name)

    async def _claim_abandoned(self) -> None:
        """Records another hub took and left unacknowledged for too long (it died)."""
        claimed: Any = await self.redis.xautoclaim(
            self.results,
            keys.RESULTS_GROUP,
            self.consumer,
            min_idle_time=CLAIM_IDLE_MS,
            count=READ_COUNT,
        )
        entries = claimed[1]
        if entries:
            await self.handle(entries)

    async def handle(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Emit, store and acknowledge ``entries``, in slices of about :data:`SLICE_RECORDS`
        records, so that a long backlog never holds the event loop (and signal acks) for long."""
        ids: list[str] = []
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        held = 0
        for entry_id, fields in entries:
            ids.append(entry_id)
            if fields and "data" in fields:
                records = records_of(fields)
                by_kind[fields["kind"]] += records
                held += len(records)
            if held >= SLICE_RECORDS:
                await self._write(ids, by_kind)
                ids, by_kind, held = [], defaultdict(list), 0
                await asyncio.sleep(0)
        if ids:
            await self._write(ids, by_kind)

    async def _write(self, ids: list[str], by_kind: dict[str, list[dict[str, Any]]]) -> None:
        await self._persist(by_kind)
        await self._emit(by_kind.get("execution", []), by_kind.get("settlement", []))
        await self._emit_signals(by_kind.get("signal", []), by_kind.get("signal_status", []))
        async with self.redis.pipeline(transaction=self._transaction) as pipe:
            pipe.xack(self.results, keys.RESULTS_GROUP, *ids)
            pipe.xdel(self.results, *ids)
            await pipe.execute()
        executions = by_kind.get("execution", [])
        metrics.count_results(
            executions, by_kind.get("settlement", []), by_kind.get("signal_status", [])
        )
        self._log(executions)

    def _log(self, executions: list[dict[str, Any]]) -> None:
        """Failed copies, a line per signal, broker and reason; every record at DEBUG."""
        if self._per_record:
            for r in executions:
                with logger.contextualize(signal_id=r["signal_id"], trade_id=r["trade_id"]):
                    reason = f" ({r['reason']})" if r.get("reason") else ""
                    logger.debug(
                        "{}{} on {} after {} ms", r["status"], reason, r["broker"], r["latency_ms"]
                    )
        failed: dict[tuple[str, str, str], int] = defaultdict(int)
        for r in executions:
            if r["status"] == "failed":
                failed[(r["signal_id"], r["broker"], r.get("reason") or "")] += 1
        for (signal_id, broker, reason), n in failed.items():
            with logger.contextualize(signal_id=signal_id, broker=broker):
                logger.warning("{} copies of {} failed on {}: {}", n, signal_id, broker, reason)

    async def _emit(
        self, executions: list[dict[str, Any]], settlements: list[dict[str, Any]]
    ) -> None:
        events: tuple[tuple[str, list[dict[str, Any]], Callable[..., dict[str, Any]]], ...] = (
            ("execution", executions, records.execution_event),
            ("settlement", settlements, records.settlement_event),
        )
        for event, batch, event_of in events:
            by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
            by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in batch:
                payload = event_of(record)
                by_channel[record["channel_id"]].append(payload)
                if record.get("subscriber_id"):
                    by_user[record["subscriber_id"]].append(payload)
            sio = self.hub.sio
            for channel_id, payloads in by_channel.items():
                await sio.emit(
                    event, payloads, room=channel_room(channel_id), namespace="/provider"
                )
            for user_id in await self.hub.presence.online(list(by_user)):
                await sio.emit(
                    event, by_user[user_id], room=user_room(user_id), namespace="/subscriber"
                )

    async def _emit_signals(
        self, signals: list[dict[str, Any]], statuses: list[dict[str, Any]]
    ) -> None:
        """``signal`` to the channel's room: fanned out, scheduled, cancelled, rejected."""
        for record in signals:
            await self.hub.sio.emit(
                "signal",
                records.signal_event(record),
                room=channel_room(record["channel_id"]),
                namespace="/provider",
            )
        for record in statuses:
            if record.get("channel_id"):
                await self.hub.sio.emit(
                    "signal", record, room=channel_room(record["channel_id"]), namespace="/provider"
                )

    async def _persist(self, by_kind: dict[str, list[dict[str, Any]]]) -> None:
        store = self.hub.store
        signal_ops = [
            _upsert(s["id"], records.signal_document(s)) for s in by_kind.get("signal", [])
        ]
        status_ops = [
            UpdateOne(
                {"_id": s["signal_id"]},
                {"$set": {k: v for k, v in s.items() if k in ("status", "reason")}},
            )
            for s in by_kind.get("signal_status", [])
        ]
        trade_ops = [
            _upsert(record["trade_id"], document(record))
            for kind, document in _TRADE_DOCUMENTS.items()
            for record in by_kind.get(kind, [])
        ]
        if signal_ops or status_ops:
            await store.signals.bulk_write(signal_ops + status_ops, ordered=True)
        if trade_ops:
            await store.trades.bulk_write(trade_ops, ordered=False)


def records_of(fields: dict[str, str]) -> list[dict[str, Any]]:
    """The records of one stream entry: a JSON object, or a list (a worker's batch)."""
    data = orjson.loads(fields["data"])
    return data if isinstance(data, list) else [data]


def _upsert(_id: str, fields: dict[str, Any]) -> UpdateOne:
    return UpdateOne({"_id": _id}, {"$set": fields}, upsert=True)


# What each kind of record sets on its trade.
_TRADE_DOCUMENTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "execution": records.trade_document,
    "settlement": records.settlement_document,
    "settlement_failed": records.settlement_failure_document,
}

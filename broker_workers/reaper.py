"""The reaper: finishes what dead workers left and ends work no one will do in time.

``python -m broker_workers.reaper`` (the Procfile's ``reaper``). RQ's own abandoned-job handling
waits for the job timeout; a purchase cannot wait that long, so every ``REAPER_INTERVAL_MS``:

1. **Adopt.** For each worker whose heartbeat lapsed, release its claims (``release.lua``): unsent
   subscribers go back to the work set (or end ``skipped`` when cancelled or too late), sent ones,
   bought or not, become orphans.
2. **Reconcile.** An orphan is taken once its signal's deadline is ``RECONCILE_AFTER_MS`` behind
   us. No worker sends after the deadline (the gate, the adapters and the paper broker all refuse),
   so the broker's answer is then final: the purchase it finds ends ``placed``, with the broker's
   own details; none ends ``skipped``/``expired``. A broker that cannot answer is asked again.
3. **Expire.** Work of a signal whose deadline passed ends ``skipped``/``expired``.
4. **Redrive.** A work set that stopped shrinking before its deadline (the hub died before
   enqueueing its drain jobs, a worker died holding the only one) gets a new drain job.

Every step is one atomic script or safe to repeat, so several reapers may run. With several
hot-path shards (:mod:`core.shards`) every step runs on every shard, and a dead worker leaves the
registry once its claims on every shard are released.

Why adopting and reconciling cannot come too early for a worker that is alive but cut off (DESIGN
invariant 6; :mod:`broker_workers.fencing`, and the arithmetic in docs/failover.md, "A worker
host cut off"): a worker's lease key expires in Redis at least ``LEASE_MARGIN_MS`` after the
worker's own local deadline, past which it sends nothing and has reset its connections; so when
the key is gone, everything that worker will ever send has reached the broker (its one-way trip
within the margin), and an orphan is reconciled later still, after its signal's deadline plus
``RECONCILE_AFTER_MS``.

Each action is counted (``ctc_reaper_actions_total`` by kind, in subscribers, on the reaper's own
``/metrics``) and recorded in a capped list the admin console reads (``keys.REAPER_ACTIONS``: kind,
signal, broker, subscribers, time).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
from loguru import logger

from broker_workers.accounts import AccountBook
from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import BrokerAdapter, BrokerError
from broker_workers.claims import ClaimBook, recorded_contracts
from broker_workers.metrics import Metered, ReaperAction, reaper_acted, reaper_series, serve
from broker_workers.process import order_for
from broker_workers.settings import WorkerSettings, get_settings
from core import keys, scripts
from core.brokers import broker as catalogue_entry
from core.clock import now_ms, utc_day
from core.connections import redis_client
from core.dispatch import Dispatcher
from core.logs import configure_logging
from core.records import SignalInfo
from core.scripts import Claimed, Terminal
from core.shards import Shard, open_shards

EXPIRE_PER_PASS = 50
ORPHAN_LEASE_MS = 10_000
ORPHANS_PER_PASS = 200


class Reaper:
    def __init__(self, settings: WorkerSettings, name: str = "reaper") -> None:
        self.settings = settings
        self.name = name
        self.redis = redis_client(settings.redis_url)
        self.dispatcher = Dispatcher(settings.redis_url, settings.drain_batch_size)
        self._adapters: dict[str, BrokerAdapter] = {}
        self._accounts = {
            b: AccountBook(
                self.redis,
                b,
                settings.broker_credentials_key,
                catalogue_entry(b).capabilities["currency"],
            )
            for b in settings.brokers
        }
        self.shards = open_shards(settings, self.redis)
        # (shard, active member) -> (work size, since ms)
        self._sizes: dict[tuple[int, str], tuple[int, int]] = {}

    async def run(self) -> None:
        logger.info("reaper running every {} ms", self.settings.reaper_interval_ms)
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reaper pass failed; retrying")
            await asyncio.sleep(self.settings.reaper_interval_ms / 1000)

    async def run_once(self) -> None:
        for broker in self.settings.brokers:
            await self.adopt(broker)
        for shard in self.shards:
            await self.reconcile(shard)
            await self.expire(shard)
        await self.redrive()

    def _job_shard(self, shard: Shard) -> int | None:
        """The shard a drain job names (none, unsharded)."""
        return shard.index if self.shards.sharded else None

    async def _acted(
        self,
        kind: ReaperAction,
        signal_id: str,
        broker: str,
        subscribers: int,
        worker: str | None = None,
    ) -> None:
        """Count an action and keep it in the console's list of recent actions."""
        reaper_acted(kind, subscribers)
        entry: dict[str, Any] = {"kind": kind, "signal_id": signal_id, "broker": broker,
                                 "subscribers": subscribers, "at_ms": now_ms()}  # fmt: skip
        if worker is not None:
            entry["worker"] = worker
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.REAPER_ACTIONS, orjson.dumps(entry))
            pipe.ltrim(keys.REAPER_ACTIONS, 0, keys.REAPER_ACTIONS_KEPT - 1)
            await pipe.execute()

    async def adopt(self, broker: str) -> None:
        workers: Any = await self.redis.smembers(keys.workers(broker))
        for worker_id in workers:
            if await self.redis.exists(keys.worker_heartbeat(worker_id)):
                continue
            left = 0
            for shard in self.shards:
                left += await self._adopt_on(shard, broker, worker_id)
            if not left:  # else a shard's heartbeat still lived: the next pass
                await self.redis.srem(keys.workers(broker), worker_id)

    async def _adopt_on(self, shard: Shard, broker: str, worker_id: str) -> int:
        """Release a dead worker's claims on ``shard``; how many it still holds there."""
        claims = shard.key(keys.claims(worker_id))
        held: Any = await shard.redis.smembers(claims)
        if not held and shard.index > 0:
            return 0
        redrive = await scripts.release(
            shard,
            worker_id=worker_id,
            only_if_dead=True,
            send_margin_ms=self.settings.send_margin_ms,
            reconcile_after_ms=self.settings.reconcile_after_ms,
        )
        logger.warning("worker {} is gone; its {} claims are released", worker_id, len(held))
        by_signal = Counter(tuple(str(m).split("|", 2)[:2]) for m in held)
        for (signal_id, work_broker), count in by_signal.items():
            with logger.contextualize(signal_id=signal_id, broker=work_broker):
                logger.warning("recovered {} claims of worker {}", count, worker_id)
            await self._acted("recovered", signal_id, work_broker, count, worker_id)
        for signal_id, work_broker in redrive:
            await self.dispatcher.dispatch(
                signal_id, {work_broker: 1}, "redrive", shard=self._job_shard(shard)
            )
        return int(await shard.redis.scard(claims))

    async def reconcile(self, shard: Shard | None = None) -> None:
        shard = shard or self.shards.home
        due = await scripts.take_due(
            shard, schedule=keys.ORPHANS, limit=ORPHANS_PER_PASS, lease_ms=ORPHAN_LEASE_MS
        )
        if due:
            done = await asyncio.gather(*(self._reconcile_one(shard, member) for member in due))
            by_signal = Counter(
                tuple(m.split("|", 2)[:2]) for m, n in zip(due, done, strict=True) if n
            )
            for (signal_id, broker), count in by_signal.items():
                await self._acted("reconciled", signal_id, broker, count)

    async def _reconcile_one(self, shard: Shard, member: str) -> int:
        """Reconcile one orphan; 1 if that wrote its record."""
        signal_id, broker, sub_id = member.split("|", 2)
        trade_id = keys.trade_id(signal_id, sub_id)
        with logger.contextualize(signal_id=signal_id, broker=broker, trade_id=trade_id):
            try:
                terminal = await self._orphan_terminal(shard, signal_id, broker, sub_id)
            except BrokerError as exc:
                logger.warning("orphan {}: broker cannot answer ({}); later", member, exc.reason)
                return 0
            written = 0
            if terminal is not None:
                book = ClaimBook(shard, self.name, broker)
                written = await book.finish(signal_id, [terminal])
            await shard.redis.zrem(shard.key(keys.ORPHANS), member)
            return written

    async def _orphan_terminal(
        self, shard: Shard, signal_id: str, broker: str, sub_id: str
    ) -> Terminal | None:
        """What the broker says of an orphan; ``None`` if it needs no record (already done)."""
        state: Any = await shard.redis.hget(shard.key(keys.state(signal_id)), sub_id)
        fields: Any = await shard.redis.hgetall(shard.key(keys.signal(signal_id)))
        if state is None or not state.startswith("s|") or not fields:
            return None
        signal = SignalInfo.from_hash(signal_id, fields)
        raw_sub: Any = await shard.redis.hget(
            shard.key(keys.subscriptions(signal.channel_id)), sub_id
        )
        sub = orjson.loads(raw_sub) if raw_sub else None
        book = ClaimBook(shard, self.name, broker)
        claim = Claimed(sub_id, sub, None)
        day = utc_day(signal.created_ms)
        account = await self._accounts[broker].get(sub["account_id"]) if sub else None
        if account is None:
            logger.warning("orphan {}-{}: its account is gone; expired", signal_id, sub_id)
            return book.unbought(signal, claim, day)
        order = replace(
            order_for(signal, claim, account, Decimal(state.rsplit("|", 1)[1])),
            recorded_contract_ids=await recorded_contracts(shard, account.account_id),
        )
        fill = await (await self._adapter(broker)).find_purchase(order)
        if fill is None:
            held = await shard.redis.sismember(shard.key(keys.unreplicated(signal_id)), sub_id)
            reason = "not_replicated" if held else "expired"
            logger.warning("orphan {}-{}: never bought; {}", signal_id, sub_id, reason)
            return book.unbought(signal, claim, day, reason)
        logger.warning("orphan {}-{}: found at the broker ({})", signal_id, sub_id, fill.status)
        return book.for_fill(signal, claim, order, fill, day)

    async def _adapter(self, broker: str) -> BrokerAdapter:
        if broker not in self._adapters:
            adapter = Metered(resolve_adapter(broker)(self.settings), broker)  # type: ignore[call-arg]
            await adapter.open([])
            self._adapters[broker] = adapter
        return self._adapters[broker]

    async def expire(self, shard: Shard | None = None) -> None:
        """End the work whose deadline passed ``skipped``/``expired``."""
        shard = shard or self.shards.home
        due: Any = await shard.redis.zrangebyscore(
            shard.key(keys.ACTIVE), "-inf", now_ms(), start=0, num=EXPIRE_PER_PASS
        )
        for member in due:
            signal_id, broker = str(member).split("|", 1)
            ended = await scripts.expire_work(shard, signal_id=signal_id, broker=broker)
            if ended:
                with logger.contextualize(signal_id=signal_id, broker=broker):
                    logger.warning("{} subscribers ended expired: deadline passed unsent", ended)
                await self._acted("expired", signal_id, broker, ended)

    async def redrive(self) -> None:
        """A new drain job for each work set that has not shrunk for ``REDRIVE_STALL_MS``."""
        now = now_ms()
        sizes: dict[tuple[int, str], tuple[int, int]] = {}
        for shard in self.shards:
            active: Any = await shard.redis.zrangebyscore(shard.key(keys.ACTIVE), now, "+inf")
            for member in active:
                signal_id, broker = member.split("|", 1)
                size: int = await shard.redis.scard(shard.key(keys.work(signal_id, broker)))
                if size == 0:
                    continue
                previous, since = self._sizes.get((shard.index, member), (-1, now))
                if previous != size:
                    since = now
                elif now - since >= self.settings.redrive_stall_ms:
                    if await self._never_acknowledged(signal_id):
                        continue  # its expansion's hub died before the ack: expire, never buy
                    with logger.contextualize(signal_id=signal_id, broker=broker):
                        logger.warning("work of {} stalled at {}: redriving", signal_id, size)
                    await self.dispatcher.dispatch(
                        signal_id, {broker: size}, "redrive", shard=self._job_shard(shard)
                    )
                    await self._acted("redriven", signal_id, broker, size)
                    since = now
                sizes[(shard.index, member)] = (size, since)
        self._sizes = sizes

    async def _never_acknowledged(self, signal_id: str) -> bool:
        """A sharded signal still ``expanding`` on its home shard: the hub died between the
        steps of its expansion (``core.scripts.expand_sharded``), no one was told of it, so its
        fanned-out shards' work must not be bought (a resend completes it; else it expires)."""
        if not self.shards.sharded:
            return False
        home = self.shards.home
        status = await home.redis.hget(home.key(keys.signal(signal_id)), "status")
        return bool(status == "expanding")

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()
        self.dispatcher.close()
        await self.shards.aclose()
        await self.redis.aclose()


async def main() -> None:
    settings = get_settings()
    configure_logging(settings, "reaper")
    reaper_series()
    serve(settings.metrics_port, settings.metrics_host)
    reaper = Reaper(settings)
    try:
        await reaper.run()
    finally:
        await reaper.close()


if __name__ == "__main__":
    asyncio.run(main())

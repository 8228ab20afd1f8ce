"""The reaper: finishes what dead workers left and ends work no one will do in time.

``python -m broker_workers.reaper`` (the Procfile's ``reaper``). RQ's own abandoned-job handling
waits for the job timeout; a purchase cannot wait that long, so every ``REAPER_INTERVAL_MS``:

1. **Adopt.** For each worker whose heartbeat lapsed, release its claims (:data:`RELEASE`): unsent
   subscribers go back to the work set (or end ``skipped`` when cancelled or too late), sent ones,
   bought or not, become orphans.
2. **Reconcile.** An orphan is taken once its signal's deadline is ``RECONCILE_AFTER_MS`` behind
   us. No worker sends after the deadline (the gate, the adapters and the paper broker all refuse),
   so the broker's answer is then final: the purchase it finds ends ``placed``, with the broker's
   own details; none ends ``skipped``/``expired``. A broker that cannot answer is asked again.
3. **Expire.** Work of a signal whose deadline passed ends ``skipped``/``expired``.
4. **Redrive.** A work set that stopped shrinking before its deadline (the hub died before
   enqueueing its drain jobs, a worker died holding the only one) gets a new drain job.

Every step is one atomic script or safe to repeat, so several reapers may run.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from loguru import logger

from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import Account, BrokerAdapter, BrokerError, Fill
from broker_workers.claims import (
    Claim,
    ClaimBook,
    Terminal,
    recorded_contracts,
    release,
    signal_info,
)
from broker_workers.drain import execution_record, order_for, terminal_for_fill
from broker_workers.process import max_trades_per_day
from broker_workers.settlement import TAKE_DUE
from signal_hub import keys
from signal_hub.connections import redis_client
from signal_hub.crypto import CredentialsBox, CredentialsError
from signal_hub.dispatch import Dispatcher
from signal_hub.logs import configure_logging
from signal_hub.lua import END_UNSENT, NOW_MS
from signal_hub.settings import Settings, get_settings

EXPIRE_WORK = (
    NOW_MS
    + END_UNSENT
    + """
local prefix, now = ARGV[1], now_ms()
local ended = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 50)) do
  local signal_id, broker = string.match(member, '^([^|]+)|(.+)$')
  local work = prefix .. 'work:' .. signal_id .. ':' .. broker
  local sig = hash_of(redis.call('HGETALL', prefix .. 'sig:' .. signal_id))
  if sig.channel_id then
    for _, id in ipairs(redis.call('SMEMBERS', work)) do
      ended = ended + end_unsent(prefix, signal_id, sig, id, broker, 'expired', now, KEYS[2])
    end
  end
  redis.call('DEL', work)
  redis.call('ZREM', KEYS[1], member)
end
return ended
"""
)

ORPHAN_LEASE_MS = 10_000
ORPHANS_PER_PASS = 200


class Reaper:
    def __init__(self, settings: Settings, name: str = "reaper") -> None:
        self.settings = settings
        self.name = name
        self.redis = redis_client(settings.redis_url)
        self.dispatcher = Dispatcher(settings.redis_url, settings.drain_batch_size)
        self._box = CredentialsBox(settings)
        self._adapters: dict[str, BrokerAdapter] = {}
        self._take = self.redis.register_script(TAKE_DUE)
        self._expire = self.redis.register_script(EXPIRE_WORK)
        self._sizes: dict[str, tuple[int, int]] = {}  # active member -> (work size, since ms)

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
        await self.reconcile()
        ended = await self._expire(keys=[keys.ACTIVE, keys.RESULTS], args=[keys.PREFIX])
        if ended:
            logger.warning("{} subscribers ended expired: their deadline passed unsent", ended)
        await self.redrive()

    async def adopt(self, broker: str) -> None:
        workers: Any = await self.redis.smembers(keys.workers(broker))
        for worker_id in workers:
            if await self.redis.exists(keys.worker_heartbeat(worker_id)):
                continue
            redrive = await release(
                self.redis,
                worker_id,
                only_if_dead=True,
                send_margin_ms=self.settings.send_margin_ms,
                reconcile_after_ms=self.settings.reconcile_after_ms,
            )
            await self.redis.srem(keys.workers(broker), worker_id)
            logger.warning("worker {} is gone; its claims are released", worker_id)
            for signal_id, work_broker in redrive:
                await self.dispatcher.dispatch(signal_id, {work_broker: 1}, "redrive")

    async def reconcile(self) -> None:
        due: list[str] = await self._take(
            keys=[keys.ORPHANS], args=[ORPHANS_PER_PASS, ORPHAN_LEASE_MS]
        )
        if due:
            await asyncio.gather(*(self._reconcile_one(member) for member in due))

    async def _reconcile_one(self, member: str) -> None:
        signal_id, broker, sub_id = member.split("|", 2)
        try:
            terminal = await self._orphan_terminal(signal_id, broker, sub_id)
        except BrokerError as exc:
            logger.warning("orphan {}: broker cannot answer ({}); later", member, exc.reason)
            return
        if terminal is not None:
            await ClaimBook(self.redis, self.name, broker).finish(signal_id, [terminal])
        await self.redis.zrem(keys.ORPHANS, member)

    async def _orphan_terminal(self, signal_id: str, broker: str, sub_id: str) -> Terminal | None:
        """What the broker says of an orphan; ``None`` if it needs no record (already done)."""
        state: Any = await self.redis.hget(keys.state(signal_id), sub_id)
        fields: Any = await self.redis.hgetall(keys.signal(signal_id))
        if state is None or not state.startswith("s|") or not fields:
            return None
        signal = signal_info(signal_id, fields)
        sub = _loads(await self.redis.get(keys.subscription(sub_id)))
        entry = _loads(await self.redis.get(keys.account(sub["account_id"]))) if sub else None
        claim = Claim(sub_id, sub, entry, 0, 0.0)
        day = keys.utc_day(signal.created_ms)
        account = self._account(claim.account)
        fill: Fill | None = None
        order = None
        if account is not None:
            order = replace(
                order_for(signal, claim, account, Decimal(state.rsplit("|", 1)[1])),
                recorded_contract_ids=await recorded_contracts(self.redis, account.account_id),
            )
            fill = await (await self._adapter(broker)).find_purchase(order)
        if order is not None and fill is not None:
            logger.warning("orphan {}-{}: found at the broker ({})", signal_id, sub_id, fill.status)
            return terminal_for_fill(broker, signal, claim, order, fill, day)
        logger.warning("orphan {}-{}: never bought; expired", signal_id, sub_id)
        counted = max_trades_per_day(claim.subscription or {}) > 0
        record = execution_record(signal, claim, "skipped", "expired", keys.now_ms(), None, broker)
        return Terminal(sub_id, record, undo_daily_key=keys.daily(sub_id, day) if counted else None)

    def _account(self, entry: dict[str, Any] | None) -> Account | None:
        if entry is None:
            return None
        try:
            credentials = self._box.open(entry["credentials"])
        except CredentialsError:
            return None
        return Account(entry["id"], credentials, entry.get("currency", "USD"))

    async def _adapter(self, broker: str) -> BrokerAdapter:
        if broker not in self._adapters:
            adapter = resolve_adapter(broker)(self.settings)  # type: ignore[call-arg]
            await adapter.open([])
            self._adapters[broker] = adapter
        return self._adapters[broker]

    async def redrive(self) -> None:
        """A new drain job for each work set that has not shrunk for ``REDRIVE_STALL_MS``."""
        now = keys.now_ms()
        active: Any = await self.redis.zrangebyscore(keys.ACTIVE, now, "+inf")
        sizes: dict[str, tuple[int, int]] = {}
        for member in active:
            signal_id, broker = member.split("|", 1)
            size: int = await self.redis.scard(keys.work(signal_id, broker))
            if size == 0:
                continue
            previous, since = self._sizes.get(member, (-1, now))
            if previous != size:
                since = now
            elif now - since >= self.settings.redrive_stall_ms:
                logger.warning("work of {} on {} stalled at {}: redriving", signal_id, broker, size)
                await self.dispatcher.dispatch(signal_id, {broker: size}, "redrive")
                since = now
            sizes[member] = (size, since)
        self._sizes = sizes

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()
        self.dispatcher.close()
        await self.redis.aclose()


def _loads(raw: Any) -> dict[str, Any] | None:
    return json.loads(raw) if raw else None


async def main() -> None:
    settings = get_settings()
    configure_logging(settings, "reaper")
    reaper = Reaper(settings)
    try:
        await reaper.run()
    finally:
        await reaper.close()


if __name__ == "__main__":
    asyncio.run(main())

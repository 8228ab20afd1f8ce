"""The long-lived state of one worker process: its event loop, broker adapter and lease.

RQ runs each drain job in the worker's main thread (``SimpleWorker``: no fork per job), and the
job hands its coroutine to this runtime's event loop, which runs in a thread of its own for the
life of the process. So broker sessions opened at start-up stay connected and authorized between
signals, and the lease is renewed while a job runs. Settlement runs on the same loop
(:class:`~broker_workers.settlement.Settler`): the workers hold the broker sessions.

The heartbeat is a lease with a local deadline (:mod:`broker_workers.fencing`): when it passes
without a renewal, the worker aborts its broker connections and its Redis connections at once
(:meth:`WorkerRuntime.fence`), its lanes claim nothing more, and no purchase marked under that
lease leaves any more.

With several hot-path shards (:mod:`core.shards`) a worker serves them all: its lease is on each
(the send gate and the reaper read it beside the claims), it settles each one's contracts, and a
drain job works with the claim book of the shard it names (:meth:`WorkerRuntime.on_shard`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any, TypeVar

from loguru import logger
from redis.asyncio import Redis

from broker_workers.accounts import AccountBook
from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import Account, BrokerAdapter, BrokerError
from broker_workers.claims import ClaimBook
from broker_workers.faults import KillPoints
from broker_workers.fencing import Lease, abort_redis
from broker_workers.metrics import Metered, broker_series
from broker_workers.settings import WorkerSettings
from broker_workers.settlement import Settler
from core import keys
from core.brokers import Capabilities, broker
from core.clock import now_ms
from core.connections import redis_client
from core.shards import Shards, open_shards

T = TypeVar("T")

# The shard the drain running in this task works on (its lanes inherit it).
_shard_index: ContextVar[int] = ContextVar("shard_index", default=0)


class WorkerRuntime:
    def __init__(self, settings: WorkerSettings, broker_name: str, worker_id: str) -> None:
        self.settings = settings
        self.broker = broker_name
        self.worker_id = worker_id
        self.capabilities: Capabilities = broker(broker_name).capabilities
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"{broker_name}-loop", daemon=True
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Set from the signal handler (SIGTERM): lanes finish the batch in hand, claim no more.
        self.stopping = False
        self.draining = 0  # drain jobs running now: no account check starts meanwhile
        self.metrics_port: int | None = None  # this process's /metrics, once served
        self.health_checked = 0  # accounts checked by the periodic refresh
        self.started_ms = now_ms()
        self.redis: Redis
        self.adapter: BrokerAdapter
        self.accounts: AccountBook
        self.shards: Shards
        self._books: list[ClaimBook] = []
        self.faults: KillPoints
        self.lease: Lease

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        """Start the loop thread, open the broker session and begin heartbeating."""
        self._thread.start()
        self.run(self._open())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runtime's loop and wait for its result (from a job's thread)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    async def _open(self) -> None:
        self.redis = redis_client(self.settings.redis_url)
        self.accounts = AccountBook(
            self.redis,
            self.broker,
            self.settings.broker_credentials_key,
            self.capabilities["currency"],
        )
        self.shards = open_shards(self.settings, self.redis)
        self._books = [
            ClaimBook(
                shard if self.shards.sharded else self.redis,
                self.worker_id,
                self.broker,
                remember_contracts=self.capabilities["finds_purchases_by_details"],
            )
            for shard in self.shards
        ]
        self.faults = KillPoints(self.redis, self.settings.fault_injection)
        self.lease = Lease(
            self.redis,
            self.worker_id,
            self.broker,
            ttl_ms=int(self.settings.claim_lease_s * 1000),
            margin_ms=self.settings.lease_margin_ms,
            renew_every_s=self.settings.worker_heartbeat_s,
            on_lost=self.fence,
            wait_replicas=self.settings.redis_wait_replicas,
            wait_ms=self.settings.redis_wait_ms,
            shards=self.shards.all if self.shards.sharded else (),
        )
        await self.lease.take()
        broker_series(self.broker)
        adapter = resolve_adapter(self.broker)(self.settings)  # type: ignore[call-arg]
        self.adapter = Metered(adapter, self.broker)
        await self.adapter.open(await self.accounts.known())
        self._tasks.append(asyncio.create_task(self.lease.keep()))
        self._tasks.append(asyncio.create_task(self._report()))
        for book in self._books:
            settler = Settler(book.redis, self.broker, self.adapter, self.accounts)
            self._tasks.append(asyncio.create_task(settler.run()))
        logger.info("worker {} ready for broker {}", self.worker_id, self.broker)

    @property
    def claims(self) -> ClaimBook:
        """The claim book of the shard the current drain works on (shard 0 outside one)."""
        return self._books[_shard_index.get()]

    @contextmanager
    def on_shard(self, index: int) -> Iterator[ClaimBook]:
        """Within: :attr:`claims` is shard ``index``'s (for this task and those it starts)."""
        if not 0 <= index < len(self._books):
            raise ValueError(
                f"a drain job names shard {index}, this worker has {len(self._books)}: every "
                "process needs the same REDIS_SHARDS / REDIS_CLUSTER"
            )
        token = _shard_index.set(index)
        try:
            yield self._books[index]
        finally:
            _shard_index.reset(token)

    def fence(self) -> None:
        """The lease is lost: abort the broker's connections (an adapter's optional ``abort``)
        and this worker's Redis connections, discarding whatever is still unsent, so that no
        request written before or during a network cut goes out when the link returns."""
        abort = getattr(getattr(self, "adapter", None), "abort", None)
        if callable(abort):
            abort()
        aborted = abort_redis(self.redis)
        for shard in self.shards if self.shards.sharded else ():
            aborted += abort_redis(shard.redis) if not shard.cluster else 0
        logger.warning("fenced: broker connections aborted, {} Redis connections aborted", aborted)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the runtime's loop for the life of the process (cancelled at stop)."""

        async def start() -> None:
            self._tasks.append(asyncio.create_task(coro))

        self.run(start())

    def status(self) -> dict[str, str | int]:
        """What the admin console shows of this worker (``keys.worker_info``)."""
        figures: dict[str, str | int] = {
            "broker": self.broker,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "metrics_port": self.metrics_port or 0,
            "started_ms": self.started_ms,
            "draining": self.draining,
            "health_checked": self.health_checked,
        }
        adapter_status = getattr(self.adapter, "status", None)
        if callable(adapter_status):
            figures.update(adapter_status())
        return figures

    async def _report(self) -> None:
        """Record :meth:`status` beside the heartbeat, as often, lapsing with the lease."""
        lease_ms = int(self.settings.claim_lease_s * 1000)
        key = keys.worker_info(self.worker_id)
        while True:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:  # never half a hash
                    pipe.delete(key)
                    pipe.hset(key, mapping=self.status())  # type: ignore[arg-type]
                    pipe.pexpire(key, lease_ms)
                    await pipe.execute()
            except Exception as exc:  # a Redis hiccup: the next report will do
                logger.warning("worker report failed: {}", type(exc).__name__)
            await asyncio.sleep(self.settings.worker_heartbeat_s)

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        """The balances the broker reports (none if it reports none, or cannot answer now:
        percent stakes then fail ``balance_unavailable``)."""
        if not self.capabilities["reports_balances"]:
            return {}
        try:
            return await self.adapter.balances(accounts)
        except BrokerError as exc:
            logger.warning("no balances from {}: {}", self.broker, exc)
            return {}

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.adapter.close()
        await self.redis.delete(
            keys.worker_heartbeat(self.worker_id), keys.worker_info(self.worker_id)
        )
        if self.shards.sharded:
            for shard in self.shards:
                await shard.redis.delete(shard.key(keys.worker_heartbeat(self.worker_id)))
        await self.shards.aclose()
        await self.redis.aclose()

    def stop(self) -> None:
        """Close the broker session and stop the loop. The drain jobs have released their
        claims by now; the heartbeat goes, so anything left is the reaper's at once."""
        if self._thread.is_alive():
            try:
                self.run(self._close())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=5)


_current: WorkerRuntime | None = None


def set_current(runtime: WorkerRuntime | None) -> None:
    global _current
    _current = runtime


def current() -> WorkerRuntime | None:
    return _current

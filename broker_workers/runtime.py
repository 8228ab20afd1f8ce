"""The long-lived state of one worker process: its event loop, broker adapter and heartbeat.

RQ runs each drain job in the worker's main thread (``SimpleWorker``: no fork per job), and the
job hands its coroutine to this runtime's event loop, which runs in a thread of its own for the
life of the process. So broker sessions opened at start-up stay connected and authorized between
signals, and the heartbeat keeps beating while a job runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, TypeVar

from loguru import logger
from redis.asyncio import Redis

from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import Account, BrokerAdapter
from broker_workers.claims import ClaimBook
from broker_workers.faults import KillPoints
from broker_workers.settlement import settlement_loop
from signal_hub import keys
from signal_hub.connections import redis_client
from signal_hub.crypto import CredentialsBox, CredentialsError
from signal_hub.settings import Settings

T = TypeVar("T")


class WorkerRuntime:
    def __init__(self, settings: Settings, broker: str, worker_id: str) -> None:
        self.settings = settings
        self.broker = broker
        self.worker_id = worker_id
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"{broker}-loop", daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._box = CredentialsBox(settings)
        self._accounts: dict[str, tuple[str, Account]] = {}
        # Set from the signal handler (SIGTERM): lanes finish the batch in hand, claim no more.
        self.stopping = False
        self.redis: Redis
        self.adapter: BrokerAdapter
        self.claims: ClaimBook
        self.faults: KillPoints

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
        adapter_class = resolve_adapter(self.broker)
        self.claims = ClaimBook(
            self.redis,
            self.worker_id,
            self.broker,
            remember_contracts=adapter_class.capabilities["finds_purchases_by_details"],
        )
        self.faults = KillPoints(self.redis, self.settings.fault_injection)
        await self._beat()
        await self.redis.sadd(keys.workers(self.broker), self.worker_id)
        self.adapter = adapter_class(self.settings)  # type: ignore[call-arg]
        await self.adapter.open(await self.known_accounts())
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        self._tasks.append(asyncio.create_task(settlement_loop(self)))
        logger.info("worker {} ready for broker {}", self.worker_id, self.broker)

    async def _beat(self) -> None:
        lease_ms = int(self.settings.claim_lease_s * 1000)
        await self.redis.set(keys.worker_heartbeat(self.worker_id), "1", px=lease_ms)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.worker_heartbeat_s)
            try:
                await self._beat()
            except Exception as exc:  # a Redis hiccup: keep beating, the lease has slack
                logger.warning("heartbeat failed: {}", type(exc).__name__)

    async def known_accounts(self) -> list[Account]:
        """Every account of this broker in the directory, decrypted, to warm sessions up."""
        ids = [str(i) for i in await self.redis.smembers(keys.broker_accounts(self.broker))]
        raw = await self.redis.mget([keys.account(i) for i in ids]) if ids else []
        return [a for a in (self.account(json.loads(r)) for r in raw if r) if a is not None]

    def account(self, entry: dict[str, Any]) -> Account | None:
        """The decrypted account of a directory entry, cached until its credentials change."""
        cached = self._accounts.get(entry["id"])
        if cached and cached[0] == entry["credentials"]:
            return cached[1]
        try:
            credentials = self._box.open(entry["credentials"])
        except CredentialsError:
            logger.error("credentials of account {} cannot be decrypted", entry["id"])
            return None
        account = Account(entry["id"], credentials, entry.get("currency", "USD"))
        self._accounts[entry["id"]] = (entry["credentials"], account)
        return account

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        try:
            return await self.adapter.balances(accounts)
        except NotImplementedError:
            return {}

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.adapter.close()
        await self.redis.delete(keys.worker_heartbeat(self.worker_id))
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

"""Errors at the broker boundary, through the real drain: the paper ledger's Redis cut in the
middle of a signal (longer than redis-py's own retries), and a broker that cannot work at all.
Every subscriber still ends once, promptly, with one purchase at most; no lane dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from broker_workers.adapters.base import (
    AmbiguousPurchase,
    FatalBrokerError,
    Fill,
    Order,
    TemporaryBrokerError,
)
from broker_workers.adapters.paper.ledger import CONTRACTS
from broker_workers.drain import drain
from broker_workers.runtime import WorkerRuntime
from broker_workers.settings import load_settings
from core import keys
from core.connections import redis_client
from core.crypto import CredentialsBox
from tests.procs import REDIS_HOST, REDIS_PORT
from tests.test_claims import execution_records, expand, seed_channel

SUBSCRIBERS = 12


class Proxy:
    """A TCP proxy in front of Redis that can cut every connection and refuse new ones."""

    def __init__(self) -> None:
        self.refusing = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.refusing = True
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        self._server.close()


@pytest.fixture
async def runtime(redis: Redis, unit_redis_url: str) -> AsyncIterator[WorkerRuntime]:
    """A paper worker's runtime on this test's loop, its subscribers seeded."""
    settings = load_settings(
        {"APP_ENV": "development", "REDIS_URL": unit_redis_url, "PAPER_LATENCY_MS": "150",
         "DRAIN_BATCH_SIZE": "4", "DRAIN_CONCURRENCY": "1"}
    )  # fmt: skip
    await seed_channel(redis, "c1", SUBSCRIBERS, delay_ms=30_000)
    sealed = CredentialsBox(settings.broker_credentials_key).seal({})
    for i in range(SUBSCRIBERS):
        entry = {"id": f"a{i}", "credentials": sealed, "currency": "USD"}
        await redis.hset(keys.accounts("paper"), f"a{i}", json.dumps(entry))
    rt = WorkerRuntime(settings, "paper", "w-errors")
    await rt._open()
    yield rt
    await rt._close()


async def ledger_and_records(redis: Redis) -> tuple[list[dict[str, Any]], set[str]]:
    """The execution records, and the trades the ledger bought (each once)."""
    contracts: Any = await redis.hvals(CONTRACTS)
    bought = [json.loads(c)["client_order_id"] for c in contracts]
    assert len(bought) == len(set(bought)), "an order bought twice"
    return await execution_records(redis), set(bought)


async def test_the_ledger_cut_mid_batch_ends_everyone_once_promptly(
    redis: Redis, runtime: WorkerRuntime
) -> None:
    proxy = Proxy()
    port = await proxy.start()
    db = redis.connection_pool.connection_kwargs["db"]
    await runtime.adapter.close()
    runtime.adapter.redis = redis_client(f"redis://127.0.0.1:{port}/{db}")  # type: ignore[attr-defined]
    await expand(redis, "sig1", "c1")

    async def outage() -> None:
        await asyncio.sleep(0.2)  # the first batch is at the broker
        proxy.cut()
        await asyncio.sleep(1.5)  # longer than redis-py's retries
        proxy.refusing = False

    started = time.monotonic()
    try:
        written, _ = await asyncio.gather(drain(runtime, "sig1"), outage())
    finally:
        await proxy.close()
    took = time.monotonic() - started
    records, bought = await ledger_and_records(redis)
    assert written == SUBSCRIBERS == len({r["trade_id"] for r in records}) == len(records)
    assert {r["trade_id"] for r in records if r["status"] == "placed"} == bought
    unbought = {(r["status"], r["reason"]) for r in records if r["trade_id"] not in bought}
    assert unbought <= {("failed", "broker_unreachable")}, unbought
    assert await redis.zcard(keys.ORPHANS) == 0  # the drain found out, not the reaper later
    assert took < 10, took


async def test_a_broker_that_cannot_work_fails_its_orders_and_says_so(
    redis: Redis, runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def misconfigured(orders: list[Order]) -> list[Fill]:
        raise FatalBrokerError("the broker refuses our app id")

    monkeypatch.setattr(runtime.adapter, "buy", misconfigured)
    await expand(redis, "sig1", "c1")
    assert await drain(runtime, "sig1") == SUBSCRIBERS
    records = await execution_records(redis)
    assert {(r["status"], r["reason"]) for r in records} == {("failed", "broker_error")}
    assert len(records) == SUBSCRIBERS


async def test_a_stopping_worker_leaves_an_unanswered_purchase_to_the_reaper(
    redis: Redis, runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while a batch's purchase is being reconciled: the worker asks the broker no more
    (each lookup may wait its timeouts, and the orders are asked one by one, so asking on would
    outlast any grace period); the batch stays ``sending`` for the reaper, which asks after the
    deadline, and the rest of the signal is left for the next worker."""
    lookups: list[str] = []

    async def unanswered(orders: list[Order]) -> list[Fill]:
        raise AmbiguousPurchase("sent, no answer")

    async def cannot_say(order: Order) -> Fill | None:
        lookups.append(order.client_order_id)
        runtime.stopping = True  # the SIGTERM arrives during the first lookup
        raise TemporaryBrokerError("no answer from the broker")

    monkeypatch.setattr(runtime.adapter, "buy", unanswered)
    monkeypatch.setattr(runtime.adapter, "find_purchase", cannot_say)
    await expand(redis, "sig1", "c1")
    assert await drain(runtime, "sig1") == 0
    assert len(lookups) == 1, lookups
    assert await redis.zcard(keys.ORPHANS) == 4  # the batch in hand (DRAIN_BATCH_SIZE), sent
    assert await redis.scard(keys.work("sig1", "paper")) == SUBSCRIBERS - 4  # handed over
    assert await execution_records(redis) == []


async def test_balances_a_hanging_broker_never_gives_end_at_the_deadline(
    redis: Redis, runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Percent stakes need the balance; a broker that never answers costs the batch its deadline
    (its subscribers fail ``balance_unavailable``, or expire), not the lookups' timeouts."""
    asked: list[int] = []

    async def hanging(accounts: list[Any]) -> dict[str, Any]:
        asked.append(len(accounts))
        await asyncio.sleep(3600)
        return {}

    channel: Any = await redis.get(keys.channel("c1"))
    await redis.set(
        keys.channel("c1"), json.dumps({**json.loads(channel), "max_signal_delay_ms": 400})
    )
    subs: Any = await redis.hgetall(keys.subscriptions("c1"))
    for sub_id, raw in subs.items():
        entry = {**json.loads(raw), "stake": {"mode": "percent", "percent": 1}}
        await redis.hset(keys.subscriptions("c1"), sub_id, json.dumps(entry))
    monkeypatch.setattr(runtime, "balances", hanging)
    await expand(redis, "sig1", "c1")
    assert await drain(runtime, "sig1") == SUBSCRIBERS
    assert asked, "the balances were asked for"
    records = await execution_records(redis)
    assert len({r["trade_id"] for r in records}) == SUBSCRIBERS == len(records)
    ends = {(r["status"], r["reason"]) for r in records}
    assert ("failed", "balance_unavailable") in ends, ends
    assert ends <= {("failed", "balance_unavailable"), ("skipped", "expired")}, ends

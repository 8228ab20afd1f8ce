"""The invariants under failure, tried with real processes: workers SIGKILLed at each kill point
and at chosen moments, a hub killed while results are in flight, Redis connections cut, the
Deriv simulator dropping connections after the debit, graceful SIGTERM of workers and hub.

Each case sends a signal to a channel with subscribers on both brokers, breaks something, and
checks from outside (store, live feed, the brokers' own books) that every counted subscriber has
exactly one terminal record and at most one purchase, and one exactly when the record says placed.
The longer, randomised version of the same is the soak: ``python -m tests.soak``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import pytest

from core import keys
from tests.chaos import CHAOS_ENV, SIM_FAULTS, Chaos, Verdict, new_channel
from tests.client import live
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import running_system

FAULT_DB = UNIT_DB + 3

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    with running_system(FAULT_DB, LOG_DIR / "faults", **CHAOS_ENV) as system:
        yield Chaos.start(system)


def assert_held(verdict: Verdict, what: str) -> None:
    assert verdict.ok, f"{what}: {verdict}"
    assert verdict.records == verdict.counted, f"{what}: {verdict}"


@pytest.mark.parametrize("nth", [1, 2, 4])
@pytest.mark.parametrize("point", ["after_claim", "after_gate", "after_send", "after_finish"])
async def test_worker_killed_at_a_kill_point(chaos: Chaos, point: str, nth: int) -> None:
    """after_claim: claimed, nothing sent. after_gate: marked sending, nothing sent yet.
    after_send: the broker accepted, nothing recorded. after_finish: recorded, more to claim.
    The nth batch (any worker, any broker) is the one that dies."""
    watcher = await chaos.watcher()
    try:
        chaos.arm(point, nth)
        ack = await chaos.send(watcher)
        verdict = chaos.verify(ack["signal_id"], ack["fanout"]["total"], watcher)
    finally:
        chaos.disarm()
        await watcher.close()
    assert ack["fanout"]["total"] == chaos.total
    assert_held(verdict, f"{point}:{nth}")
    for broker in ("paper", "deriv"):
        chaos.wait_for_workers(broker)


@pytest.mark.parametrize("delay_ms", [5, 40, 120])
@pytest.mark.parametrize("broker", ["paper", "deriv"])
async def test_worker_killed_at_a_moment(chaos: Chaos, broker: str, delay_ms: int) -> None:
    """SIGKILL from outside, wherever the worker happens to be (often inside a broker call)."""
    watcher = await chaos.watcher()
    try:
        ack = await chaos.send(watcher)
        await asyncio.sleep(delay_ms / 1000)
        chaos.kill_a_worker(broker)
        verdict = chaos.verify(ack["signal_id"], ack["fanout"]["total"], watcher)
    finally:
        await watcher.close()
    assert_held(verdict, f"kill {broker} at {delay_ms} ms")
    chaos.wait_for_workers(broker)


@pytest.mark.parametrize("delay_ms", [0, 30, 100])
async def test_redis_connections_cut(chaos: Chaos, delay_ms: int) -> None:
    """Every client's connection dropped mid-fan-out: retried calls must not act twice."""
    watcher = await chaos.watcher()
    try:
        ack = await chaos.send(watcher)
        await asyncio.sleep(delay_ms / 1000)
        assert chaos.cut_redis_connections() > 0
        verdict = chaos.verify(ack["signal_id"], ack["fanout"]["total"])
    finally:
        await watcher.close()
    assert_held(verdict, f"redis cut at {delay_ms} ms")
    for broker in ("paper", "deriv"):
        chaos.wait_for_workers(broker)


async def test_deriv_drops_connections_after_the_debit(chaos: Chaos) -> None:
    """The simulator debits, then drops the connection before answering: each such purchase is
    found in the statement, never bought a second time."""
    faults = {**SIM_FAULTS, "drop_after_debit_rate": 0.5, "seed": 3}
    httpx.post(f"{chaos.system.sim_url}/_sim/faults", json=faults).raise_for_status()
    watcher = await chaos.watcher()
    try:
        verdicts = []
        for _ in range(2):
            ack = await chaos.send(watcher)
            verdicts.append(chaos.verify(ack["signal_id"], ack["fanout"]["total"], watcher))
    finally:
        httpx.post(f"{chaos.system.sim_url}/_sim/faults", json=SIM_FAULTS).raise_for_status()
        await watcher.close()
    for verdict in verdicts:
        assert_held(verdict, "drop after debit")
    chaos.wait_for_workers("deriv")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_hub_stopped_while_results_are_in_flight(chaos: Chaos, sig: int) -> None:
    """The hub goes down while executions stream in; the one that comes back (another consumer)
    writes every result to the store, once. The watcher stays connected through it (reconnecting
    to the new hub): every execution it is shown is in the store already when it arrives, and a
    repeat (re-emitted on takeover) carries the same trade_id."""
    watcher = await chaos.watcher(checked=True, reconnect=True)
    try:
        ack = await chaos.send(watcher)
        await asyncio.sleep(0.1)
        chaos.kill_hub(sig)
        chaos.restart_hub()
        verdict = await asyncio.to_thread(
            chaos.verify, ack["signal_id"], ack["fanout"]["total"], watcher, 30, None, True
        )
    finally:
        await watcher.close()
    assert_held(verdict, f"hub {signal.Signals(sig).name}")
    assert watcher.unstored == [], watcher.unstored


async def test_sigterm_hands_work_over_and_loses_nothing(chaos: Chaos) -> None:
    """SIGTERM to the whole paper pool mid-signal: the batches in hand finish, the rest is handed
    over, and a new pool places every one of them before the (long) deadline."""
    provider, channel_id = new_channel(chaos.system, chaos.api, 24, 0, max_signal_delay_ms=15_000)
    watcher = await live(chaos.system.base_url, "/provider", provider)
    try:
        ack = await chaos.send(watcher, channel_id)
        await asyncio.sleep(0.15)
        chaos.pools["paper"].stop(signal.SIGTERM, timeout=20)
        assert chaos.pools["paper"].popen.returncode is not None
        chaos.pools["paper"] = chaos.system.start_pool("paper", workers=2)
        verdict = chaos.verify(ack["signal_id"], 24, watcher, provider=provider)
    finally:
        await watcher.close()
    assert_held(verdict, "SIGTERM")
    assert verdict.statuses == {"placed": 24}, verdict.statuses
    assert chaos.redis.zcard(keys.ORPHANS) == 0


async def test_cancel_reaches_every_worker_of_every_broker(chaos: Chaos) -> None:
    """Cancelled while both pools are mid-signal: what the ack calls cancellable ends
    skipped/cancelled, exactly that many, on both brokers; the rest was bought, once."""
    provider, channel_id = new_channel(chaos.system, chaos.api, 40, 16)
    watcher = await live(chaos.system.base_url, "/provider", provider)
    try:
        ack = await chaos.send(watcher, channel_id)
        assert ack["fanout"]["total"] == 56, ack
        await asyncio.sleep(0.05)
        cancel = await watcher.emit("cancel", {"signal_id": ack["signal_id"]})
        assert cancel["ok"] and cancel["cancellable"] > 0, cancel
        verdict = chaos.verify(ack["signal_id"], 56, watcher, provider=provider)
    finally:
        await watcher.close()
    assert_held(verdict, "cancel")
    assert verdict.statuses["skipped/cancelled"] == cancel["cancellable"], verdict.statuses
    assert verdict.statuses["placed"] + cancel["cancellable"] == 56, verdict.statuses

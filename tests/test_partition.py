"""A worker host cut off from the network (issue 16 item 3, DESIGN invariant 6).

The leases and their fencing, piece by piece on a real Redis (a lease's local deadline comes
before Redis forgets it; a lapsed lease is never renewed; the gate and the paper ledger refuse a
lease that is not the current one), then the whole thing with real processes and a real network
cut: one worker of each broker runs in a network namespace of its own, joined to the host by a
veth pair; a signal to a few hundred subscribers is sent, the namespace's link is cut while its
workers are mid-batch, their leases lapse, the reaper recovers their claims, the link comes back,
and the brokers' own books are checked: no purchase of the cut-off workers arrived after the cut
(nothing can arrive during it, so none arrived after their leases were lost), at most one
purchase per subscriber, and one terminal record for every subscriber the ack counted.

The partition needs root (``ip netns``, a veth pair); without it, or without ``ip netns`` on the
machine, that test is skipped and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from bench.seed import seed_simulator, seed_store
from broker_workers.adapters.base import Account, LeaseLost, Order
from broker_workers.adapters.paper import ledger
from broker_workers.fencing import Lease
from core import keys, scripts
from core.clock import now_ms, utc_day
from signal_hub.settings import load_settings
from tests.client import Live
from tests.conftest import LOG_DIR
from tests.procs import (
    REDIS_PORT,
    Proc,
    System,
    children,
    free_port,
    redis_server_argv,
    running_system,
)
from tests.procs import wait_until as wait
from tests.test_claims import gate, seed_channel

# -- the lease, piece by piece ------------------------------------------------------------------


@pytest.fixture
async def lease(redis: Redis) -> AsyncIterator[Lease]:
    lost: list[int] = []
    lease = Lease(redis, "w1", "paper", ttl_ms=600, margin_ms=100, renew_every_s=0.1)
    lease.on_lost = lambda: lost.append(1)
    await lease.take()
    yield lease


async def test_the_local_deadline_comes_before_redis_forgets_the_lease(
    redis: Redis, lease: Lease
) -> None:
    """Not renewed, the lease is given up locally (TTL - margin after the renewal was sent)
    while its key still lives in Redis: the reaper cannot adopt the claims before that."""
    ticket = lease.ticket()
    assert ticket is not None and lease.held()
    ticket.check()
    assert await redis.get(keys.worker_heartbeat("w1")) == ticket.token
    await asyncio.sleep(lease.remaining_s() + 0.01)
    assert not lease.held() and lease.ticket() is None
    with pytest.raises(LeaseLost):
        ticket.check()
    assert await redis.pttl(keys.worker_heartbeat("w1")) > 0  # Redis still holds it


async def test_a_lapsed_lease_is_never_renewed_and_a_new_one_has_a_new_token(
    redis: Redis, lease: Lease
) -> None:
    old = lease.ticket()
    assert old is not None and await lease.renew()
    await redis.delete(keys.worker_heartbeat("w1"))  # lapsed in Redis (the reaper may act)
    assert not await lease.renew()
    assert not await scripts.renew_lease(redis, worker_id="w1", token=old.token, ttl_ms=600)
    assert await redis.exists(keys.worker_heartbeat("w1")) == 0  # not brought back
    lease.lose("test")
    with pytest.raises(LeaseLost):
        old.check()
    await lease.take()
    new = lease.ticket()
    assert new is not None and new.token != old.token
    with pytest.raises(LeaseLost):
        old.check()  # the old lease does not pass as the new one
    assert await redis.sismember(keys.workers("paper"), "w1")  # listed for the reaper again


async def test_keep_fences_once_the_lease_cannot_be_renewed(redis: Redis) -> None:
    """Redis stops answering renewals (here: the key holds another lease): the keeper loses
    the lease, calls on_lost once, and takes a new lease."""
    fenced: list[str] = []
    lease = Lease(redis, "w2", "paper", ttl_ms=600, margin_ms=100, renew_every_s=0.1)
    lease.on_lost = lambda: fenced.append(lease.token)
    await lease.take()
    first = lease.token
    keeper = asyncio.create_task(lease.keep())
    try:
        await redis.set(keys.worker_heartbeat("w2"), "someone else's", px=600)
        for _ in range(100):
            if lease.token not in ("", first):
                break
            await asyncio.sleep(0.02)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    assert fenced == [""]  # called once, after the token was forgotten
    assert lease.token not in ("", first) and lease.lost == 1


async def test_the_gate_refuses_a_lease_that_is_not_the_current_one(redis: Redis) -> None:
    await seed_channel(redis, "c1", 4, delay_ms=60_000)
    brokers = ["paper"]
    new = scripts.NewSignal("s1", "c1", "prov", "EURUSD", "CALL", 60)
    assert (await scripts.expand(redis, new, brokers))[0] == "ok"
    await redis.set(keys.worker_heartbeat("w1"), "token-2", px=5000)
    _, claimed = await scripts.claim(
        redis, signal_id="s1", channel_id="c1", broker="paper", worker_id="w1", count=4
    )
    ids = [c.subscription_id for c in claimed]
    day = utc_day()
    stale, _ = await scripts.mark_sending(
        redis, signal_id="s1", worker_id="w1", day=day, send_margin_ms=0,
        items=gate(*ids[:2]), lease_token="token-1",
    )  # fmt: skip
    assert stale == ["lost", "lost"]
    current, _ = await scripts.mark_sending(
        redis, signal_id="s1", worker_id="w1", day=day, send_margin_ms=0,
        items=gate(*ids[:2]), lease_token="token-2",
    )  # fmt: skip
    assert current == ["go", "go"]


@dataclass(frozen=True)
class Ticket:
    """An order's lease as a test holds it (``adapters.base.Fence``): held, as far as the worker
    knows; whether Redis agrees is the ledger's to check."""

    worker_id: str
    token: str

    def check(self) -> None:
        pass


async def test_the_paper_ledger_refuses_a_purchase_of_a_lapsed_lease(
    redis: Redis, unit_redis_url: str
) -> None:
    """Fencing at the broker: a buy sent under a lease that is no longer the current one (held
    up in a network cut, retried on a new connection) buys nothing."""
    from broker_workers.adapters.paper.broker import PaperBroker
    from broker_workers.settings import load_settings as worker_settings

    paper = PaperBroker(worker_settings({"APP_ENV": "development", "REDIS_URL": unit_redis_url}))
    paper.latency_s = 0
    await redis.set(keys.worker_heartbeat("w1"), "token-2", px=5000)

    def order(coid: str, token: str) -> Order:
        return Order(
            coid, "s1", coid, Account("a1", {}), "EURUSD", "CALL", 60, Decimal("5"),
            now_ms() + 60_000, fence=Ticket("w1", token),
        )  # fmt: skip

    try:
        with pytest.raises(LeaseLost):
            await paper.buy([order("t1", "token-1")])
        assert await redis.hlen(ledger.CONTRACTS) == 0
        [fill] = await paper.buy([order("t2", "token-2")])
        assert fill.status == "placed"
        [contract] = await redis.hvals(ledger.CONTRACTS)
        assert json.loads(contract)["worker"] == "w1"
    finally:
        await paper.close()


# -- a worker host cut off ------------------------------------------------------------------------

SUBSCRIBERS = 300  # half on each broker
OUTSIDE_WORKERS = 2  # per broker, beside the one cut off: they finish its work in time
DEADLINE_MS = 12_000  # long enough that a purchase delivered after the link returns would count
PARTITION_ENV = {
    "CLAIM_LEASE_S": "1.5",
    "WORKER_HEARTBEAT_S": "0.25",
    "LEASE_MARGIN_MS": "250",
    "RECONCILE_AFTER_MS": "500",
    "REAPER_INTERVAL_MS": "100",
    "REDRIVE_STALL_MS": "500",
    "PAPER_LATENCY_MS": "300",  # each paper request waits this long before it is written
    "DRAIN_BATCH_SIZE": "8",
    "DRAIN_CONCURRENCY": "2",
    "DERIV_CONNECTIONS": "1",
    "ACCESS_TOKEN_TTL_S": "3600",
}
# Deriv: a round trip and RateLimit answers, so that purchases are retried (after their gate)
# all through the signal, by every worker: some are written while the link is cut.
SIM_FAULTS = {"latency_ms": 120, "jitter_ms": 60, "error_rates": {"RateLimit": 0.2}, "seed": 11}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


@dataclass(frozen=True)
class Netns:
    """A network namespace joined to the host by a veth pair on a private /30."""

    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the partition test creates a network namespace and a veth pair")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed: no network namespace can be made")
    n = os.getpid() % 50_000
    net = Netns(f"ctc-part-{n}", f"ctcp{n}h", f"10.231.{n % 250}.1", f"10.231.{n % 250}.2")
    ns_if = f"ctcp{n}n"
    _ip("link", "del", net.host_if, check=False)
    _ip("netns", "del", net.name, check=False)
    try:
        _ip("netns", "add", net.name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"ip netns is unavailable here: {exc.stderr.strip()}")
    try:
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", net.name)
        _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        _ip("link", "set", net.host_if, "up")
        for args in (
            ["addr", "add", f"{net.ns_ip}/30", "dev", ns_if],
            ["link", "set", ns_if, "up"],
            ["link", "set", "lo", "up"],
        ):
            _ip("netns", "exec", net.name, "ip", *args)
        yield net
    finally:
        pids = _ip("netns", "pids", net.name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("link", "del", net.host_if, check=False)
        _ip("netns", "del", net.name, check=False)


@pytest.fixture
def partition_redis(netns: Netns) -> Iterator[int]:
    """A Redis of the test's own on the host side, on 127.0.0.1 and the veth's host address, on
    ``TEST_PARTITION_REDIS_PORT`` (default: the tests' Redis port + 1)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = int(os.environ.get("TEST_PARTITION_REDIS_PORT", REDIS_PORT + 1))
    log_dir = LOG_DIR / "partition"
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = redis_server_argv(
        port, log_dir, "--protected-mode", "no", bind=f"127.0.0.1 {netns.host_ip}"
    )
    with (log_dir / "redis.log").open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    client = sync_redis.Redis(port=port)
    try:
        wait(lambda: client.ping(), timeout=10, what=f"redis-server on {port}")
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _start_pool(
    system: System, broker: str, url: str, name: str, prefix: list[str], workers: int = 1
) -> Proc:
    argv = [*prefix, sys.executable, "-m", "rq.cli", "worker-pool", f"broker.{broker}",
            "-n", str(workers), "-w", "broker_workers.worker.BrokerWorker", "-u", url]  # fmt: skip
    return system.spawn(name, argv, {"REDIS_URL": url})


def _live_workers(r: sync_redis.Redis, broker: str) -> dict[str, int]:
    """Live worker id -> pid, from the workers' own reports."""
    found: dict[str, int] = {}
    for worker in r.smembers(keys.workers(broker)):
        pid = r.hget(keys.worker_info(str(worker)), "pid")
        if r.exists(keys.worker_heartbeat(str(worker))) and pid is not None:
            found[str(worker)] = int(pid)
    return found


async def test_a_worker_host_cut_off_buys_nothing_once_its_lease_is_lost(
    netns: Netns, partition_redis: int
) -> None:
    url = f"redis://127.0.0.1:{partition_redis}/0"
    ns_url = f"redis://{netns.host_ip}:{partition_redis}/0"
    r = sync_redis.Redis.from_url(url, decode_responses=True)
    sim_port = free_port()
    sim_url = f"http://{netns.host_ip}:{sim_port}"
    ws_url = f"ws://{netns.host_ip}:{sim_port}/websockets/v3"
    with running_system(
        0, LOG_DIR / "partition", REDIS_URL=url, DERIV_WS_URL=ws_url, **PARTITION_ENV
    ) as system:
        sim = system.spawn(
            "deriv_sim",
            [sys.executable, "-m", "broker_workers.deriv_sim", "--host", netns.host_ip,
             "--port", str(sim_port)],
        )  # fmt: skip
        wait(lambda: httpx.get(f"{sim_url}/_sim/faults", timeout=1).status_code == 200,
             timeout=30, what=f"deriv simulator: {sim.tail()}")  # fmt: skip
        seeded = await seed_store(
            load_settings(system.env), SUBSCRIBERS, ["paper", "deriv"], 0, DEADLINE_MS
        )
        seed_simulator(sim_url, seeded.deriv_tokens)
        httpx.post(f"{sim_url}/_sim/faults", json=SIM_FAULTS).raise_for_status()
        system.start_hub()
        system.start_reaper()
        cut_off: dict[str, Proc] = {}
        for broker in ("paper", "deriv"):
            _start_pool(system, broker, url, f"worker_{broker}", [], OUTSIDE_WORKERS)
            cut_off[broker] = _start_pool(
                system, broker, ns_url, f"worker_{broker}_cut_off", netns.prefix
            )
        wait(lambda: all(len(_live_workers(r, b)) > OUTSIDE_WORKERS for b in cut_off), timeout=60,
             what="the workers of each broker, one of each cut off")  # fmt: skip
        ns_workers = {
            b: next(w for w, pid in _live_workers(r, b).items() if pid == proc.popen.pid
                    or pid in children(proc.popen.pid))
            for b, proc in cut_off.items()
        }  # fmt: skip
        watcher = await Live(system.base_url, "/provider", seeded.provider_token).connect()
        try:
            result = await _cut_mid_signal(
                r, netns, seeded.channel.id, watcher, ns_workers, sim_url
            )
            # The cut-off workers stay up, back on the network, until every record is in (the
            # deadline and the reconciliation after it): time for anything they held to go out.
            trades = await asyncio.to_thread(
                _trades, system.base_url, seeded.provider_token, result.signal_id, result.counted
            )
        finally:
            await watcher.close()
            for proc in cut_off.values():  # no warm shutdown for them: they are done
                proc.stop(signal.SIGKILL)
        ours = set(ns_workers.values())
        purchases = _purchases(r, sim_url, result.signal_id, netns.ns_ip, ours)
    r.close()

    by_trade = Counter(t["trade_id"] for t in trades)
    assert len(by_trade) == result.counted == SUBSCRIBERS, (len(by_trade), result.counted)
    assert max(by_trade.values()) == 1, "a subscriber with two records"
    assert all(t["status"] in {"placed", "rejected", "skipped", "failed"} for t in trades)
    bought = Counter(p.trade_id for p in purchases)
    assert max(bought.values(), default=0) <= 1, f"bought twice: {bought.most_common(3)}"
    placed = {t["trade_id"] for t in trades if t["status"] == "placed"}
    assert placed == set(bought), (len(placed), len(bought))
    # Nothing arrives while the link is down, so a purchase of theirs that arrived once it was
    # back came after their leases were lost (the reaper had their claims by then).
    late = [p for p in purchases if p.cut_off and p.arrived_ms >= result.restore_ms]
    assert late == [], (
        f"the cut-off workers bought after their leases were lost (cut at {result.cut_ms}, "
        f"back at {result.restore_ms}): {late[:5]}"
    )
    # The case happened as meant: the cut-off workers had bought on both brokers before the cut,
    # lost their leases, fenced, and the reaper took over what they held.
    assert {p.broker for p in purchases if p.cut_off} == {"paper", "deriv"}
    assert result.recovered > 0, "the reaper recovered nothing of the cut-off workers"
    # and the link came back early enough that the brokers would still have taken a purchase
    # delivered then (the ledger and the adapters refuse one past the signal's deadline)
    assert result.restore_ms < result.deadline_ms - 2000, result
    for broker, proc in cut_off.items():
        assert "lost its lease" in proc.log.read_text(errors="replace"), broker
    theirs = Counter(p.broker for p in purchases if p.cut_off)
    print(
        f"partition: {result.counted} counted, {len(by_trade)} records "
        f"{dict(Counter(t['status'] for t in trades))}, {len(purchases)} purchases "
        f"({dict(theirs)} by the cut-off workers, all before the cut), "
        f"{sum(n - 1 for n in bought.values())} doubles, {result.recovered} claims recovered, "
        f"link down {(result.restore_ms - result.cut_ms) / 1000:.1f} s"
    )


@dataclass(frozen=True)
class Purchase:
    broker: str
    trade_id: str
    arrived_ms: int
    cut_off: bool  # made by a worker of the cut-off host
    via: str = ""  # the simulator's connection number, the paper ledger's worker


@dataclass
class CutResult:
    signal_id: str
    counted: int
    deadline_ms: int
    cut_ms: int
    restore_ms: int
    recovered: int


def _purchases(
    r: sync_redis.Redis, sim_url: str, signal_id: str, ns_ip: str, ns_workers: set[str]
) -> list[Purchase]:
    """Every purchase of the signal at both brokers, from their own books: the paper ledger's
    contracts (the ledger's clock, the worker that bought), the simulator's log (arrival, peer)."""
    found = []
    for raw in r.hvals(ledger.CONTRACTS):
        contract = json.loads(raw)
        if str(contract["client_order_id"]).startswith(f"{signal_id}-"):
            cut_off = contract.get("worker") in ns_workers
            found.append(
                Purchase(
                    "paper",
                    contract["client_order_id"],
                    contract["bought_ms"],
                    cut_off,
                    str(contract.get("worker")),
                )
            )
    made = httpx.get(f"{sim_url}/_sim/purchases", timeout=10).json()["purchases"]
    for p in made:
        passthrough = p.get("passthrough") or {}
        if passthrough.get("signal_id") != signal_id:
            continue
        if "subscription_ids" in passthrough:
            trade = f"{signal_id}-{passthrough['subscription_ids'][p['token_index']]}"
        else:
            trade = passthrough["client_order_id"]
        found.append(
            Purchase("deriv", trade, p["received"], p["peer"] == ns_ip, str(p["connection"]))
        )
    return found


async def _cut_mid_signal(
    r: sync_redis.Redis,
    netns: Netns,
    channel_id: str,
    watcher: Live,
    ns_workers: dict[str, str],
    sim_url: str,
) -> CutResult:
    ours = set(ns_workers.values())
    signal_ = {
        "channel_id": channel_id,
        "asset": "R_100",
        "direction": "CALL",
        "expiry_seconds": 60,
    }
    ack = await watcher.emit("signal", signal_)
    assert ack["ok"] is True, ack
    signal_id, counted = ack["signal_id"], ack["fanout"]["total"]

    def bought_by_both() -> bool:
        made = _purchases(r, sim_url, signal_id, netns.ns_ip, ours)
        return {p.broker for p in made if p.cut_off} == {"paper", "deriv"}

    await asyncio.to_thread(wait, bought_by_both, 10, 0.01, "the cut-off workers mid-batch")
    cut_ms = int(time.time() * 1000)
    netns.cut()
    try:

        def recovered() -> bool:  # their leases lapsed, the reaper took their claims over
            return all(
                not r.exists(keys.worker_heartbeat(w)) and not r.scard(keys.claims(w)) for w in ours
            ) and not any(r.scard(keys.work(signal_id, b)) for b in ns_workers)

        await asyncio.to_thread(wait, recovered, 20, 0.05, "the reaper to recover the claims")
        actions = [json.loads(a) for a in r.lrange(keys.REAPER_ACTIONS, 0, -1)]
        taken = sum(
            a["subscribers"]
            for a in actions
            if a["kind"] == "recovered" and a.get("worker") in ours
        )
    finally:
        restore_ms = int(time.time() * 1000)
        netns.restore()
    # Back on the network: the cut-off workers take new leases; whatever they held before is
    # not theirs any more.
    await asyncio.to_thread(
        wait, lambda: all(r.exists(keys.worker_heartbeat(w)) for w in ours), 30, 0.1,
        "the cut-off workers back with new leases",
    )  # fmt: skip
    return CutResult(signal_id, counted, ack["deadline_ms"], cut_ms, restore_ms, taken)


def _trades(base_url: str, token: str, signal_id: str, counted: int) -> list[dict[str, Any]]:
    """The signal's trade records once every counted subscriber has a terminal one."""
    items: list[dict[str, Any]] = []

    def complete() -> bool:
        r = httpx.get(
            f"{base_url}/api/trades?signal_id={signal_id}&limit=10000",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        items[:] = r.json()["items"]
        return len(items) >= counted

    with contextlib.suppress(TimeoutError):  # what is missing fails the asserts
        wait(complete, timeout=DEADLINE_MS / 1000 + 20, interval=0.2, what="every record")
    time.sleep(0.5)  # a late duplicate would land within this
    complete()
    return items

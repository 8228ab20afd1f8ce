"""The Redis failover harness shared by ``tests/test_failover.py`` and ``bench.failover``.

A master, a replica and three sentinels (:mod:`tests.sentinels`); the hub, a pool of each broker
and the reaper on the Sentinel URL; the paper ledger on a Redis of its own, so that the broker's
books survive the failover as a remote broker's would; a few hundred subscribers seeded straight
into the store (:mod:`bench.seed`), half on paper, half on the Deriv simulator; both brokers slowed
so that a signal's fan-out takes a second or two.

One run: a signal; once part of it is bought, the replica is cut off (stopped, its link dropped)
for :data:`PAUSE_S`, so the master surely holds claims and marks that no replica has (the window
asynchronous replication always leaves, made wide), the master is SIGKILLed, the replica resumed
and promoted by Sentinel, and the rest of the signal runs on the new master. Then, from outside
(:meth:`tests.chaos.Chaos.verify`): one terminal record per counted subscriber, at most one
purchase per subscriber at each broker, a purchase for every ``placed`` record and none without.
The killed node comes back, empty, as the new master's replica, for the next run.

The paper ledger takes an order once per client order id (a retry gets the same contract), so
a second purchase would not show there as two; the Deriv simulator counts every ``buy``, which is
where a double purchase shows. With ``REDIS_WAIT_REPLICAS=0`` (no ``WAIT``) the same run buys
subscribers twice there (``bench.failover --wait-replicas 0``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rq import Queue, Worker

from bench.seed import seed_simulator, seed_store
from core import keys
from core.connections import sync_redis_client
from signal_hub.settings import load_settings
from tests.chaos import Chaos, Verdict
from tests.client import Api, User, live
from tests.procs import running_system, wait_until
from tests.sentinels import HOST, SentinelGroup, start_ledger

BROKER_LATENCY_MS = 400
PAUSE_S = 0.8  # the replica misses this long of the master's writes before the master dies
WORKERS = 2  # per broker
DEADLINE_MS = 8000  # the channel's: the rest of the signal is still bought after the failover
FAILOVER_ENV = {
    "CLAIM_LEASE_S": "5",
    "WORKER_HEARTBEAT_S": "0.5",
    "RECONCILE_AFTER_MS": "500",
    "REAPER_INTERVAL_MS": "100",
    "REDRIVE_STALL_MS": "400",
    "PAPER_LATENCY_MS": str(BROKER_LATENCY_MS),
    "DRAIN_BATCH_SIZE": "10",
    "DRAIN_CONCURRENCY": "1",
    "REDIS_WAIT_MS": "100",
    "ACCESS_TOKEN_TTL_S": "3600",
}


@dataclass
class Run:
    """One failover, seen from outside."""

    signal_id: str
    counted: int
    bought_at_kill: int  # purchases at the brokers when the master was killed
    failover_s: float  # from the kill to a new master the sentinels agree on
    verdict: Verdict
    purchases: int = 0  # (signal, subscriber) pairs bought, both brokers
    paper_purchases: int = 0  # of which on the paper ledger (its own Redis)

    @property
    def doubles(self) -> int:
        return self.verdict.duplicate_purchases

    def line(self) -> str:
        v = self.verdict
        statuses = ", ".join(f"{k} {n}" for k, n in sorted(v.statuses.items()))
        return (
            f"{self.signal_id}: {self.counted} counted, {self.bought_at_kill} bought when the "
            f"master died, failover {self.failover_s:.1f} s; {v.records} records, "
            f"{self.purchases} purchases ({self.paper_purchases} paper), {self.doubles} doubles, "
            f"{v.missing} missing, "
            f"{v.duplicate_records} duplicate records, {v.placed_without_purchase} placed "
            f"without purchase, {v.purchase_without_placed} purchases without placed ({statuses})"
        )


@dataclass
class Failover:
    group: SentinelGroup
    chaos: Chaos
    runs: list[Run] = field(default_factory=list)

    def bought(self, signal_id: str) -> int:
        return sum(self.chaos.purchases(signal_id).values())

    def _paper_orders(self, signal_id: str) -> set[str]:
        """The client order ids of the signal's purchases in the paper ledger."""
        return {
            str(c["client_order_id"])
            for c in map(json.loads, self.chaos.ledger.hvals("paper:contracts"))
            if str(c.get("client_order_id", "")).startswith(f"{signal_id}-")
        }

    def last_purchase_ms(self, signal_id: str) -> float | None:
        """The brokers' own time of the signal's last purchase (ms since the epoch): the paper
        ledger's ``bought_ms``, the simulator's ``time``."""
        times = [
            float(c["bought_ms"])
            for c in map(json.loads, self.chaos.ledger.hvals("paper:contracts"))
            if str(c.get("client_order_id", "")).startswith(f"{signal_id}-")
        ]
        made = httpx.get(f"{self.chaos.system.sim_url}/_sim/purchases", timeout=10).json()
        times += [
            float(p["time"])
            for p in made["purchases"]
            if (p.get("passthrough") or {}).get("signal_id") == signal_id
        ]
        return max(times) if times else None

    def run_once(self) -> Run:
        ack = asyncio.run(self._send())
        signal_id, counted = str(ack["signal_id"]), int(ack["fanout"]["total"])
        wait_until(
            lambda: self.bought(signal_id) >= counted // 4,
            timeout=20,
            interval=0.02,
            what=f"a quarter of {signal_id} bought",
        )
        self.group.cut_replicas()
        time.sleep(PAUSE_S)
        killed_at = time.monotonic()
        old = self.group.kill_master()
        bought_at_kill = self.bought(signal_id)
        self.group.resume_replicas()
        new = self.group.wait_failover(old)
        failover_s = time.monotonic() - killed_at
        # The killed node is back, empty, as the new master's replica, as a restarted pod would
        # be: until then no mark can be confirmed, and the workers hold their batches back.
        self.group.restart_as_replica(old, new)
        verdict = self.chaos.verify(signal_id, counted, timeout=DEADLINE_MS / 1000 + 30)
        run = Run(signal_id, counted, bought_at_kill, failover_s, verdict)
        bought = self.chaos.purchases(signal_id)
        run.purchases = len(bought)
        run.paper_purchases = sum(1 for coid in bought if coid in self._paper_orders(signal_id))
        self.runs.append(run)
        return run

    async def _send(self) -> dict[str, Any]:
        watcher = await live(self.chaos.system.base_url, "/provider", self.chaos.provider)
        try:
            return await self.chaos.send(watcher)
        finally:
            await watcher.close()


def wait_registered(url: str, brokers: list[str]) -> None:
    """Until RQ lists every pool worker: the hub sizes a signal's drain jobs by that count, and
    a double purchase needs two workers of a broker (each one's adapter remembers its own)."""
    redis = sync_redis_client(url)
    try:
        for broker in brokers:
            queue = Queue(keys.queue_name(broker), connection=redis)
            wait_until(
                lambda q=queue: Worker.count(queue=q) >= WORKERS,
                timeout=30,
                what=f"{WORKERS} RQ workers on {broker}",
            )
    finally:
        redis.close()


@contextmanager
def failover_system(
    workdir: Path,
    subscribers: int = 300,
    db: int = 0,
    wait_replicas: int = 1,
    broker_latency_ms: int = BROKER_LATENCY_MS,
    deadline_ms: int = DEADLINE_MS,
    **settings: str,
) -> Iterator[Failover]:
    """Everything of the harness running (``settings`` over :data:`FAILOVER_ENV`); all of it
    stopped after."""
    group = SentinelGroup(workdir / "redis").start()
    ledger = start_ledger(workdir / "ledger")
    try:
        env = {
            **FAILOVER_ENV,
            "PAPER_LATENCY_MS": str(broker_latency_ms),
            **settings,
            "REDIS_URL": group.url(db),
            "PAPER_REDIS_URL": f"redis://{HOST}:{ledger.port}/0",
            "REDIS_WAIT_REPLICAS": str(wait_replicas),
        }
        with running_system(db, workdir / "logs", **env) as system:
            system.start_deriv_sim()
            faults = {"latency_ms": broker_latency_ms}
            httpx.post(f"{system.sim_url}/_sim/faults", json=faults).raise_for_status()
            seeded = asyncio.run(
                seed_store(
                    load_settings(system.env), subscribers, ["paper", "deriv"], 0, deadline_ms
                )
            )
            seed_simulator(system.sim_url, seeded.deriv_tokens)
            hub = system.start_hub()
            pools = {broker: system.start_pool(broker, WORKERS) for broker in ("paper", "deriv")}
            wait_registered(system.redis_url, list(pools))
            system.start_reaper()
            provider = User(seeded.provider_id, "", "provider", seeded.provider_token, "")
            api = Api(httpx.Client(base_url=system.base_url, timeout=20))
            paper, deriv = (len(seeded.channel.subscriptions[b]) for b in ("paper", "deriv"))
            chaos = Chaos(system, api, provider, seeded.channel.id, paper, deriv, pools, hub)
            yield Failover(group, chaos)
    finally:
        group.stop()
        ledger.popen.kill()
        ledger.popen.wait(5)

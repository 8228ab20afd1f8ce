"""Redis failover mid-fan-out, repeated; and what ``WAIT`` costs.

```
.venv/bin/python -m bench.failover --runs N [--subscribers 300] [--wait-replicas 1] [--json]
.venv/bin/python -m bench.failover --cost [--subscribers 1000] [--signals 6] [--blocks 2]
    [--calls 2000]
```

``--runs``: the harness of ``tests/test_failover.py`` (:mod:`tests.failover`) N times on one
Sentinel group (master, replica, three sentinels on 6400/26400 unless ``TEST_FAILOVER_PORT`` /
``TEST_SENTINEL_PORT``): each run kills the master mid-fan-out after its replica missed its last
writes. Prints one line per run, then the runs, the purchases checked, the doubles found, records
missing; exit status 1 if anything broke. ``--wait-replicas 0`` shows the same failover without
``WAIT`` (doubles expected).

``--cost``, on a master with one replica (no failover):

- per batch: the round trip of the step a worker adds after marking a batch (``SET`` of its probe
  key and ``WAIT 1 <ms>`` in one pipeline, :func:`broker_workers.replication.replicated`) against
  a ``PING`` on the same client, ``--calls`` times each, interleaved; medians and p99;
- per signal: the same channel of ``--subscribers`` (half paper, half Deriv simulator, 50 ms
  broker latency, the default batch size and lanes) bought ``--signals`` times by pools on
  ``REDIS_WAIT_REPLICAS=0``, then by new pools on 1, ``--blocks`` times over (off, on, off, on):
  last-purchase latency (emit to the brokers' own time of the last purchase), the median of each
  setting over every block's signals but the first (which warms the new pools' sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from broker_workers.replication import replicated
from core import keys
from core.connections import redis_client
from tests.client import live
from tests.failover import WORKERS, Failover, failover_system, wait_registered
from tests.sentinels import SentinelGroup

LOG_DIR = Path("/tmp/ctc-bench-logs/failover")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- runs ------------------------------------------------------------------------------------


def runs(opts: argparse.Namespace) -> int:
    totals = {"runs": 0, "purchases_checked": 0, "doubles": 0, "missing": 0, "broken": 0}
    with failover_system(
        opts.log_dir / "runs", opts.subscribers, wait_replicas=opts.wait_replicas
    ) as failover:
        for i in range(opts.runs):
            run = failover.run_once()
            print(f"run {i + 1}: {run.line()}", flush=True)
            totals["runs"] += 1
            totals["purchases_checked"] += run.purchases
            totals["doubles"] += run.doubles
            totals["missing"] += run.verdict.missing
            totals["broken"] += 0 if run.verdict.ok else 1
    print(
        f"runs {totals['runs']}, purchases checked {totals['purchases_checked']}, "
        f"doubles found {totals['doubles']}, records missing {totals['missing']} "
        f"(REDIS_WAIT_REPLICAS={opts.wait_replicas})"
    )
    if opts.json:
        print(json.dumps({**totals, "wait_replicas": opts.wait_replicas}))
    return 1 if totals["doubles"] or totals["missing"] or totals["broken"] else 0


# -- cost ------------------------------------------------------------------------------------


async def _round_trips(url: str, calls: int) -> dict[str, dict[str, float]]:
    redis = redis_client(url)
    wait: list[float] = []
    ping: list[float] = []
    try:
        for _ in range(50):  # warm the connection and the pool
            await redis.ping()
        for _ in range(calls):
            started = time.perf_counter()
            confirmed = await replicated(redis, keys.replication_probe("bench-wait"), 1, 100)
            wait.append((time.perf_counter() - started) * 1000)
            assert confirmed, "the replica did not confirm"
            started = time.perf_counter()
            await redis.ping()
            ping.append((time.perf_counter() - started) * 1000)
    finally:
        await redis.aclose()
    return {
        name: {"median_ms": round(statistics.median(v), 3), "p99_ms": round(_p(v, 99), 3)}
        for name, v in (("set_and_wait", wait), ("ping", ping))
    }


def _signals(failover: Failover, count: int) -> list[float]:
    """Last-purchase latency of ``count`` signals, one after the other (ms)."""
    latencies = []
    for _ in range(count):
        sent_ms, ack = asyncio.run(_send(failover))
        signal_id, counted = str(ack["signal_id"]), int(ack["fanout"]["total"])
        verdict = failover.chaos.verify(signal_id, counted, timeout=60)
        assert verdict.ok and verdict.statuses.get("placed") == counted, verdict
        last = failover.last_purchase_ms(signal_id)
        assert last is not None
        latencies.append(last - sent_ms)
        time.sleep(0.5)
    return latencies


async def _send(failover: Failover) -> tuple[float, dict[str, Any]]:
    chaos = failover.chaos
    watcher = await live(chaos.system.base_url, "/provider", chaos.provider)
    try:
        sent_ms = time.time() * 1000
        return sent_ms, await chaos.send(watcher)
    finally:
        await watcher.close()


def _restart_pools(failover: Failover, replicas: int) -> None:
    """New pools on ``REDIS_WAIT_REPLICAS=replicas`` (a worker reads its settings once)."""
    system = failover.chaos.system
    for broker, pool in list(failover.chaos.pools.items()):
        pool.stop()
        failover.chaos.pools[broker] = system.start_pool(
            broker, WORKERS, extra_env={"REDIS_WAIT_REPLICAS": str(replicas)}
        )
    wait_registered(system.redis_url, list(failover.chaos.pools))


def cost(opts: argparse.Namespace) -> int:
    group_dir = opts.log_dir / "cost"
    out: dict[str, Any] = {"subscribers": opts.subscribers, "signals": opts.signals}
    with failover_system(
        group_dir,
        opts.subscribers,
        wait_replicas=0,
        broker_latency_ms=50,
        deadline_ms=60_000,
        DRAIN_BATCH_SIZE="100",
        DRAIN_CONCURRENCY="8",
    ) as failover:
        group: SentinelGroup = failover.group
        out["per_batch"] = asyncio.run(_round_trips(group.url(0), opts.calls))
        print(f"  per batch: {out['per_batch']}", flush=True)
        latencies: dict[int, list[float]] = {0: [], 1: []}
        for block in range(opts.blocks):
            for replicas in (0, 1):
                if block or replicas:
                    _restart_pools(failover, replicas)
                measured = _signals(failover, opts.signals)
                print(f"  WAIT {'on ' if replicas else 'off'}: {[round(x) for x in measured]}")
                latencies[replicas] += measured[1:]  # the first warms the new pools' sessions
    off, on = latencies[0], latencies[1]
    out["last_purchase_ms"] = {
        "wait_off": {"median": round(statistics.median(off), 1), "signals": len(off)},
        "wait_on": {"median": round(statistics.median(on), 1), "signals": len(on)},
    }
    per_batch = out["per_batch"]
    print(
        f"per batch: SET+WAIT 1 {per_batch['set_and_wait']['median_ms']} ms median "
        f"({per_batch['set_and_wait']['p99_ms']} p99), PING {per_batch['ping']['median_ms']} ms "
        f"({per_batch['ping']['p99_ms']} p99), {opts.calls} calls each\n"
        f"last purchase, {opts.subscribers} subscribers, median of {len(off)} signals each: "
        f"WAIT off {out['last_purchase_ms']['wait_off']['median']} ms, "
        f"WAIT on {out['last_purchase_ms']['wait_on']['median']} ms"
    )
    if opts.json:
        print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cost", action="store_true", help="measure WAIT instead")
    parser.add_argument("--subscribers", type=int, default=None)
    parser.add_argument("--wait-replicas", type=int, default=1)
    parser.add_argument("--signals", type=int, default=6)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=2, help="--cost: off/on pairs of pools")
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    if opts.cost:
        opts.subscribers = opts.subscribers or 1000
        return cost(opts)
    opts.subscribers = opts.subscribers or 300
    return runs(opts)


if __name__ == "__main__":
    sys.exit(main())

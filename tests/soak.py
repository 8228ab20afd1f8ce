"""The soak: the fault suite's cases, drawn at random, for as long as you like.

``python -m tests.soak --minutes 30 [--seed N] [--redis-db 15]`` starts the real processes (hub,
paper and Deriv pools, reaper, Deriv simulator) on a Redis database of its own, then, signal after
signal, breaks one thing at a random moment: a worker SIGKILLed at a kill point or from outside,
Redis connections cut, the simulator dropping connections after the debit, the hub killed or
stopped. After each signal it checks the invariants from outside (see :mod:`tests.chaos`) and at
the end prints one row per kind of fault: cases, records, placed, missing, duplicates (records and
purchases) and record/purchase mismatches. Exits 1 if any invariant broke; logs are kept in
``/tmp/ctc-soak``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from broker_workers.faults import POINTS
from tests.chaos import CHAOS_ENV, SIM_FAULTS, Chaos, Verdict
from tests.procs import running_system

Fault = Callable[[Chaos, random.Random], Awaitable[Verdict]]


async def _send_and_verify(
    chaos: Chaos, rng: random.Random, during: Callable[[], object] | None, watch: bool = True
) -> Verdict:
    watcher = await chaos.watcher()
    try:
        ack = await chaos.send(watcher)
        if during is not None:
            await asyncio.sleep(rng.uniform(0, 0.2))
            during()
        return chaos.verify(ack["signal_id"], ack["fanout"]["total"], watcher if watch else None)
    finally:
        await watcher.close()


async def kill_point(chaos: Chaos, rng: random.Random) -> Verdict:
    chaos.arm(rng.choice(POINTS), rng.randint(1, 5))
    try:
        return await _send_and_verify(chaos, rng, None)
    finally:
        chaos.disarm()


async def kill_worker(chaos: Chaos, rng: random.Random) -> Verdict:
    broker = rng.choice(["paper", "deriv"])
    return await _send_and_verify(chaos, rng, lambda: chaos.kill_a_worker(broker))


async def cut_redis(chaos: Chaos, rng: random.Random) -> Verdict:
    return await _send_and_verify(chaos, rng, chaos.cut_redis_connections)


async def drop_after_debit(chaos: Chaos, rng: random.Random) -> Verdict:
    faults = {**SIM_FAULTS, "drop_after_debit_rate": 0.4, "seed": rng.randint(0, 10**6)}
    httpx.post(f"{chaos.system.sim_url}/_sim/faults", json=faults).raise_for_status()
    try:
        return await _send_and_verify(chaos, rng, None)
    finally:
        httpx.post(f"{chaos.system.sim_url}/_sim/faults", json=SIM_FAULTS).raise_for_status()


async def stop_hub(chaos: Chaos, rng: random.Random) -> Verdict:
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    watcher = await chaos.watcher()
    ack = await chaos.send(watcher)
    await asyncio.sleep(rng.uniform(0, 0.2))
    chaos.kill_hub(sig)
    await watcher.close()
    chaos.restart_hub()
    return chaos.verify(ack["signal_id"], ack["fanout"]["total"])


FAULTS: dict[str, Fault] = {
    "worker SIGKILL at a kill point": kill_point,
    "worker SIGKILL at a random moment": kill_worker,
    "Redis connections cut": cut_redis,
    "Deriv drops after the debit": drop_after_debit,
    "hub SIGKILL/SIGTERM": stop_hub,
}
WEIGHTS = [4, 4, 2, 2, 1]


def table(results: dict[str, list[Verdict]]) -> str:
    head = ("fault", "cases", "records", "placed", "missing", "dup records", "dup purchases",
            "mismatches")  # fmt: skip
    rows = [head]
    for name, verdicts in results.items():
        rows.append(
            (
                name,
                str(len(verdicts)),
                str(sum(v.records for v in verdicts)),
                str(sum(v.statuses["placed"] for v in verdicts)),
                str(sum(v.missing for v in verdicts)),
                str(sum(v.duplicate_records for v in verdicts)),
                str(sum(v.duplicate_purchases for v in verdicts)),
                str(sum(v.placed_without_purchase + v.purchase_without_placed for v in verdicts)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


async def soak(minutes: float, seed: int, db: int) -> bool:
    rng = random.Random(seed)
    results: dict[str, list[Verdict]] = defaultdict(list)
    with running_system(db, Path("/tmp/ctc-soak"), **CHAOS_ENV) as system:
        chaos = Chaos.start(system)
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            name = rng.choices(list(FAULTS), WEIGHTS)[0]
            verdict = await FAULTS[name](chaos, rng)
            results[name].append(verdict)
            mark = "ok" if verdict.ok and verdict.records == verdict.counted else "BROKEN"
            print(f"{mark:6} {name}: {dict(verdict.statuses)}", flush=True)
            for broker in ("paper", "deriv"):
                chaos.wait_for_workers(broker)
    print()
    print(table(results))
    return all(v.ok and v.records == v.counted for vs in results.values() for v in vs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--redis-db", type=int, default=15)
    args = parser.parse_args()
    print(f"soak: {args.minutes} min, seed {args.seed}, Redis db {args.redis_db}", flush=True)
    sys.exit(0 if asyncio.run(soak(args.minutes, args.seed, args.redis_db)) else 1)


if __name__ == "__main__":
    main()

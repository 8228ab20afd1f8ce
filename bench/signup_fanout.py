"""A first fan-out measurement through the public interface (the full benchmark is issue 5's).

``python -m bench.signup_fanout --broker paper|deriv --subscribers N [--signals S]
[--latency-ms L] [--workers W]`` starts the real processes on Redis database 13, signs N
subscribers up through the REST API (so keep N in the hundreds), sends S signals over Socket.IO
and prints, per signal, the acknowledgement time and the time from the signal to the broker's
acceptance of its last purchase (the paper broker's or the simulator's own clock), then medians
over signals 2..S (the first warms caches and connections).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import httpx

from tests.client import Api, User, live
from tests.procs import System, running_system


def seed(system: System, broker: str, n: int) -> tuple[User, str]:
    """A provider, its channel and ``n`` subscribers with stake 1 on ``broker``."""
    with httpx.Client(base_url=system.base_url, timeout=30) as http:
        api = Api(http)
        provider = api.signup("provider")
        channel = api.channel(provider)
        for i in range(n):
            credentials = {}
            if broker == "deriv":
                credentials = {"token": f"bench-{i}"}
                account = {"token": f"bench-{i}", "balance": 10**6, "currency": "USD"}
                httpx.post(f"{system.sim_url}/_sim/accounts", json=account).raise_for_status()
            api.subscriber(channel["id"], {"mode": "fixed", "amount": 1}, broker, credentials)
    return provider, str(channel["id"])


async def measure(system: System, provider: User, channel_id: str, n: int, signals: int) -> None:
    watcher = await live(system.base_url, "/provider", provider)
    acks, lasts = [], []
    for i in range(signals):
        watcher.executions.clear()
        started = time.perf_counter()
        await watcher.emit(
            "signal",
            {"channel_id": channel_id, "asset": "R_100", "direction": "CALL", "expiry_seconds": 60},
        )
        ack_ms = (time.perf_counter() - started) * 1000
        await watcher.wait_for("executions", lambda: len(watcher.executions) >= n, 60)
        placed = [e for e in watcher.executions if e["status"] == "placed"]
        last_ms = max(e["latency_ms"] for e in placed) if placed else float("nan")
        print(f"signal {i + 1}: ack {ack_ms:6.1f} ms  placed {len(placed)}/{n}  "
              f"last purchase {last_ms:6.0f} ms after the signal")  # fmt: skip
        if i:
            acks.append(ack_ms)
            lasts.append(last_ms)
        await asyncio.sleep(0.5)
    await watcher.close()
    if lasts:
        print(f"median of signals 2..{signals}: ack {statistics.median(acks):.1f} ms, "
              f"last purchase {statistics.median(lasts):.0f} ms")  # fmt: skip


def run(broker: str, n: int, signals: int, latency_ms: int, workers: int) -> None:
    env = {"SIGNUP_RATE_LIMIT_PER_MIN": "1000000", "PAPER_LATENCY_MS": str(latency_ms)}
    with running_system(13, Path("/tmp/ctc-bench-logs"), **env) as system:
        system.start_hub()
        if broker == "deriv":
            system.start_deriv_sim()
            faults = {"latency_ms": latency_ms}
            httpx.post(f"{system.sim_url}/_sim/faults", json=faults).raise_for_status()
        system.start_pool(broker, workers)
        provider, channel_id = seed(system, broker, n)
        asyncio.run(measure(system, provider, channel_id, n, signals))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.signup_fanout")
    parser.add_argument("--broker", choices=["paper", "deriv"], default="paper")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--signals", type=int, default=7)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args()
    run(a.broker, a.subscribers, a.signals, a.latency_ms, a.workers)


if __name__ == "__main__":
    main()

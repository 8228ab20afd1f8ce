"""The fan-out benchmark: one signal to N subscribers, on the real processes of this machine.

``python -m bench.fanout --subscribers N [--brokers paper,deriv] [--workers-per-broker W]
[--broker-latency-ms L] [--signals S] [--json]`` (see ``--help`` and ``bench/README.md``):

1. starts the Deriv simulator (when ``deriv`` is among the brokers), seeds N subscribers straight
   into the store (:mod:`bench.seed`), split round-robin across the brokers, then starts the hub
   (which rebuilds the Redis directory from the store, as after any restart), the reaper and one
   worker pool of W processes per broker;
2. sends S signals from a real Socket.IO client, one at a time, and per signal measures the
   acknowledgement, then waits for the brokers to have accepted every purchase it announced and
   for the hub to have relayed every record, and reads each purchase's acceptance time from the
   broker's own ledger (:mod:`bench.ledger`);
3. with ``--redis-shards 1,3``, does 1. and 2. once per K, the hot path on K Redis servers of its
   own (``REDIS_SHARDS``, :mod:`core.shards`; ``0`` = unsharded, on ``REDIS_URL``), and reports
   each shard's Redis CPU per copy and the ceiling it projects (:func:`shard_figures`);
4. runs the RQ-alone baseline (:mod:`bench.baseline`) on the same brokers and the same number of
   worker processes, on the first M subscribers; when M < N, S more signals go to a channel of
   just those M subscribers, so that the speedup compares like with like.

Every latency is from the moment the client emitted the signal (this machine's clock, as are the
brokers'). Medians are over signals 2..S: the first one warms connections and caches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis
import socketio
from redis.asyncio import Redis
from rq import Queue, Worker

from bench import baseline
from bench.host import CpuMeter, Profiles, command_of, peak_rss_mb
from bench.ledger import Ledger, Mark, connect
from bench.seed import Channel, Seeded, seed_simulator, seed_store
from core import keys
from core.clock import now_ms
from signal_hub.settings import load_settings
from tests.procs import (
    REDIS_HOST,
    Proc,
    System,
    children,
    free_port,
    redis_servers,
    redis_url,
    running_system,
    wait_until,
)

BROKERS = ("paper", "deriv")
METRICS = (
    "ack_ms", "expand_ms", "first_purchase_ms", "last_purchase_ms", "p50_ms", "p99_ms",
    "purchases", "purchases_per_s", "relay_ms",
)  # fmt: skip
POLL_S = 0.02


class BenchError(RuntimeError):
    pass


@dataclass
class Options:
    subscribers: int
    brokers: list[str]
    workers_per_broker: int = 2
    broker_latency_ms: float = 50
    signals: int = 5
    baseline_subscribers: int | None = None  # None: min(N, 2000)
    no_baseline: bool = False
    max_delay_ms: int = 60_000
    expiry_seconds: int = 600
    asset: str = "R_100"
    redis_db: int = 13
    log_dir: Path = Path("/tmp/ctc-bench-logs")
    signal_timeout_s: float = 120
    relay_timeout_s: float = 600
    gap_s: float = 0.5
    py_spy_dir: Path | None = None
    redis_shards: int = 0  # hot-path Redis servers of the run's own (REDIS_SHARDS); 0: REDIS_URL

    @property
    def baseline_n(self) -> int:
        if self.no_baseline:
            return 0
        wanted = self.baseline_subscribers
        return min(self.subscribers, 2000 if wanted is None else wanted)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q``% of them at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _median(values: list[Any]) -> float | None:
    numbers = [v for v in values if v is not None]
    return _round(statistics.median(numbers), 2) if numbers else None


# -- one signal ------------------------------------------------------------------------------


class Sender:
    """The provider's Socket.IO client and what the measurement reads besides it."""

    def __init__(
        self, system: System, opts: Options, token: str, shard_pids: list[int] | None = None
    ) -> None:
        self.system, self.opts, self.token = system, opts, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.redis = connect(redis_url(system.db))
        self.ledger = Ledger(self.redis, system.sim_url if "deriv" in opts.brokers else None)
        self.cpu = CpuMeter({})
        self.shard_pids = shard_pids or []
        # the hot path's Redis and tag per shard (core.shards): REDIS_URL alone, unsharded
        urls = [u for u in system.env.get("REDIS_SHARDS", "").split(",") if u]
        self.shards = [(connect(u), f"s{i}") for i, u in enumerate(urls)] or [(self.redis, "")]

    async def __aenter__(self) -> Sender:
        groups = await _cpu_groups(self.system, self.redis)
        groups.update({f"redis_shard_{i}": [pid] for i, pid in enumerate(self.shard_pids)})
        self.cpu = CpuMeter(groups)
        await self.sio.connect(
            self.system.base_url,
            namespaces=["/provider"],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=60,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sio.disconnect()
        await self.ledger.close()
        for client, tag in self.shards:
            if tag:
                await client.aclose()
        await self.redis.aclose()

    async def _wait_purchases(self, mark: Mark, expected: dict[str, int], until: float) -> None:
        """Poll the brokers' counts, often at first, then less so as not to load them."""
        started = time.monotonic()
        while time.time() < until:
            counts = await self.ledger.counts(mark)
            if all(counts.get(b, 0) >= n for b, n in expected.items()):
                return
            await asyncio.sleep(POLL_S if time.monotonic() - started < 2 else POLL_S * 10)

    async def _results_drained(self) -> bool:
        for client, tag in self.shards:
            stream = keys.on_shard(tag, keys.RESULTS)
            if not await client.xlen(stream):
                continue
            groups = [
                g for g in await client.xinfo_groups(stream) if g["name"] == keys.RESULTS_GROUP
            ]
            if not groups or groups[0]["pending"] or groups[0].get("lag"):
                return False
        return True

    async def _wait_relay(self, emit_ms: float) -> float | None:
        """Until the hub has relayed (emitted and stored) every record so far: ms since emit."""
        until = time.time() + self.opts.relay_timeout_s
        while time.time() < until:
            if await self._results_drained():
                return time.time() * 1000 - emit_ms
            await asyncio.sleep(POLL_S * 2)
        return None

    async def signal(self, channel: Channel) -> dict[str, Any]:
        opts = self.opts
        mark = await self.ledger.mark()
        payload = {"channel_id": channel.id, "asset": opts.asset, "direction": "CALL",
                   "expiry_seconds": opts.expiry_seconds}  # fmt: skip
        self.cpu.start()
        emit_ms = time.time() * 1000
        started = time.perf_counter()
        ack = await self.sio.call("signal", payload, namespace="/provider", timeout=60)
        ack_ms = (time.perf_counter() - started) * 1000
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise BenchError(f"the hub refused the signal: {ack}")
        signal_id = str(ack["signal_id"])
        expected = {b: int(n) for b, n in ack["fanout"]["by_broker"].items()}
        expand_ms = None
        home, tag = self.shards[0]
        created = await home.hget(keys.on_shard(tag, keys.signal(signal_id)), "created_ms")
        if created is not None:
            expand_ms = int(created) - emit_ms
        elif "deadline_ms" in ack:
            expand_ms = int(ack["deadline_ms"]) - opts.max_delay_ms - emit_ms

        until = time.time() + min(opts.signal_timeout_s, opts.max_delay_ms / 1000 + 5)
        await self._wait_purchases(mark, expected, until)
        cpu_fanout = self.cpu.read()
        by_broker = await self.ledger.times(mark, signal_id)
        relay_ms = await self._wait_relay(emit_ms)
        cpu_relayed = self.cpu.read()
        latencies = sorted(t - emit_ms for ts in by_broker.values() for t in ts)
        last = latencies[-1] if latencies else None
        return {
            "signal_id": signal_id,
            "fanout": sum(expected.values()),
            "ack_ms": _round(ack_ms, 2),
            "expand_ms": _round(expand_ms),
            "first_purchase_ms": _round(latencies[0]) if latencies else None,
            "last_purchase_ms": _round(last),
            "p50_ms": _round(percentile(latencies, 50)) if latencies else None,
            "p99_ms": _round(percentile(latencies, 99)) if latencies else None,
            "purchases": len(latencies),
            "purchases_by_broker": {b: len(ts) for b, ts in by_broker.items() if b in expected},
            "last_purchase_by_broker_ms": {
                b: _round(max(ts) - emit_ms) for b, ts in by_broker.items() if ts
            },
            "purchases_per_s": _round(len(latencies) / (last / 1000)) if last else None,
            "relay_ms": _round(relay_ms),
            "cpu_s": {"fanout": cpu_fanout, "until_relayed": cpu_relayed},
        }

    async def signals(self, channel: Channel, label: str) -> list[dict[str, Any]]:
        results = []
        for i in range(self.opts.signals):
            result = await self.signal(channel)
            results.append(result)
            print(f"  {label} signal {i + 1}/{self.opts.signals}: {_line(result)}", flush=True)
            await asyncio.sleep(self.opts.gap_s)
        return results


def _line(r: dict[str, Any]) -> str:
    by_broker = ", ".join(f"{b} {ms}" for b, ms in r["last_purchase_by_broker_ms"].items())
    return (
        f"ack {r['ack_ms']} ms, purchases {r['purchases']}/{r['fanout']}, first "
        f"{r['first_purchase_ms']} ms, last {r['last_purchase_ms']} ms ({by_broker}), relayed "
        f"{r['relay_ms']} ms"
    )


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: its value per signal, and the median over signals 2..S (all if S is 1)."""
    measured = results[1:] if len(results) > 1 else results
    out: dict[str, Any] = {}
    for metric in METRICS:
        out[metric] = {
            "median": _median([r[metric] for r in measured]),
            "per_signal": [r[metric] for r in results],
        }
    brokers = sorted({b for r in results for b in r["last_purchase_by_broker_ms"]})
    out["last_purchase_by_broker_ms"] = {
        "median": {
            b: _median([r["last_purchase_by_broker_ms"].get(b) for r in measured]) for b in brokers
        },
        "per_signal": [r["last_purchase_by_broker_ms"] for r in results],
    }
    out["cpu_s"] = {
        window: {
            name: _median([r["cpu_s"][window].get(name) for r in measured])
            for name in measured[0]["cpu_s"][window]
        }
        for window in ("fanout", "until_relayed")
    }
    acks = [r["ack_ms"] for r in measured]
    out["ack_p99_ms"] = _round(percentile(acks, 99), 2) if acks else None
    out["fanout"] = [r["fanout"] for r in results]
    return out


# -- the baseline ----------------------------------------------------------------------------


async def run_baseline(system: System, opts: Options, channel: Channel) -> dict[str, Any]:
    """RQ alone on ``channel``'s subscribers: one job each, plain forking ``rq worker``s."""
    procs: list[Proc] = []
    url = redis_url(system.db)
    for broker in channel.subscriptions:
        for i in range(opts.workers_per_broker):
            procs.append(system.spawn(f"baseline_{broker}_{i}", baseline.worker_argv(broker, url)))
    _wait_for_rq_workers(
        url, [baseline.queue_name(b) for b in channel.subscriptions], opts.workers_per_broker
    )
    redis = connect(url)
    ledger = Ledger(redis, system.sim_url if "deriv" in channel.subscriptions else None)
    try:
        mark = await ledger.mark()
        tag = f"baseline{uuid.uuid4().hex[:12]}"
        order = {"tag": tag, "asset": opts.asset, "direction": "CALL",
                 "expiry_seconds": opts.expiry_seconds,
                 "deadline_ms": now_ms() + 3600_000, "channel_id": channel.id}  # fmt: skip
        started_ms = time.time() * 1000
        baseline.enqueue(url, order, channel.subscriptions)
        expected = {b: len(ids) for b, ids in channel.subscriptions.items()}
        until = time.time() + 60 + channel.size * 0.5
        while time.time() < until:
            counts = await ledger.counts(mark)
            if all(counts[b] >= n for b, n in expected.items()):
                break
            await asyncio.sleep(0.2)
        by_broker = await ledger.times(mark, tag)
    finally:
        await ledger.close()
        await redis.aclose()
        for proc in procs:
            proc.stop()
    latencies = sorted(t - started_ms for ts in by_broker.values() for t in ts)
    return {
        "subscribers": channel.size,
        "last_purchase_ms": _round(latencies[-1]) if latencies else None,
        "first_purchase_ms": _round(latencies[0]) if latencies else None,
        "p50_ms": _round(percentile(latencies, 50)) if latencies else None,
        "purchases": len(latencies),
        "purchases_by_broker": {b: len(ts) for b, ts in by_broker.items() if b in expected},
    }


# -- the run ---------------------------------------------------------------------------------


def _wait_registered(system: System, opts: Options) -> None:
    """Until RQ lists every pool worker on its queue: the hub sizes a signal's drain jobs by
    that count, so a signal sent earlier would leave a worker out."""
    queues = [keys.queue_name(b) for b in opts.brokers]
    _wait_for_rq_workers(redis_url(system.db), queues, opts.workers_per_broker)


def _wait_for_rq_workers(url: str, queue_names: list[str], count: int) -> None:
    r = sync_redis.Redis.from_url(url)
    try:
        for name in queue_names:
            queue = Queue(name, connection=r)
            wait_until(
                lambda q=queue: Worker.count(queue=q) >= count,
                timeout=60,
                what=f"{count} RQ workers on {name}",
            )
    finally:
        r.close()


def _workers(system: System) -> dict[str, int]:
    """The worker processes: the pools' children (a worker's own child is RQ's scheduler)."""
    pids = {}
    for p in system.procs:
        if p.name.startswith("worker_"):
            for i, pid in enumerate(children(p.popen.pid)):
                pids[f"{p.name}_{i}"] = pid
    return pids


async def _cpu_groups(system: System, redis: Redis) -> dict[str, list[int]]:
    """The processes whose CPU time the benchmark reports, Redis' too when it runs here."""
    groups = {
        "hub": [p.popen.pid for p in system.procs if p.name == "hub"],
        "workers": list(_workers(system).values()),
        "deriv_sim": [p.popen.pid for p in system.procs if p.name == "deriv_sim"],
        "bench": [os.getpid()],
    }
    pid = int((await redis.info("server")).get("process_id", 0))
    if REDIS_HOST in ("127.0.0.1", "localhost") and command_of(pid).startswith("redis"):
        groups["redis"] = [pid]
    return {name: pids for name, pids in groups.items() if pids}


def _peak_rss(system: System) -> dict[str, Any]:
    hub = next((p for p in system.procs if p.name == "hub"), None)
    sim = next((p for p in system.procs if p.name == "deriv_sim"), None)
    workers = [rss for rss in map(peak_rss_mb, _workers(system).values()) if rss is not None]
    return {
        "hub": peak_rss_mb(hub.popen.pid) if hub else None,
        "workers": max(workers) if workers else None,
        "workers_total": _round(sum(workers)) if workers else None,
        "deriv_sim": peak_rss_mb(sim.popen.pid) if sim else None,
    }


def _profiled_pids(system: System) -> dict[str, int]:
    pids = {p.name: p.popen.pid for p in system.procs if p.name in ("hub", "deriv_sim")}
    return {**pids, **_workers(system)}


async def _measure(
    system: System, opts: Options, seeded: Seeded, shard_pids: list[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Sender(system, opts, seeded.provider_token, shard_pids) as sender:
        profiles = Profiles(opts.py_spy_dir, _profiled_pids(system)) if opts.py_spy_dir else None
        try:
            out["ours"] = await sender.signals(seeded.channel, f"N={seeded.channel.size}")
        finally:
            if profiles is not None:
                profiles.stop()
        out["rss_mb"] = _peak_rss(system)
        if seeded.like_channel is not None:
            label = f"N={seeded.like_channel.size} (the baseline's N)"
            out["ours_like"] = await sender.signals(seeded.like_channel, label)
    if opts.baseline_n:
        channel = seeded.like_channel or seeded.channel
        print(f"  baseline: RQ alone, {channel.size} jobs ...", flush=True)
        out["baseline"] = await run_baseline(system, opts, channel)
    return out


def run(opts: Options) -> dict[str, Any]:
    """One run; with ``opts.redis_shards`` its hot path on that many Redis servers of its own."""
    ports = [free_port() for _ in range(opts.redis_shards)]
    with redis_servers(ports, opts.log_dir / "redis-shards") as shard_pids:
        return _run(opts, ports, shard_pids)


def _run(opts: Options, shard_ports: list[int], shard_pids: list[int]) -> dict[str, Any]:
    env = {"PAPER_LATENCY_MS": str(opts.broker_latency_ms), "ACCESS_TOKEN_TTL_S": "86400"}
    if shard_ports:
        env["REDIS_SHARDS"] = ",".join(f"redis://127.0.0.1:{p}/0" for p in shard_ports)
    phases: dict[str, float] = {}
    for old_log in opts.log_dir.glob("*.log"):  # each process appends to its own
        old_log.unlink()
    with running_system(opts.redis_db, opts.log_dir, **env) as system:
        started = time.perf_counter()
        if "deriv" in opts.brokers:
            system.start_deriv_sim()
            faults = {"latency_ms": opts.broker_latency_ms}
            httpx.post(f"{system.sim_url}/_sim/faults", json=faults).raise_for_status()
        settings = load_settings(system.env)
        like_n = opts.baseline_n if 0 < opts.baseline_n < opts.subscribers else 0
        seeded = asyncio.run(
            seed_store(settings, opts.subscribers, opts.brokers, like_n, opts.max_delay_ms)
        )
        if seeded.deriv_tokens:
            seed_simulator(system.sim_url, seeded.deriv_tokens)
        phases["seed_s"] = time.perf_counter() - started

        started = time.perf_counter()
        system.start_hub(timeout=900)
        phases["hub_start_s"] = time.perf_counter() - started
        started = time.perf_counter()
        start_reaper = getattr(system, "start_reaper", None)  # when the system has one
        if start_reaper is not None:
            start_reaper()
        for broker in opts.brokers:
            system.start_pool(broker, opts.workers_per_broker, timeout=600)
        _wait_registered(system, opts)
        phases["pools_start_s"] = time.perf_counter() - started
        print(
            f"  seeded {opts.subscribers} subscribers in {phases['seed_s']:.1f} s, hub up in "
            f"{phases['hub_start_s']:.1f} s, pools in {phases['pools_start_s']:.1f} s",
            flush=True,
        )
        measured = asyncio.run(_measure(system, opts, seeded, shard_pids))

    result: dict[str, Any] = {
        "subscribers": opts.subscribers,
        "brokers": opts.brokers,
        "workers_per_broker": opts.workers_per_broker,
        "broker_latency_ms": opts.broker_latency_ms,
        "signals": opts.signals,
        "redis_shards": opts.redis_shards,
        **summarize(measured["ours"]),
        "rss_mb": measured["rss_mb"],
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "baseline": None,
        "speedup": None,
    }
    if "baseline" in measured:
        base = measured["baseline"]
        ours = result["last_purchase_ms"]["median"]
        if "ours_like" in measured:
            like = summarize(measured["ours_like"])
            ours = like["last_purchase_ms"]["median"]
            base["ours_last_purchase_ms"] = ours
            base["ours_per_signal"] = like["last_purchase_ms"]["per_signal"]
            base["note"] = (
                f"baseline at N={base['subscribers']}, not {opts.subscribers}: compared with "
                f"our signals to a channel of the same {base['subscribers']} subscribers"
            )
        result["baseline"] = base
        if ours and base["last_purchase_ms"]:
            result["speedup"] = _round(base["last_purchase_ms"] / ours, 1)
    return result


# -- output ----------------------------------------------------------------------------------


def shard_figures(result: dict[str, Any]) -> dict[str, Any]:
    """What the hot path's Redis costs per copy, and the ceiling it sets, from a run's medians.

    The CPU window is the emit until every record is relayed (the relay's reads of the results
    streams are Redis work of the hot path too). ``redis_us_per_copy``: the hot path's Redis
    CPU (every shard; unsharded, the one Redis, which also holds RQ and the paper ledger) per
    copy; ``busiest_shard_us_per_copy``: the busiest shard's CPU per copy of the whole signal;
    ``ceiling_per_s``: copies a second when that shard has one core to itself, 1 /
    ``busiest_shard_us_per_copy``, which for an even split is K / (Redis CPU per copy).
    """
    cpu = result["cpu_s"]["until_relayed"]
    copies = result["purchases"]["median"] or 0
    shards = sorted(k for k in cpu if k.startswith("redis_shard_"))
    hot = [cpu[k] or 0.0 for k in shards] or [cpu.get("redis") or 0.0]
    out: dict[str, Any] = {
        "shards": result["redis_shards"],
        "copies": copies,
        "copies_per_s": result["purchases_per_s"]["median"],
        "last_purchase_ms": result["last_purchase_ms"]["median"],
        "redis_cpu_s_by_shard": hot,
        "main_redis_cpu_s": cpu.get("redis") if shards else None,
    }
    if copies:
        out["redis_us_per_copy"] = _round(sum(hot) / copies * 1e6)
        out["busiest_shard_us_per_copy"] = _round(max(hot) / copies * 1e6)
        out["ceiling_per_s"] = _round(copies / max(hot), 0) if max(hot) else None
    return out


def shard_table(figures: list[dict[str, Any]]) -> str:
    lines = [
        "sharding (medians; Redis CPU from the emit until relayed):",
        f"{'shards':>6} {'copies/s':>9} {'last ms':>8} {'Redis us/copy':>14} "
        f"{'busiest shard us/copy':>22} {'ceiling/s':>10}  Redis CPU-s by shard (main)",
    ]
    for f in figures:
        by_shard = ", ".join(f"{v:.2f}" for v in f["redis_cpu_s_by_shard"])
        main = f" (main {f['main_redis_cpu_s']})" if f["main_redis_cpu_s"] is not None else ""
        lines.append(
            f"{f['shards']:>6} {_cell(f['copies_per_s']):>9} {_cell(f['last_purchase_ms']):>8} "
            f"{_cell(f.get('redis_us_per_copy')):>14} "
            f"{_cell(f.get('busiest_shard_us_per_copy')):>22} "
            f"{_cell(f.get('ceiling_per_s')):>10}  {by_shard}{main}"
        )
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    cols = [
        ("ack_ms", "ack"), ("expand_ms", "expand"), ("first_purchase_ms", "first"),
        ("last_purchase_ms", "last"), ("p50_ms", "p50"), ("p99_ms", "p99"),
        ("purchases", "bought"), ("purchases_per_s", "per s"), ("relay_ms", "relayed"),
    ]  # fmt: skip
    width = 10
    lines = [
        f"fan-out: {result['subscribers']} subscribers on {','.join(result['brokers'])}, "
        f"{result['workers_per_broker']} workers per broker, broker latency "
        f"{result['broker_latency_ms']} ms; times in ms from the signal's emit",
        "signal  " + "".join(f"{title:>{width}}" for _, title in cols),
    ]
    for i in range(result["signals"]):
        values = [result[key]["per_signal"][i] for key, _ in cols]
        lines.append(f"{i + 1:<8}" + "".join(f"{_cell(v):>{width}}" for v in values))
    medians = [result[key]["median"] for key, _ in cols]
    lines.append(f"{'median':<8}" + "".join(f"{_cell(v):>{width}}" for v in medians))
    by_broker = result["last_purchase_by_broker_ms"]["median"]
    lines.append(
        "last purchase by broker (median): "
        + ", ".join(f"{b} {ms} ms" for b, ms in by_broker.items())
    )
    lines.append(f"ack p99 over signals 2..S: {result['ack_p99_ms']} ms")
    for window, title in (
        ("fanout", "until the last purchase"),
        ("until_relayed", "until relayed"),
    ):
        cpu = ", ".join(f"{k} {v}" for k, v in result["cpu_s"][window].items())
        lines.append(f"CPU seconds from the emit {title} (median): {cpu}")
    rss = result["rss_mb"]
    lines.append(
        f"peak RSS: hub {rss['hub']} MB, largest worker {rss['workers']} MB (all workers "
        f"{rss['workers_total']} MB), Deriv simulator {rss['deriv_sim']} MB"
    )
    phases = result["phases_s"]
    lines.append(
        f"set-up: seeding {phases['seed_s']} s, hub start-up (directory rebuild) "
        f"{phases['hub_start_s']} s, worker pools {phases['pools_start_s']} s"
    )
    base = result["baseline"]
    if base:
        lines.append(
            f"baseline (RQ alone, one job per subscriber, {result['workers_per_broker']} forking "
            f"workers per broker): N={base['subscribers']}, last purchase "
            f"{base['last_purchase_ms']} ms, purchases {base['purchases']}"
        )
        if base.get("note"):
            lines.append(
                f"  {base['note']}: last purchase {base['ours_last_purchase_ms']} ms (median)"
            )
        lines.append(f"speedup (baseline over ours, same N): {result['speedup']}x")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def parse(argv: list[str] | None = None) -> tuple[Options, bool, list[int]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--subscribers", "-n", type=int, required=True)
    parser.add_argument("--brokers", default="paper,deriv", help="comma-separated: paper,deriv")
    parser.add_argument("--workers-per-broker", type=int, default=2)
    parser.add_argument("--broker-latency-ms", type=float, default=50)
    parser.add_argument("--signals", type=int, default=5)
    parser.add_argument(
        "--baseline-subscribers", type=int, default=None,
        help="N of the RQ-alone baseline (default min(N, 2000)); when below N, our side is "
        "measured again on a channel of that many subscribers, so the speedup is like for like",
    )  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--max-delay-ms", type=int, default=60_000,
        help="the channel's signal deadline (default 60000, the API's maximum, so that the "
        "benchmark measures completion; 2000 is the production default)",
    )  # fmt: skip
    parser.add_argument("--expiry-seconds", type=int, default=600)
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/ctc-bench-logs"))
    parser.add_argument(
        "--gap-s", type=float, default=0.5,
        help="pause between one signal's end (all bought and relayed) and the next (default 0.5)",
    )  # fmt: skip
    parser.add_argument("--signal-timeout-s", type=float, default=120)
    parser.add_argument("--relay-timeout-s", type=float, default=600)
    parser.add_argument(
        "--py-spy", type=Path, default=None, metavar="DIR",
        help="record py-spy profiles (raw collapsed stacks) of the hub, each worker and the "
        "simulator during our signals into DIR",
    )  # fmt: skip
    parser.add_argument(
        "--redis-shards", default="", metavar="K[,K...]",
        help="run once per K with the hot path on K Redis servers of its own (REDIS_SHARDS; 0: "
        "on REDIS_URL, unsharded) and compare Redis CPU per copy and the projected ceiling",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="end with one JSON object line")
    a = parser.parse_args(argv)
    brokers = [b.strip() for b in a.brokers.split(",") if b.strip()]
    unknown = sorted(set(brokers) - set(BROKERS))
    if unknown or not brokers or len(set(brokers)) != len(brokers):
        parser.error(f"--brokers: a comma-separated list of {', '.join(BROKERS)}")
    if a.subscribers < 1 or a.signals < 1 or a.workers_per_broker < 1:
        parser.error("--subscribers, --signals and --workers-per-broker must be at least 1")
    opts = Options(
        subscribers=a.subscribers,
        brokers=brokers,
        workers_per_broker=a.workers_per_broker,
        broker_latency_ms=a.broker_latency_ms,
        signals=a.signals,
        baseline_subscribers=a.baseline_subscribers,
        no_baseline=a.no_baseline,
        max_delay_ms=a.max_delay_ms,
        expiry_seconds=a.expiry_seconds,
        redis_db=a.redis_db,
        log_dir=a.log_dir,
        signal_timeout_s=a.signal_timeout_s,
        gap_s=a.gap_s,
        relay_timeout_s=a.relay_timeout_s,
        py_spy_dir=a.py_spy,
    )
    try:
        shards = [int(k) for k in a.redis_shards.split(",") if k.strip()]
    except ValueError:
        parser.error("--redis-shards: comma-separated numbers of shards, e.g. 1,3")
    if any(k < 0 for k in shards):
        parser.error("--redis-shards: 0 (unsharded) or more")
    return opts, a.json, shards


def main(argv: list[str] | None = None) -> None:
    opts, as_json, shards = parse(argv)
    if not shards:
        result = run(opts)
        print(table(result), flush=True)
        if as_json:
            print(json.dumps(result, separators=(",", ":")), flush=True)
        return
    results = []
    for k in shards:
        print(f"-- the hot path on {k or 'no'} shard(s) of its own", flush=True)
        # the RQ-alone baseline reads the unsharded directory: only with K = 0
        result = run(replace(opts, redis_shards=k, no_baseline=opts.no_baseline or k > 0))
        print(table(result), flush=True)
        results.append(result)
    figures = [shard_figures(r) for r in results]
    print(shard_table(figures), flush=True)
    if as_json:
        print(json.dumps({"runs": results, "sharding": figures}, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()

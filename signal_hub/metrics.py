"""The hub's metrics, served at ``GET /metrics`` in Prometheus' text format.

Where each figure comes from:

- **Copies** (``ctc_copy_latency_seconds``, ``ctc_executions_total``, ``ctc_settlements_total``):
  counted by the relay from the results stream (:func:`count_results`). Every terminal record a
  worker (or a script, or the reaper) writes passes through some hub's relay once, so the sum
  over hubs is the whole and no worker has to cooperate. The latency is the record's own, from the
  signal's emit to the broker's acceptance, observed for the copies the broker accepted
  (``placed``); the other statuses are counted by reason in ``ctc_executions_total``.
- **Signals** (``ctc_signals_total``, ``ctc_signal_ack_seconds``): in the hub that took the signal
  (:func:`signal_outcome` from the intake and the socket handler, :func:`signal_acked` from the
  socket handler); cancellations from the
  ``cancelled`` status record in the relay, which the cancel script writes once per signal.
- **The cluster's state** (pending work, RQ's queues, live workers, active subscriptions, the
  results stream's lag): read from Redis when scraped (:func:`exposition`), a few cheap reads in
  two pipelines; every hub reports the same figures, so rules combine them with ``max``. Every
  offered broker has each of them, 0 rather than absent.
- prometheus-client's process and platform collectors.

Worker-internal figures (broker calls, rate-limit waits, reconnects) and the reaper's actions are
on each of those processes' own ``/metrics`` (:mod:`broker_workers.metrics`). No label carries a
user, account or signal id: ``/metrics`` is safe to show to whoever can reach it.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from redis.asyncio import Redis
from rq import Queue

from core import keys
from core.shards import Shards

disable_created_metrics()  # no ``*_created`` series: only the metrics of issue 15
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format, as /metrics always answered

# 10 ms to 10 s, finer where the one-second promise is decided.
COPY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0,
                1.25, 1.5, 2.0, 2.5, 3.0, 5.0, 7.5, 10.0)  # fmt: skip
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

COPY_LATENCY = Histogram(
    "ctc_copy_latency_seconds",
    "From a signal's emit to the broker's acceptance, per placed copy.",
    ["broker"],
    buckets=COPY_BUCKETS,
)
SIGNAL_ACK = Histogram(
    "ctc_signal_ack_seconds",
    "From a signal's arrival at the hub to its acknowledgement, whatever the answer.",
    buckets=ACK_BUCKETS,
)
SIGNALS = Counter(
    "ctc_signals",
    "Signals by outcome: accepted (fanned out), scheduled, refused (by the error's code), "
    "cancelled.",
    ["outcome", "reason"],
)
EXECUTIONS = Counter(
    "ctc_executions",
    "Terminal records of copies, by broker, status and reason ('' when none).",
    ["broker", "status", "reason"],
)
SETTLEMENTS = Counter(
    "ctc_settlements", "Settled copies by broker and outcome.", ["broker", "outcome"]
)

for _outcome in ("accepted", "scheduled", "cancelled"):
    SIGNALS.labels(_outcome, "")

_latency: dict[
    str, Any
] = {}  # broker -> its histogram child: the relay observes thousands per signal


def signal_outcome(outcome: str, reason: str = "") -> None:
    """A signal accepted or scheduled (by the intake, not for a resend), or refused."""
    SIGNALS.labels(outcome, reason).inc()


def signal_acked(seconds: float) -> None:
    """An acknowledgement sent, ``seconds`` after the signal arrived."""
    SIGNAL_ACK.observe(seconds)


def count_results(
    executions: Iterable[Mapping[str, Any]],
    settlements: Iterable[Mapping[str, Any]],
    statuses: Iterable[Mapping[str, Any]],
) -> None:
    """Count one slice of the results stream: copies, their latency, settlements, and the
    signals cancelled (the cancel script's status record, written once per signal)."""
    tally: Tally[tuple[str, str, str]] = Tally()
    for record in executions:
        broker, status = record["broker"], record["status"]
        tally[(broker, status, record.get("reason") or "")] += 1
        if status == "placed":
            child = _latency.get(broker)
            if child is None:
                child = _latency[broker] = COPY_LATENCY.labels(broker)
            child.observe(record["latency_ms"] / 1000)
    for (broker, status, reason), n in tally.items():
        EXECUTIONS.labels(broker, status, reason).inc(n)
    settled: Tally[tuple[str, str]] = Tally(
        (r.get("broker") or "unknown", r["outcome"]) for r in settlements
    )
    for (broker, outcome), n in settled.items():
        SETTLEMENTS.labels(broker, outcome).inc(n)
    cancelled = sum(1 for s in statuses if s.get("status") == "cancelled")
    if cancelled:
        SIGNALS.labels("cancelled", "").inc(cancelled)


class _Families:
    """A collector of metric families computed for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


async def shard_figures(shards: Shards, brokers: list[str]) -> tuple[dict[str, int], int, float]:
    """Pending work by broker, results not yet written and the oldest one's age (s), summed
    (the age: the oldest) over every hot-path shard (:mod:`core.shards`)."""
    pending = dict.fromkeys(brokers, 0)
    lag_entries, lag_s = 0, 0.0
    for shard in shards:
        k = shard.key
        active: Any = await shard.redis.zrange(k(keys.ACTIVE), 0, -1)
        for member in active:
            signal_id, _, broker = str(member).partition("|")
            size = int(await shard.redis.scard(k(keys.work(signal_id, broker))))
            pending[broker] = pending.get(broker, 0) + size
        lag_entries += int(await shard.redis.xlen(k(keys.RESULTS)))
        oldest: Any = await shard.redis.xrange(k(keys.RESULTS), "-", "+", count=1)
        if oldest:
            oldest_ms = int(str(oldest[0][0]).split("-", 1)[0])
            lag_s = max(lag_s, max(0.0, (time.time() * 1000 - oldest_ms) / 1000))
    return pending, lag_entries, lag_s


async def cluster_gauges(
    redis: Redis, brokers: list[str], shards: Shards | None = None
) -> list[Metric]:
    """The gauges read from Redis: pending work, RQ's queues, live workers, active subscriptions
    (per broker, each offered broker present), and the results stream's lag; the pending work
    and the lag over every shard when the hot path is sharded."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(keys.ACTIVE, 0, -1)
        for broker in brokers:
            pipe.llen(Queue.redis_queue_namespace_prefix + keys.queue_name(broker))
            pipe.smembers(keys.workers(broker))
            pipe.scard(keys.active_subscribers(broker))
        pipe.xlen(keys.RESULTS)
        pipe.xrange(keys.RESULTS, "-", "+", count=1)
        pipe.time()
        first = await pipe.execute()
    active: list[str] = first[0]
    per_broker = first[1 : 1 + 3 * len(brokers)]
    lag_entries, oldest, (now_s, now_us) = first[1 + 3 * len(brokers) :]
    queued = {b: int(per_broker[3 * i]) for i, b in enumerate(brokers)}
    registered = {b: sorted(per_broker[3 * i + 1]) for i, b in enumerate(brokers)}
    subscribers = {b: int(per_broker[3 * i + 2]) for i, b in enumerate(brokers)}
    async with redis.pipeline(transaction=False) as pipe:
        for member in active:
            signal_id, _, broker = member.partition("|")
            pipe.scard(keys.work(signal_id, broker))
        for broker in brokers:
            for worker in registered[broker]:
                pipe.exists(keys.worker_heartbeat(worker))
        second = iter(await pipe.execute())
    pending = dict.fromkeys(brokers, 0)
    for member in active:
        broker = member.partition("|")[2]
        pending[broker] = pending.get(broker, 0) + int(next(second))
    live = {b: sum(int(next(second)) for _ in registered[b]) for b in brokers}
    lag_s = 0.0
    if oldest:
        oldest_ms = int(str(oldest[0][0]).split("-", 1)[0])
        lag_s = max(0.0, (int(now_s) * 1000 + int(now_us) // 1000 - oldest_ms) / 1000)
    if shards is not None and shards.sharded:
        pending, lag_entries, lag_s = await shard_figures(shards, brokers)

    def by_broker(name: str, text: str, values: Mapping[str, int]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, text, labels=["broker"])
        for broker in brokers:
            family.add_metric([broker], values.get(broker, 0))
        return family

    return [
        by_broker("ctc_pending_work", "Subscribers in the signals' work sets, not yet claimed.",
                  pending),
        by_broker("ctc_rq_queue_length", "Drain and check jobs waiting in the broker's RQ queue.",
                  queued),
        by_broker("ctc_workers_live", "Workers of the broker with a live heartbeat.", live),
        by_broker("ctc_subscribers", "The broker's subscriptions that are not paused.",
                  subscribers),
        GaugeMetricFamily("ctc_results_lag_entries",
                          "Entries of the results stream not yet written to the store.",
                          value=int(lag_entries)),
        GaugeMetricFamily("ctc_results_lag_seconds",
                          "Age of the oldest entry of the results stream not yet written.",
                          value=lag_s),
    ]  # fmt: skip


async def exposition(redis: Redis, brokers: list[str], shards: Shards | None = None) -> bytes:
    """The whole scrape: this process's counters and histograms, the default process collectors,
    and the cluster's gauges read now."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(await cluster_gauges(redis, brokers, shards)))
    return generate_latest(REGISTRY) + generate_latest(scrape)

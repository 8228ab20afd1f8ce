"""Drain jobs onto the RQ queue of each broker that has work for a signal.

Used by the hub after an expansion (and a scheduled signal's firing), by the reaper to redrive
stalled work and by a stopping worker to hand the rest of a signal over. The job is named by its
dotted path, so this module does not import the workers' code. With several hot-path shards
(:mod:`core.shards`) a job drains one shard's part of a signal: its shard is its third argument
(absent: the unsharded shard).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import anyio.to_thread
from rq import Queue, Worker

from core import keys
from core.connections import sync_redis_client

DRAIN_JOB = "broker_workers.drain.drain_job"
JOB_TIMEOUT_S = 300  # RQ kills a drain job running longer (a signal's deadline is at most 60 s)
FAILED_JOB_TTL_S = 24 * 3600  # how long RQ keeps a failed job for an operator to look at


@dataclass
class Dispatcher:
    """Several drain jobs per broker let every worker of the pool take part; each job then pops
    subscribers in batches until the work set is empty, so a surplus job costs one empty pop.
    """

    redis_url: str
    batch_size: int

    def __post_init__(self) -> None:
        self._redis = sync_redis_client(self.redis_url)
        self._queues: dict[str, Queue] = {}

    def _queue(self, broker: str) -> Queue:
        if broker not in self._queues:
            self._queues[broker] = Queue(keys.queue_name(broker), connection=self._redis)
        return self._queues[broker]

    def _workers(self, broker: str) -> int:
        """Workers registered on the broker's queue, read for each signal (one ``SMEMBERS``): a
        pool that just restarted is counted at once. A dead worker not yet cleaned out of RQ's
        registry only adds a job that finds nothing to pop."""
        return int(Worker.count(connection=self._redis, queue=self._queue(broker)))

    def dispatch_sync(
        self,
        signal_id: str,
        by_broker: dict[str, int],
        why: str = "drain",
        at_front: bool = False,
        shard: int | None = None,
    ) -> None:
        """As many jobs per broker as its batches of work, at most one per live worker.
        ``why`` names the jobs (drain, redrive, handover); ``at_front`` puts them ahead of other
        signals' jobs (work that is already late); ``shard``: the shard whose part they drain."""
        stamp = time.time_ns()
        args: tuple[object, ...] = () if shard is None else (shard,)
        on = "" if shard is None else f" shard {shard}"
        for broker, n in by_broker.items():
            jobs = max(1, min(math.ceil(n / self.batch_size), self._workers(broker)))
            self._queue(broker).enqueue_many(
                [
                    Queue.prepare_data(
                        DRAIN_JOB,
                        args=(signal_id, broker, *args),
                        job_id=f"{why}-{signal_id}-{broker}{on.replace(' ', '-')}-{stamp}-{i}",
                        result_ttl=0,
                        failure_ttl=FAILED_JOB_TTL_S,
                        timeout=JOB_TIMEOUT_S,
                        at_front=at_front,
                        description=f"{why} {signal_id} on {broker}{on}",
                    )
                    for i in range(jobs)
                ]
            )

    async def dispatch(
        self,
        signal_id: str,
        by_broker: dict[str, int],
        why: str = "drain",
        shard: int | None = None,
    ) -> None:
        await anyio.to_thread.run_sync(
            functools.partial(self.dispatch_sync, signal_id, by_broker, why, shard=shard)
        )

    def close(self) -> None:
        self._redis.close()

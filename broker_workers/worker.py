"""The RQ worker class of every broker pool: ``-w broker_workers.worker.BrokerWorker``.

It is RQ's ``SimpleWorker`` (the job runs in the worker process, no fork per job, so broker
sessions survive between signals) that starts a :class:`~broker_workers.runtime.WorkerRuntime` for
its broker before taking the first job and closes it on the way out. Once the runtime is ready the
worker serves its own ``/metrics`` (:mod:`broker_workers.metrics`; a Kubernetes readiness probe
reads it) and starts keeping its broker's account health current
(:class:`~broker_workers.checks.Refresher`).

``rq worker-pool`` imports this module in its parent process before it sets up its own logging:
the pool's lines then go through our sink too (JSON with ``LOG_JSON=1``, like every other line).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rq.worker import SimpleWorker

from broker_workers.checks import Refresher
from broker_workers.metrics import serve
from broker_workers.runtime import WorkerRuntime, set_current
from broker_workers.settings import get_settings
from core.keys import queue_name
from core.logs import configure_logging
from core.settings import load_common

QUEUE_PREFIX = queue_name("")


class NotABrokerQueue(ValueError):
    pass


def broker_of(queue_names: list[str]) -> str:
    """The broker a worker serves, from its single ``broker.<name>`` queue."""
    brokers = {q.removeprefix(QUEUE_PREFIX) for q in queue_names if q.startswith(QUEUE_PREFIX)}
    if len(brokers) != 1 or len(queue_names) != 1:
        raise NotABrokerQueue(
            f"a broker worker listens on one broker.<name> queue, not {queue_names}"
        )
    return brokers.pop()


class BrokerWorker(SimpleWorker):
    """SIGTERM (or the pool's SIGINT) is RQ's warm shutdown: the job in hand runs to its end. The
    runtime's ``stopping`` flag makes that end come soon: the drain lanes finish the batch they
    hold, take no new one, and hand the rest of the signal to the next worker."""

    _runtime: WorkerRuntime | None = None

    def work(self, *args: Any, **kwargs: Any) -> bool:
        settings = get_settings()
        broker = broker_of(self.queue_names())
        configure_logging(settings, f"worker.{broker}", broker=broker, worker=self.name)
        runtime = WorkerRuntime(settings, broker, self.name)
        runtime.start()
        runtime.metrics_port = serve(settings.metrics_port, settings.metrics_host)
        runtime.spawn(Refresher(runtime).run())
        set_current(runtime)
        self._runtime = runtime
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            set_current(None)
            runtime.stop()

    def request_stop(self, signum: Any, frame: Any) -> None:
        if self._runtime is not None:
            self._runtime.stopping = True
        super().request_stop(signum, frame)


def _started_by_rq() -> bool:
    """Is this the ``rq`` command (``rq worker-pool``, or ``python -m rq.cli``)?"""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return argv0 is not None and (argv0.name == "rq" or argv0.parent.match("rq/cli"))


if _started_by_rq():
    configure_logging(load_common(), "worker_pool")

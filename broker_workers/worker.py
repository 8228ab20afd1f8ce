"""The RQ worker class of every broker pool: ``-w broker_workers.worker.BrokerWorker``.

It is RQ's ``SimpleWorker`` (the job runs in the worker process, no fork per job, so broker
sessions survive between signals) that starts a :class:`~broker_workers.runtime.WorkerRuntime` for
its broker before taking the first job and closes it on the way out.
"""

from __future__ import annotations

from typing import Any

from rq.worker import SimpleWorker

from broker_workers.runtime import WorkerRuntime, set_current
from broker_workers.settings import get_settings
from core.keys import queue_name
from core.logs import configure_logging

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
        configure_logging(settings, f"worker.{broker_of(self.queue_names())}")
        runtime = WorkerRuntime(settings, broker_of(self.queue_names()), self.name)
        runtime.start()
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

"""The metrics of a worker process and of the reaper, each served on its own ``/metrics``.

Workers run on any number of hosts, so each process serves its own figures with prometheus-client's
HTTP server (on ``METRICS_PORT``, default 9100) and Prometheus scrapes every process: the native
way for processes spread over hosts (the client's multiprocess mode would need them on one host
and one shared directory). Several workers of one ``rq worker-pool`` on one host each take the
next free port, up to :data:`PORT_SPAN` above ``METRICS_PORT``; the port taken is logged and
recorded with the worker's heartbeat (the admin console shows it). ``METRICS_PORT=0`` serves
nothing. The copies themselves (latency, executions, settlements) are counted by the hubs from the
results stream (:mod:`signal_hub.metrics`); here is only what a worker alone sees: its broker calls
and their latency, waits for the broker's rate budget, reconnects, and the reaper's actions.

No label carries a user, account or signal id.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, ClassVar, Literal

from loguru import logger
from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

from broker_workers.adapters.base import Account, AmbiguousPurchase, Fill, Order, Outcome

disable_created_metrics()  # no ``*_created`` series: only the metrics of issue 15
PORT_SPAN = 63  # METRICS_PORT .. METRICS_PORT + 63: one per worker of a pool on one host

CALL_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
)
ReaperAction = Literal["recovered", "reconciled", "expired", "redriven"]
REAPER_ACTIONS: tuple[ReaperAction, ...] = ("recovered", "reconciled", "expired", "redriven")

BROKER_CALLS = Counter(
    "ctc_broker_calls",
    "Calls of the broker adapter (buy, find_purchase, outcome, balances, open) by their outcome: "
    "ok, error (the broker refused or failed), timeout (sent, no answer).",
    ["broker", "call", "outcome"],
)
BROKER_CALL_SECONDS = Histogram(
    "ctc_broker_call_seconds",
    "How long a call of the broker adapter took, rate-limit waits and retries within it included.",
    ["broker", "call"],
    buckets=CALL_BUCKETS,
)
RATE_LIMIT_WAITS = Counter(
    "ctc_rate_limit_waits",
    "Requests that waited for the broker's rate budget, or that the broker told to wait.",
    ["broker"],
)
RECONNECTS = Counter(
    "ctc_broker_reconnects",
    "Broker sessions opened again after their connection was lost.",
    ["broker"],
)
REAPER = Counter(
    "ctc_reaper_actions",
    "Subscribers the reaper acted on: claims recovered from dead workers, orphaned purchases "
    "reconciled with the broker, work expired past its deadline, stalled work redriven.",
    ["kind"],
)


def broker_series(broker: str) -> None:
    """The counters of a broker at 0 from the start, so that a first wait or reconnect shows as
    an increase (a series that appears at 1 has none)."""
    RATE_LIMIT_WAITS.labels(broker)
    RECONNECTS.labels(broker)


def reaper_series() -> None:
    for kind in REAPER_ACTIONS:
        REAPER.labels(kind)


def reaper_acted(kind: ReaperAction, subscribers: int) -> None:
    REAPER.labels(kind).inc(subscribers)


def serve(port: int, host: str) -> int | None:
    """Serve this process's ``/metrics`` on ``port``, or the next free one up to
    :data:`PORT_SPAN` above it; the port taken, or ``None`` (``port`` 0, or none free)."""
    if port <= 0:
        return None
    for candidate in range(port, port + PORT_SPAN + 1):
        try:
            start_http_server(candidate, addr=host)
        except OSError:
            continue
        logger.info("metrics on http://{}:{}/metrics", host, candidate)
        return candidate
    logger.warning("no free port for /metrics in {}..{}; serving none", port, port + PORT_SPAN)
    return None


class _Timed:
    """Counts and times one call: ``ok``, ``timeout`` (sent, no answer) or ``error``."""

    __slots__ = ("call", "metered", "start")

    def __init__(self, metered: Metered, call: str) -> None:
        self.metered = metered
        self.call = call
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if kind is not None and not issubclass(kind, Exception):
            return  # cancelled: no answer to count
        outcome = "ok"
        if kind is not None:
            timed_out = issubclass(kind, AmbiguousPurchase | TimeoutError)
            outcome = "timeout" if timed_out else "error"
        broker = self.metered.broker
        BROKER_CALLS.labels(broker, self.call, outcome).inc()
        BROKER_CALL_SECONDS.labels(broker, self.call).observe(time.perf_counter() - self.start)


class Metered:
    """A broker adapter whose calls are counted and timed (``ctc_broker_calls_total``,
    ``ctc_broker_call_seconds``); anything else it has (a Deriv adapter's sessions) is the
    adapter's own."""

    name: ClassVar[str] = "metered"

    _OWN = frozenset({"inner", "broker"})

    def __init__(self, adapter: Any, broker: str) -> None:
        object.__setattr__(self, "inner", adapter)
        object.__setattr__(self, "broker", broker)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        """The wrapper's own (its calls, replaced by a test) stay here; the rest is the
        adapter's (a test pointing the paper ledger elsewhere)."""
        if attribute in self._OWN or hasattr(Metered, attribute):
            object.__setattr__(self, attribute, value)
        else:
            setattr(self.inner, attribute, value)

    async def open(self, accounts: list[Account]) -> None:
        with _Timed(self, "open"):
            await self.inner.open(accounts)

    async def close(self) -> None:
        await self.inner.close()

    async def buy(self, orders: list[Order]) -> list[Fill]:
        with _Timed(self, "buy"):
            fills: list[Fill] = await self.inner.buy(orders)
        return fills

    async def find_purchase(self, order: Order) -> Fill | None:
        with _Timed(self, "find_purchase"):
            found: Fill | None = await self.inner.find_purchase(order)
        return found

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        with _Timed(self, "outcome"):
            outcome: Outcome | None = await self.inner.outcome(account, contract_id)
        return outcome

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        with _Timed(self, "balances"):
            balances: dict[str, Decimal] = await self.inner.balances(accounts)
        return balances

"""The plug-in point for brokers: a small Protocol, the order and fill records, the error tree.

A broker adapter turns our orders into purchases on one broker and answers three questions about
them later (did it happen, how did it end, what is the balance). Generic code (the drain, the
settlement loop, the reaper) talks only to this surface and reads the broker's capabilities
(:mod:`core.brokers`) instead of asking which broker it is.

Errors: every failure an adapter lets out is a :class:`BrokerError` (the broker's own become ours at
the boundary, ``raise ... from``), and each maps to one trade reason:

- :class:`TemporaryBrokerError` (``broker_unreachable``; :class:`RateLimitedError`:
  ``rate_limited``): nothing was bought; trying again later may work.
- :class:`AmbiguousPurchase`: a purchase was sent and no answer came; the caller asks
  :meth:`BrokerAdapter.find_purchase` before anything else, never buys again blindly.
- :class:`RejectedError` (its own reason): the broker said no to this request.
- :class:`FatalBrokerError` (``broker_error``): the adapter cannot work until someone fixes its
  configuration (a refused app id or credentials of ours, a ledger that refuses our script);
  nothing was bought. Raised by ``open`` it stops the worker; raised by ``buy`` it fails the
  orders and is logged as an error.
- :class:`LeaseLost` (``lease_lost``): the worker's lease, under which the orders were marked
  sending, is no longer surely held; this request was not sent, and the orders are the reaper's
  now (it reconciles them with the broker after their deadline). The caller records nothing.

Fencing (DESIGN invariant 6: a worker host cut off must not complete a purchase whose claim it
lost). Each order carries the :class:`Fence` it was marked under, and an adapter calls
:func:`ensure_fenced` right before the bytes of a purchase go out, so no purchase leaves once the
worker's local lease deadline has passed. An adapter with connections of its own also offers
``abort()``: the worker calls it when its lease is lost, and it drops every connection at once,
discarding what the kernel still holds unsent (:func:`broker_workers.fencing.abort_transport`), so
that nothing written during a network cut reaches the broker when the link returns. A broker that
can check a lease itself (the paper ledger) checks ``Fence.token`` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Literal, Protocol, runtime_checkable

Direction = Literal["CALL", "PUT"]
FillStatus = Literal["placed", "rejected", "skipped", "failed"]
SettlementOutcome = Literal["won", "lost", "refund"]


@dataclass(frozen=True, slots=True)
class Account:
    """A subscriber's broker account as the worker sees it: credentials decrypted, never printed."""

    account_id: str
    credentials: dict[str, str] = field(repr=False)
    currency: str = "USD"


class Fence(Protocol):
    """The worker's lease an order was marked sending under (one lease: one token)."""

    @property
    def worker_id(self) -> str: ...

    @property
    def token(self) -> str: ...

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless this very lease is still surely held."""


@dataclass(frozen=True, slots=True)
class Order:
    """One purchase to place. ``client_order_id`` is the trade id, unique per (signal, subscriber),
    and travels to the broker (passthrough) so an ambiguous purchase can be found again."""

    client_order_id: str
    signal_id: str
    subscription_id: str
    account: Account
    asset: str
    direction: Direction
    expiry_seconds: int
    stake: Decimal
    deadline_ms: int
    # For reconciliation by details (brokers that keep no passthrough): the order cannot have
    # been bought before its signal, and not as any contract already recorded for another trade.
    signal_created_ms: int = 0
    recorded_contract_ids: frozenset[str] = frozenset()
    # The lease the order was marked sending under; ``None`` for orders of no worker (tests,
    # tools). Checked right before sending (:func:`ensure_fenced`).
    fence: Fence | None = field(default=None, compare=False)


def ensure_fenced(orders: Iterable[Order]) -> None:
    """The last check before a purchase's bytes go out, shared by every adapter: raises
    :class:`LeaseLost` when the lease of any of ``orders`` is no longer surely held. Call it with
    nothing awaited between it and the write."""
    checked: list[Fence] = []
    for order in orders:
        fence = order.fence
        if fence is not None and not any(fence is seen for seen in checked):
            fence.check()
            checked.append(fence)


@dataclass(frozen=True, slots=True)
class Fill:
    """The broker's answer for one order."""

    client_order_id: str
    status: FillStatus
    reason: str | None = None
    contract_id: str | None = None
    stake: Decimal | None = None
    payout: Decimal | None = None
    broker_time_ms: int | None = None  # the broker's own acceptance timestamp


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a placed contract ended. ``profit`` is net: payout minus stake, or minus the stake."""

    contract_id: str
    outcome: SettlementOutcome
    profit: Decimal
    settled_at_ms: int


@runtime_checkable
class BrokerAdapter(Protocol):
    """One broker. Instances live as long as their worker process and keep sessions warm.

    Constructed as ``AdapterClass(settings)`` (:class:`broker_workers.settings.WorkerSettings`);
    everything else comes through the methods.

    Required: ``open``, ``close``, ``buy``, ``find_purchase``, ``outcome``.
    Required when the broker's capabilities say ``reports_balances`` (percent stakes need it):
    ``balances``; never called otherwise.
    Optional: ``status() -> dict[str, int]``, figures of the adapter's sessions for the admin
    console (``sessions_connected``, ``sessions_total``, ``budget_available``,
    ``budget_per_minute``, ``rate_limit_waits``, ``reconnects``), recorded with the worker's
    heartbeat; an adapter without sessions or budgets leaves it out.
    Optional: ``abort() -> None``, called when the worker's lease is lost: drop every connection
    at once, discarding unsent bytes (:func:`broker_workers.fencing.abort_transport`), and open
    fresh ones for the next call. Required of every adapter: :func:`ensure_fenced` right before
    a purchase goes out.
    """

    name: ClassVar[str]

    async def open(self, accounts: list[Account]) -> None:
        """Connect and authorize ahead of signals, so that no purchase waits for a login."""

    async def close(self) -> None:
        """Release connections; called on worker shutdown."""

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Place every order; return one Fill per order, in the same order.

        Per-order refusals are Fills with status ``rejected``; whole-request trouble that leaves
        the outcome unknown raises :class:`AmbiguousPurchase` (sent, no answer) so that the caller
        reconciles before retrying; trouble before anything was sent raises
        :class:`TemporaryBrokerError`. Never more orders than ``max_orders_per_request``.
        """
        ...

    async def find_purchase(self, order: Order) -> Fill | None:
        """Look the order up at the broker (by its client order id); ``None`` if never bought."""
        ...

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        """The contract's settlement, or ``None`` while it is still open."""
        ...

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        """Current balance per account id."""
        ...


class BrokerError(Exception):
    """Root of every broker failure. ``reason`` is the contract's trade reason it maps to."""

    reason = "broker_error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TemporaryBrokerError(BrokerError):
    """Nothing was bought and trying again later may work (network down, broker busy)."""

    reason = "broker_unreachable"


class RateLimitedError(TemporaryBrokerError):
    reason = "rate_limited"


class AmbiguousPurchase(BrokerError):
    """A purchase was sent and no answer came: reconcile with the broker before anything else."""

    reason = "broker_unreachable"


class RejectedError(BrokerError):
    """The broker said no to this request; retrying it unchanged will not help."""

    reason = "rejected"


class LeaseLost(BrokerError):
    """The worker's lease lapsed (or was taken again under a new token) before this request
    went out: nothing was sent, and the orders' claims may be the reaper's now."""

    reason = "lease_lost"


class FatalBrokerError(BrokerError):
    """Misconfiguration or a broken protocol: the adapter cannot work until fixed; nothing was
    bought."""

    reason = "broker_error"

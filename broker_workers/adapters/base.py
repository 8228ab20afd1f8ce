"""The plug-in point for brokers: a small Protocol, the order and fill records, the error tree.

A broker adapter turns our orders into purchases on one broker and answers three questions about
them later (did it happen, how did it end, what is the balance). Generic code (the drain, the
settlement loop, the reaper) talks only to this surface and reads :class:`Capabilities` instead of
asking which broker it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Literal, Protocol, TypedDict, runtime_checkable

Direction = Literal["CALL", "PUT"]
FillStatus = Literal["placed", "rejected", "skipped", "failed"]
SettlementOutcome = Literal["won", "lost", "refund"]


class Capabilities(TypedDict):
    """What a broker supports, as data (read by generic code, never ``if broker == ...``)."""

    min_stake: Decimal
    max_stake: Decimal
    min_expiry_s: int
    max_expiry_s: int
    max_orders_per_request: int  # 1 = one purchase per request; >1 = multi-account buys
    buys_per_minute: int  # rate budget per worker connection; 0 = unlimited
    currency: str
    assets: dict[str, str]  # canonical asset name -> the broker's own symbol
    credential_fields: tuple[str, ...]  # what a subscriber must give to connect an account
    # find_purchase matches a purchase by its details (the broker keeps no id of ours): the
    # contracts already recorded for an account must then be remembered, to be excluded
    finds_purchases_by_details: bool


DEFAULT_CAPABILITIES = Capabilities(
    min_stake=Decimal("1"),
    max_stake=Decimal("50000"),
    min_expiry_s=15,
    max_expiry_s=24 * 3600,
    max_orders_per_request=1,
    buys_per_minute=0,
    currency="USD",
    assets={},
    credential_fields=(),
    finds_purchases_by_details=False,
)


@dataclass(frozen=True, slots=True)
class Account:
    """A subscriber's broker account as the worker sees it: credentials decrypted, never printed."""

    account_id: str
    credentials: dict[str, str] = field(repr=False)
    currency: str = "USD"


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

    Constructed as ``AdapterClass(settings)``; everything else comes through the methods.

    Required: ``open``, ``close``, ``buy``, ``find_purchase``, ``outcome``.
    Optional (may raise ``NotImplementedError``): ``balances``, needed only for percent stakes.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    async def open(self, accounts: list[Account]) -> None:
        """Connect and authorize ahead of signals, so that no purchase waits for a login."""

    async def close(self) -> None:
        """Release connections; called on worker shutdown."""

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Place every order; return one Fill per order, in the same order.

        Per-order refusals are Fills with status ``rejected``; whole-request trouble that leaves
        the outcome unknown raises :class:`AmbiguousPurchase` (sent, no answer) so that the caller
        reconciles before retrying; trouble before anything was sent raises
        :class:`TemporaryBrokerError`.
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


class FatalBrokerError(BrokerError):
    """Misconfiguration or a broken protocol: the adapter cannot work until fixed."""

    reason = "broker_error"

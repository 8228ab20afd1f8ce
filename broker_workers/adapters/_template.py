"""A template adapter: copy this file to ``<broker>.py`` and fill in the five methods.

Then add one line to ``ADAPTERS`` in ``broker_workers/adapters/__init__.py`` and one
``worker_<broker>`` line to the Procfile. ``deriv.py`` is a complete example over a WebSocket,
``paper.py`` one over Redis.

The rules every adapter keeps (the generic code relies on them):

- Translate at the boundary: the broker's errors become ``base.py``'s tree (``raise ... from``),
  and each refusal becomes ``Fill(status="rejected", reason=...)`` with one of the contract's
  reasons (``insufficient_balance``, ``market_closed``, ``invalid_token``, ...).
- Never buy after ``order.deadline_ms``. Never buy twice: a request sent without an answer is
  looked up with :meth:`find_purchase` before any retry. Tag each purchase with
  ``order.client_order_id`` if the broker keeps a client tag, so that the lookup is exact.
- Credentials (``account.credentials``) never reach a log line or an exception message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from broker_workers.adapters.base import (
    DEFAULT_CAPABILITIES,
    Account,
    Capabilities,
    Fill,
    Order,
    Outcome,
)
from signal_hub.settings import Settings


class TemplateBroker:
    name: ClassVar[str] = "template"  # the registry name, the queue is ``broker.<name>``
    # What the broker supports, as data; generic code reads this instead of asking "which broker".
    capabilities: ClassVar[Capabilities] = Capabilities(
        {
            **DEFAULT_CAPABILITIES,
            "min_stake": Decimal("1"),
            "max_orders_per_request": 1,  # >1 if the broker buys for many accounts at once
            "buys_per_minute": 60,  # your share of the broker's rate limit; 0 = none
            "assets": {"EURUSD": "EURUSD"},  # canonical name -> the broker's own symbol
            "credential_fields": ("api_key",),  # what a subscriber must give us
            # True if find_purchase can only match a purchase by its details (no id of ours)
            "finds_purchases_by_details": False,
        }
    )

    def __init__(self, settings: Settings) -> None:
        # Read what you need from settings once; open nothing here (no event loop yet).
        self.settings = settings

    async def open(self, accounts: list[Account]) -> None:
        """Required. Connect and log in ahead of signals, so no purchase waits for a login."""
        raise NotImplementedError

    async def close(self) -> None:
        """Required. Release connections on worker shutdown."""
        raise NotImplementedError

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Required. One Fill per order, in order. Refusals are Fills; a request sent without an
        answer that you could not reconcile raises ``AmbiguousPurchase``; trouble before
        anything was sent raises ``TemporaryBrokerError``."""
        raise NotImplementedError

    async def find_purchase(self, order: Order) -> Fill | None:
        """Required. The order's purchase at the broker (by client tag, or by its details and
        time when the broker keeps no tag), or ``None`` if it was never bought."""
        raise NotImplementedError

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        """Required. How the contract ended (won, lost, refund and net profit), ``None`` while
        it is still open."""
        raise NotImplementedError

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        """Optional (may raise ``NotImplementedError``): needed only for percent stakes."""
        raise NotImplementedError

"""A template adapter: copy this file to ``<broker>.py`` (a package, like ``deriv/``, once it grows)
and fill in the methods.

Then:

1. add the broker to ``CATALOGUE`` in ``core/brokers.py``: the dotted path of your class and its
   capabilities (what it supports, as data: stakes, expiries, orders per request, assets and
   their symbols, the credentials an account needs, whether it reports balances);
2. add a ``worker_<broker>`` line to the Procfile;
3. add a factory for it to ``tests/test_adapter_conformance.py`` and make that suite green: it
   checks every rule below against your broker (or a sandbox of it). ``tests/memory_broker.py``
   is this template filled in over an in-memory book, and passes it.

``deriv/`` is a complete example over a WebSocket, ``paper/`` one over Redis.

The rules every adapter keeps (the generic code relies on them):

- Translate at the boundary: the broker's errors become ``base.py``'s tree (``raise ... from``),
  and each refusal becomes ``Fill(status="rejected", reason=...)`` with one of the contract's
  reasons (``insufficient_balance``, ``market_closed``, ``invalid_token``, ...).
- Never buy after ``order.deadline_ms``. Never buy twice: a request sent without an answer is
  looked up with :meth:`find_purchase` before any retry, and the same client order id bought
  again returns the first purchase. Tag each purchase with ``order.client_order_id`` if the broker
  keeps a client tag, so that the lookup is exact.
- Call ``ensure_fenced(orders)`` (``base.py``) right before a purchase's bytes go out, with
  nothing awaited in between: it raises ``LeaseLost`` once the worker's lease is not surely held.
  If the adapter keeps connections, give it ``abort()`` (the worker calls it when its lease is
  lost): drop them at once with ``broker_workers.fencing.abort_transport``, so nothing written
  during a network cut is delivered when the link returns.
- Credentials (``account.credentials``) never reach a log line or an exception message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from broker_workers.adapters.base import Account, Fill, Order, Outcome
from broker_workers.settings import WorkerSettings


class TemplateBroker:
    name: ClassVar[str] = "template"  # the catalogue's name; the queue is ``broker.<name>``

    def __init__(self, settings: WorkerSettings) -> None:
        # Read what you need from settings once; open nothing here (no event loop yet).
        self.settings = settings

    async def open(self, accounts: list[Account]) -> None:
        """Required. Connect and log in ahead of signals, so no purchase waits for a login.
        Raise ``FatalBrokerError`` when the configuration cannot work (the worker stops),
        ``TemporaryBrokerError`` when the broker cannot be reached now."""
        raise NotImplementedError

    async def close(self) -> None:
        """Required. Release connections on worker shutdown."""
        raise NotImplementedError

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Required. One Fill per order, in order, at most ``max_orders_per_request`` of them.
        Refusals are Fills; a request sent without an answer that you could not reconcile raises
        ``AmbiguousPurchase``; trouble before anything was sent raises ``TemporaryBrokerError``."""
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
        """Required if the capabilities say ``reports_balances`` (percent stakes need it);
        never called otherwise."""
        raise NotImplementedError

"""Finding a purchase whose answer was lost: the answers this process had, else the account's
statement, matched by the order's details (Deriv keeps no passthrough with a contract)."""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal
from typing import Any

from loguru import logger

from broker_workers.adapters.base import Fill, Order
from broker_workers.adapters.deriv.client import Connections, Json, token_of
from broker_workers.adapters.deriv.settings import DerivSettings
from core.brokers import broker

SYMBOLS = broker("deriv").capabilities["assets"]


def money(value: Any) -> Decimal:
    return Decimal(str(value))


class Answers:
    """The broker's definitive answers in this process (placed or rejected), by client order id,
    and which order each placed contract is: a contract is no one else's."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._fills: OrderedDict[str, Fill] = OrderedDict()
        self._claimed: OrderedDict[str, str] = OrderedDict()  # contract_id -> client_order_id

    def get(self, client_order_id: str) -> Fill | None:
        return self._fills.get(client_order_id)

    def claimed(self, contract_id: str) -> bool:
        return contract_id in self._claimed

    def remember(self, fill: Fill) -> Fill:
        self._fills[fill.client_order_id] = fill
        if fill.contract_id is not None:
            self._claimed[fill.contract_id] = fill.client_order_id
        for memory in (self._fills, self._claimed):
            while len(memory) > self.kept:
                memory.popitem(last=False)
        return fill


class Reconciler:
    def __init__(self, connections: Connections, answers: Answers) -> None:
        self.connections = connections
        self.answers = answers

    @property
    def settings(self) -> DerivSettings:
        return self.connections.settings

    async def find_purchase(self, order: Order) -> Fill | None:
        """The broker's answer for the order: the one this process already had (placed, or a
        refusal), else its purchase found in the account's statement, else ``None``."""
        known = self.answers.get(order.client_order_id)
        if known is not None:
            return known
        symbol = SYMBOLS.get(order.asset)
        if symbol is None or not token_of(order.account):
            return None
        latest_s = order.deadline_ms // 1000 + self.settings.reconcile_grace_s
        async with self.connections.reader_for(order.account) as sock:
            reply = await self.connections.ask(
                sock,
                {
                    "statement": 1,
                    "action_type": "buy",
                    "description": 1,
                    "date_from": self.window_start_s(order),
                    "limit": 999,
                },
            )
        rows: list[Json] = reply["statement"].get("transactions", [])
        rows.sort(key=lambda r: (r.get("transaction_time", 0), r.get("transaction_id", 0)))
        for row in rows:
            if self._is_purchase_of(row, order, symbol, latest_s):
                fill = Fill(
                    order.client_order_id,
                    "placed",
                    contract_id=str(row["contract_id"]),
                    stake=-money(row["amount"]),
                    payout=money(row["payout"]) if row.get("payout") is not None else None,
                    broker_time_ms=int(row["transaction_time"]) * 1000,
                )
                self.answers.remember(fill)
                logger.info("deriv: order {} found at the broker", order.client_order_id)
                return fill
        return None

    def window_start_s(self, order: Order) -> int:
        """The earliest a purchase of ``order`` can have been made (whole seconds, as Deriv keeps
        them): its signal's creation, else the widest window a deadline allows."""
        if order.signal_created_ms:
            return max(0, order.signal_created_ms // 1000 - 1)
        return max(0, order.deadline_ms // 1000 - self.settings.reconcile_lookback_s)

    def _is_purchase_of(self, row: Json, order: Order, symbol: str, latest_s: int) -> bool:
        """Does this statement row describe the order's contract, unclaimed by another order?"""
        parts = str(row.get("shortcode") or "").split("_")
        if len(parts) < 7 or row.get("contract_id") is None:
            return False
        start, expiry = parts[-4], parts[-3]
        return (
            parts[0] == order.direction
            and "_".join(parts[1:-5]) == symbol.upper()
            and start.isdigit()
            and expiry.isdigit()
            and int(expiry) - int(start) == order.expiry_seconds
            and -money(row.get("amount", 0)) == order.stake
            and self.window_start_s(order) <= int(row.get("transaction_time", 0)) <= latest_s
            and not self.answers.claimed(str(row["contract_id"]))
            and str(row["contract_id"]) not in order.recorded_contract_ids
        )

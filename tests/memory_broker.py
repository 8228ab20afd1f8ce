"""``broker_workers/adapters/_template.py`` filled in, as a newcomer would, over an in-memory book:
it shows the template passes the adapter conformance suite once its methods are written."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from broker_workers.adapters._template import TemplateBroker
from broker_workers.adapters.base import (
    Account,
    AmbiguousPurchase,
    Fill,
    Order,
    Outcome,
    ensure_fenced,
)
from broker_workers.settings import WorkerSettings
from core.brokers import DEFAULT_CAPABILITIES, Capabilities

CAPABILITIES = Capabilities(
    {
        **DEFAULT_CAPABILITIES,
        "max_orders_per_request": 50,
        "assets": {"R_100": "R100"},
        "credential_fields": ("api_key",),
        "reports_balances": True,
    }
)
PAYOUT_RATE = Decimal("0.8")


@dataclass
class _Contract:
    fill: Fill
    account_id: str
    expiry_ms: int
    won: bool


class MemoryBroker(TemplateBroker):
    name: ClassVar[str] = "memory"

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        self.start_balance = Decimal("100")
        self.balance: dict[str, Decimal] = {}
        self.bought: dict[str, _Contract] = {}  # client order id -> contract
        self._ids = itertools.count(1)
        self.lose_next_reply = False  # a test's fault: the next buy happens, its answer is lost

    async def open(self, accounts: list[Account]) -> None:
        for account in accounts:
            self._balance_of(account)

    async def close(self) -> None:
        pass

    def _balance_of(self, account: Account) -> Decimal:
        start = Decimal(account.credentials.get("balance", self.start_balance))
        return self.balance.setdefault(account.account_id, start)

    async def buy(self, orders: list[Order]) -> list[Fill]:
        ensure_fenced(orders)  # right before the purchase "goes out"
        fills = [self._buy(order) for order in orders]
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise AmbiguousPurchase("the answer was lost")
        return fills

    def _buy(self, order: Order) -> Fill:
        now_ms = int(time.time() * 1000)
        if order.client_order_id in self.bought:
            return self.bought[order.client_order_id].fill
        if now_ms > order.deadline_ms:
            return Fill(order.client_order_id, "skipped", "expired")
        if not CAPABILITIES["min_stake"] <= order.stake <= CAPABILITIES["max_stake"]:
            return Fill(order.client_order_id, "rejected", "invalid_stake")
        if self._balance_of(order.account) < order.stake:
            return Fill(order.client_order_id, "rejected", "insufficient_balance")
        self.balance[order.account.account_id] -= order.stake
        fill = Fill(
            order.client_order_id,
            "placed",
            contract_id=str(next(self._ids)),
            stake=order.stake,
            payout=order.stake * (1 + PAYOUT_RATE),
            broker_time_ms=now_ms,
        )
        won = order.direction == "CALL"
        expiry_ms = now_ms + order.expiry_seconds * 1000
        self.bought[order.client_order_id] = _Contract(
            fill, order.account.account_id, expiry_ms, won
        )
        return fill

    async def find_purchase(self, order: Order) -> Fill | None:
        contract = self.bought.get(order.client_order_id)
        return contract.fill if contract else None

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        contract = next(c for c in self.bought.values() if c.fill.contract_id == contract_id)
        if time.time() * 1000 < contract.expiry_ms:
            return None
        stake = contract.fill.stake or Decimal(0)
        profit = stake * PAYOUT_RATE if contract.won else -stake
        return Outcome(contract_id, "won" if contract.won else "lost", profit, contract.expiry_ms)

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        return {account.account_id: self._balance_of(account) for account in accounts}

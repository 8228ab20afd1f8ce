"""The Deriv adapter: the sessions (:mod:`.client`), buying (:mod:`.execution`), finding lost
answers (:mod:`.reconciliation`), and the reads after a purchase (outcome, balances)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import ClassVar, Literal

from loguru import logger

from broker_workers.adapters.base import Account, Fill, Order, Outcome, RejectedError
from broker_workers.adapters.deriv.client import Connections, Json, Session, now_s
from broker_workers.adapters.deriv.execution import Execution
from broker_workers.adapters.deriv.reconciliation import Answers, Reconciler, money
from broker_workers.settings import WorkerSettings


class DerivBroker:
    """See the package's docstring for the shape of the work."""

    name: ClassVar[str] = "deriv"

    def __init__(self, settings: WorkerSettings) -> None:
        self.connections = Connections(settings.deriv)
        answers = Answers(settings.deriv.answers_kept)
        self.reconciler = Reconciler(self.connections, answers)
        self.execution = Execution(self.connections, answers, self.reconciler)

    @property
    def url(self) -> str:
        return self.connections.url

    @property
    def sessions(self) -> list[Session]:
        return self.connections.sessions

    @property
    def connections_opened(self) -> int:
        return self.connections.connections_opened

    def status(self) -> dict[str, int]:
        """Sessions connected, rate budget left (the optional ``status``: the admin console)."""
        return self.connections.status()

    async def open(self, accounts: list[Account]) -> None:
        await self.connections.open(accounts)

    async def close(self) -> None:
        await self.connections.close()

    def abort(self) -> None:
        """The worker's lease is lost: every session's connection dropped with what it still
        held unsent (:meth:`Connections.abort`)."""
        self.connections.abort()

    async def buy(self, orders: list[Order]) -> list[Fill]:
        return await self.execution.buy(orders)

    async def find_purchase(self, order: Order) -> Fill | None:
        return await self.reconciler.find_purchase(order)

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        """Settlement through ``proposal_open_contract``; ``None`` while the contract is open."""
        async with self.connections.reader_for(account) as sock:
            reply = await self.connections.ask(
                sock, {"proposal_open_contract": 1, "contract_id": int(contract_id)}
            )
        poc: Json = reply.get("proposal_open_contract") or {}
        if not poc:
            raise RejectedError(f"Deriv has no contract {contract_id}", reason="invalid_contract")
        if not poc.get("is_sold"):
            return None
        profit = money(poc.get("profit", 0))
        outcome: Literal["won", "lost", "refund"] = (
            "refund" if profit == 0 else "won" if profit > 0 else "lost"
        )
        settled_s = poc.get("sell_time") or poc.get("date_expiry") or int(now_s())
        return Outcome(contract_id, outcome, profit, int(settled_s) * 1000)

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        """Balance per account; an account whose token Deriv refuses is left out (and logged)."""

        async def one(account: Account) -> tuple[str, Decimal] | None:
            try:
                async with self.connections.reader_for(account) as sock:
                    reply = await self.connections.ask(sock, {"balance": 1})
            except RejectedError as exc:
                logger.warning(
                    "deriv: no balance for account {}: {}", account.account_id, exc.reason
                )
                return None
            return account.account_id, money(reply["balance"]["balance"])

        results = await asyncio.gather(*map(one, accounts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(r for r in results if isinstance(r, tuple))

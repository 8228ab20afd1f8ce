"""The paper broker's adapter.

It behaves like a remote broker that happens to keep its ledger in Redis (:mod:`.ledger`):
purchases are atomic (one Lua script per request), idempotent on the client order id (a retried
order returns the same contract instead of buying twice), refused past the signal's deadline by
the broker's own clock, refused when the worker's lease it was sent under is no longer the
current one (fencing at the broker: ``buy.lua``), and settled once at expiry with the balance
credited. A configurable latency stands in for the network round trip of a real broker.

Errors of the ledger's Redis become the broker error tree: a buy whose answer did not come (the
connection broke, before or after the request left: redis-py cannot say which) is ambiguous,
reads that fail are temporary, a script the ledger refuses is fatal.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import ClassVar

import orjson
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from broker_workers.adapters.base import (
    Account,
    AmbiguousPurchase,
    FatalBrokerError,
    Fill,
    LeaseLost,
    Order,
    Outcome,
    TemporaryBrokerError,
    ensure_fenced,
)
from broker_workers.adapters.paper import ledger
from broker_workers.adapters.paper.ledger import CONTRACTS, ORDERS, LedgerOrder, cents
from broker_workers.fencing import abort_redis
from broker_workers.price_feed import price, settle
from broker_workers.settings import WorkerSettings
from core.brokers import broker
from core.connections import redis_client


class PaperBroker:
    name: ClassVar[str] = "paper"

    def __init__(self, settings: WorkerSettings) -> None:
        paper = settings.paper
        self.latency_s = paper.latency_ms / 1000
        self.payout_rate = Decimal(str(paper.payout_rate))
        self.start_cents = cents(paper.start_balance)
        self.seed = paper.price_seed
        capabilities = broker("paper").capabilities
        self.min_stake, self.max_stake = capabilities["min_stake"], capabilities["max_stake"]
        # A broker's books are its own: on their own Redis they outlive a failover of the hot
        # path's (PAPER_REDIS_URL), as a remote broker's would.
        self.redis = redis_client(paper.redis_url or settings.redis_url)
        # The ledger checks a purchase's lease itself only where it can read it: the leases are
        # on REDIS_URL. A ledger on a Redis of its own is fenced as a remote broker is, by the
        # worker's local deadline and its aborted connections (broker_workers.fencing).
        self.checks_leases = paper.redis_url in (None, settings.redis_url)

    def _start_cents(self, account: Account) -> int:
        start = account.credentials.get("starting_balance")
        return cents(start) if start is not None else self.start_cents

    async def open(self, accounts: list[Account]) -> None:
        try:
            await self.redis.ping()
        except (AuthenticationError, ResponseError) as exc:
            raise FatalBrokerError(f"the paper ledger refuses us: {exc}") from exc
        except RedisError as exc:
            raise TemporaryBrokerError("the paper ledger is unreachable") from exc

    async def close(self) -> None:
        await self.redis.aclose()

    def abort(self) -> None:
        """The worker's lease is lost: drop the ledger's connections, unsent requests with them
        (the ledger refuses a lapsed lease's purchase anyway; this is the Deriv adapter's
        behaviour too)."""
        abort_redis(self.redis)

    async def buy(self, orders: list[Order]) -> list[Fill]:
        await asyncio.sleep(self.latency_s)
        within = [o for o in orders if self.min_stake <= o.stake <= self.max_stake]
        answers = dict(
            zip((o.client_order_id for o in within), await self._buy(within), strict=True)
        )
        return [
            answers.get(o.client_order_id) or Fill(o.client_order_id, "rejected", "invalid_stake")
            for o in orders
        ]

    async def _buy(self, orders: list[Order]) -> list[Fill]:
        if not orders:
            return []
        rows = [
            LedgerOrder(
                o.client_order_id,
                o.account.account_id,
                self._start_cents(o.account),
                cents(o.stake),
                o.deadline_ms,
                o.asset,
                o.direction,
                o.expiry_seconds,
            )
            for o in orders
        ]
        fences = {id(o.fence): o.fence for o in orders if o.fence is not None}
        if len(fences) > 1:  # one request, one lease (the drain sends one gated batch)
            raise FatalBrokerError("orders of several leases in one paper purchase")
        ensure_fenced(orders)
        try:
            replies = await ledger.buy(
                self.redis, rows, next(iter(fences.values()), None), check_lease=self.checks_leases
            )
        except ResponseError as exc:
            raise FatalBrokerError(f"the paper ledger refused the purchase: {exc}") from exc
        except RedisError as exc:
            raise AmbiguousPurchase(
                f"no answer from the paper ledger ({type(exc).__name__})"
            ) from exc
        if replies and all(r == "lost:lease_lost" for r in replies):
            raise LeaseLost("the paper ledger refused a purchase of a lapsed lease")
        return [self._fill(o.client_order_id, r) for o, r in zip(orders, replies, strict=True)]

    def _fill(self, client_order_id: str, reply: str) -> Fill:
        if not reply.startswith("{"):
            status, reason = reply.split(":", 1)
            return Fill(client_order_id, status, reason)  # type: ignore[arg-type]
        contract = orjson.loads(reply)
        stake = Decimal(contract["stake_cents"]) / 100
        return Fill(
            client_order_id,
            "placed",
            contract_id=contract["contract_id"],
            stake=stake,
            payout=(stake * (1 + self.payout_rate)).quantize(Decimal("0.01")),
            broker_time_ms=contract["bought_ms"],
        )

    async def find_purchase(self, order: Order) -> Fill | None:
        try:
            contract_id = await self.redis.hget(ORDERS, order.client_order_id)
            if contract_id is None:
                return None
            contract = await self.redis.hget(CONTRACTS, contract_id)
        except RedisError as exc:
            raise TemporaryBrokerError("the paper ledger is unreachable") from exc
        return self._fill(order.client_order_id, str(contract)) if contract else None

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        try:
            return await self._outcome(contract_id)
        except RedisError as exc:
            raise TemporaryBrokerError("the paper ledger is unreachable") from exc

    async def _outcome(self, contract_id: str) -> Outcome | None:
        raw = await self.redis.hget(CONTRACTS, contract_id)
        if raw is None:
            return None
        contract = json.loads(raw)
        if contract["status"] == "open":
            if await self._now_ms() < contract["expiry_ms"]:
                return None
            entry = price(contract["asset"], contract["bought_ms"], self.seed)
            exit_ = price(contract["asset"], contract["expiry_ms"], self.seed)
            stake = contract["stake_cents"] / 100
            payout = float((Decimal(stake) * (1 + self.payout_rate)).quantize(Decimal("0.01")))
            result, profit = settle(contract["direction"], entry, exit_, stake, payout)
            credit = {"won": cents(payout), "refund": contract["stake_cents"]}.get(result, 0)
            raw = await ledger.settle(
                self.redis,
                contract_id=contract_id,
                outcome=result,
                profit_cents=cents(profit),
                settled_ms=contract["expiry_ms"],
                credit_cents=credit,
            )
            contract = json.loads(raw)
        return Outcome(
            contract_id=contract_id,
            outcome=contract["status"],
            profit=Decimal(contract["profit_cents"]) / 100,
            settled_at_ms=contract["settled_ms"],
        )

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        try:
            raw = await self.redis.hmget(ledger.BALANCES, [a.account_id for a in accounts])
        except RedisError as exc:
            raise TemporaryBrokerError("the paper ledger is unreachable") from exc
        return {
            a.account_id: Decimal(int(r) if r is not None else self._start_cents(a)) / 100
            for a, r in zip(accounts, raw, strict=True)
        }

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

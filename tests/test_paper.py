"""The paper broker against real Redis: atomic, idempotent purchases and one-time settlement."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from broker_workers.adapters.base import Account, Order
from broker_workers.adapters.paper import CONTRACTS, PaperBroker
from broker_workers.price_feed import price, settle
from signal_hub.settings import load_settings


@pytest.fixture
async def paper(redis: Redis, unit_redis_url: str) -> AsyncIterator[PaperBroker]:
    broker = PaperBroker(
        load_settings(
            {"APP_ENV": "development", "REDIS_URL": unit_redis_url, "PAPER_LATENCY_MS": "0"}
        )
    )
    await broker.open([])
    yield broker
    await broker.close()


def order(coid: str, account: Account, stake: str = "10", deadline_ms: int | None = None) -> Order:
    return Order(
        client_order_id=coid, signal_id="sig", subscription_id=coid, account=account,
        asset="R_100", direction="CALL", expiry_seconds=60, stake=Decimal(stake),
        deadline_ms=deadline_ms or int(time.time() * 1000) + 60_000,
    )  # fmt: skip


async def test_buy_is_idempotent_and_debits_once(paper: PaperBroker) -> None:
    acct = Account("a1", {})
    first = await paper.buy([order("t1", acct, "12.35")])
    again = await paper.buy([order("t1", acct, "12.35")])
    assert first[0].status == "placed" and first[0].stake == Decimal("12.35")
    assert again[0].contract_id == first[0].contract_id
    assert (await paper.balances([acct]))["a1"] == Decimal("9987.65")
    assert await paper.find_purchase(order("t1", acct)) == first[0]
    assert await paper.find_purchase(order("never", acct)) is None


async def test_refusals_insufficient_balance_and_past_deadline(paper: PaperBroker) -> None:
    poor = Account("a2", {"starting_balance": "5"})
    late = order("t3", Account("a3", {}), deadline_ms=int(time.time() * 1000) - 1)
    fills = await paper.buy([order("t2", poor), late])
    assert [(f.status, f.reason) for f in fills] == [
        ("rejected", "insufficient_balance"),
        ("skipped", "expired"),
    ]
    assert (await paper.balances([poor]))["a2"] == Decimal("5")


async def test_one_batch_debits_an_account_in_order_and_answers_repeats(
    paper: PaperBroker,
) -> None:
    shared = Account("a4", {"starting_balance": "25"})
    other = Account("a5", {})
    earlier = (await paper.buy([order("t4", other, "3")]))[0]
    fills = await paper.buy(
        [order("t5", shared), order("t4", other, "3"), order("t6", shared), order("t7", shared)]
    )
    assert [(f.status, f.reason) for f in fills] == [
        ("placed", None),
        ("placed", None),
        ("placed", None),
        ("rejected", "insufficient_balance"),
    ]
    assert fills[1] == earlier  # bought before: the same contract, not a second purchase
    assert len({f.contract_id for f in fills[:3]}) == 3
    balances = await paper.balances([shared, other])
    assert balances == {"a4": Decimal("5"), "a5": Decimal("9997")}


async def test_settlement_follows_the_feed_and_credits_once(
    paper: PaperBroker, redis: Redis
) -> None:
    acct = Account("a4", {})
    fill = (await paper.buy([order("t4", acct, "10")]))[0]
    assert fill.contract_id is not None
    assert await paper.outcome(acct, fill.contract_id) is None  # still open
    # Move the contract's expiry into the past, as time would.
    import json

    contract = json.loads(await redis.hget(CONTRACTS, fill.contract_id))
    contract["bought_ms"] -= 120_000
    contract["expiry_ms"] -= 120_000
    await redis.hset(CONTRACTS, fill.contract_id, json.dumps(contract))

    outcome = await paper.outcome(acct, fill.contract_id)
    again = await paper.outcome(acct, fill.contract_id)
    assert outcome == again and outcome is not None
    entry = price("R_100", contract["bought_ms"], paper.seed)
    exit_ = price("R_100", contract["expiry_ms"], paper.seed)
    expected, profit = settle("CALL", entry, exit_, 10.0, 18.5)
    assert (outcome.outcome, float(outcome.profit)) == (expected, profit)
    credit = {"won": Decimal("18.5"), "refund": Decimal("10"), "lost": Decimal("0")}[expected]
    assert (await paper.balances([acct]))["a4"] == Decimal("9990") + credit

"""The adapter conformance suite: what every broker adapter must do, checked against each.

Every broker of the catalogue runs it (paper on a real Redis, Deriv through the loopback
simulator), and so does the template filled in (``tests/memory_broker.py``). A new broker adds a
harness below: how to make an account with a balance, and how to lose the answer to a purchase.

The rules: open and close; a single and a batch buy, one Fill per order in order; an order bought
again is not bought twice; a stake the broker refuses and a balance too small are ``rejected``
Fills with a reason, never exceptions, and buy nothing; nothing is bought past the deadline; a
purchase whose answer was lost is found by ``find_purchase`` and not bought again; a settled
contract's outcome (while open: ``None``); balances, where the capabilities say so.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import (
    Account,
    AmbiguousPurchase,
    BrokerAdapter,
    Fill,
    LeaseLost,
    Order,
)
from broker_workers.adapters.paper import ledger
from broker_workers.deriv_sim.process import RunningSimulator
from broker_workers.settings import WorkerSettings, load_settings
from core.brokers import CATALOGUE, Capabilities
from tests.memory_broker import CAPABILITIES as MEMORY_CAPABILITIES
from tests.memory_broker import MemoryBroker

_ids = itertools.count(1)


@dataclass
class Harness:
    adapter: BrokerAdapter
    capabilities: Capabilities
    account: Callable[[Decimal], Awaitable[Account]]  # a new account holding this balance
    losing_the_next_answer: Callable[[], AbstractAsyncContextManager[None]]
    asset: str = "R_100"


def settings(**env: str) -> WorkerSettings:
    return load_settings({"APP_ENV": "development", "PAPER_LATENCY_MS": "0", **env})


class _LoseAnswers:
    """The next purchase happens, and its answer does not come back (a broken connection)."""

    def __init__(self, arm: Callable[[], Awaitable[None]], disarm: Callable[[], Awaitable[None]]):
        self.arm, self.disarm = arm, disarm

    async def __aenter__(self) -> None:
        await self.arm()

    async def __aexit__(self, *exc: object) -> None:
        await self.disarm()


async def paper_harness(redis: Redis, url: str, monkeypatch: pytest.MonkeyPatch) -> Harness:
    adapter = resolve_adapter("paper")(settings(REDIS_URL=url))  # type: ignore[call-arg]
    real_buy = ledger.buy

    async def buy_then_lose(redis: Redis, orders: Any, fence: Any = None, **kw: Any) -> list[str]:
        await real_buy(redis, orders, fence, **kw)
        from redis.exceptions import ConnectionError as RedisConnectionError

        raise RedisConnectionError("Connection closed by server.")

    async def account(balance: Decimal) -> Account:
        return Account(f"p{next(_ids)}", {"starting_balance": str(balance)})

    async def arm() -> None:
        monkeypatch.setattr(ledger, "buy", buy_then_lose)

    async def disarm() -> None:
        monkeypatch.setattr(ledger, "buy", real_buy)

    return Harness(
        adapter, CATALOGUE["paper"].capabilities, account, lambda: _LoseAnswers(arm, disarm)
    )


async def deriv_harness(sim: RunningSimulator, http: httpx.AsyncClient) -> Harness:
    base = settings(DERIV_WS_URL=sim.ws_url)
    tuned = replace(base.deriv, reply_timeout_s=2.0, backoff_base_s=0.05, reconcile_delay_s=0.1)
    adapter = resolve_adapter("deriv")(replace(base, deriv=tuned))  # type: ignore[call-arg]

    async def account(balance: Decimal) -> Account:
        token = f"tok-conformance-{next(_ids)}"
        created = await http.post(
            "/_sim/accounts", json={"token": token, "balance": float(balance)}
        )
        assert created.status_code == 201
        return Account(f"d-{token}", {"token": token})

    async def arm() -> None:
        assert (await http.post("/_sim/faults", json={"drop_after_debit_rate": 1})).is_success

    async def disarm() -> None:
        assert (await http.post("/_sim/faults", json={})).is_success

    return Harness(
        adapter, CATALOGUE["deriv"].capabilities, account, lambda: _LoseAnswers(arm, disarm)
    )


async def memory_harness() -> Harness:
    adapter = MemoryBroker(settings())

    async def account(balance: Decimal) -> Account:
        return Account(f"m{next(_ids)}", {"api_key": "k", "balance": str(balance)})

    async def arm() -> None:
        adapter.lose_next_reply = True

    async def nothing() -> None:
        pass

    return Harness(adapter, MEMORY_CAPABILITIES, account, lambda: _LoseAnswers(arm, nothing))


@pytest.fixture(params=["paper", "deriv", "template filled in"])
async def harness(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    redis: Redis,
    unit_redis_url: str,
    sim: RunningSimulator,
    http: httpx.AsyncClient,
) -> AsyncIterator[Harness]:
    if request.param == "paper":
        made = await paper_harness(redis, unit_redis_url, monkeypatch)
    elif request.param == "deriv":
        made = await deriv_harness(sim, http)
    else:
        made = await memory_harness()
    yield made
    await made.adapter.close()


def order(h: Harness, account: Account, **fields: Any) -> Order:
    n = next(_ids)
    return Order(**{
        "client_order_id": f"sig-c{n}-sub-{n}", "signal_id": f"sig-c{n}",
        "subscription_id": f"sub-{n}", "account": account, "asset": h.asset,
        "direction": "CALL", "expiry_seconds": 60, "stake": h.capabilities["min_stake"],
        "deadline_ms": int(time.time() * 1000) + 30_000, **fields,
    })  # fmt: skip


def placed(fill: Fill, o: Order) -> None:
    assert fill.client_order_id == o.client_order_id
    assert (fill.status, fill.reason) == ("placed", None), fill
    assert fill.contract_id and fill.stake == o.stake and fill.broker_time_ms


async def test_opens_buys_one_and_a_batch_in_order_and_never_twice(h: Harness) -> None:
    me, other = await h.account(Decimal(100)), await h.account(Decimal(100))
    await h.adapter.open([me, other])
    single = order(h, me)
    [fill] = await h.adapter.buy([single])
    placed(fill, single)
    signal = f"batch-{next(_ids)}"
    batch = [
        order(h, a, signal_id=signal, client_order_id=f"{signal}-{i}")
        for i, a in enumerate([me, other])
    ]
    fills = await h.adapter.buy(batch)
    for f, o in zip(fills, batch, strict=True):
        placed(f, o)
    assert len({f.contract_id for f in [fill, *fills]}) == 3
    again = await h.adapter.buy([single])  # the same order again: its first purchase
    assert again == [fill]
    assert await h.adapter.find_purchase(single) == fill
    if h.capabilities["reports_balances"]:
        spent = 2 * h.capabilities["min_stake"]
        assert (await h.adapter.balances([me]))[me.account_id] == Decimal(100) - spent


@dataclass(frozen=True)
class LapsedLease:
    """The lease an order was marked under, lost since (``adapters.base.Fence``)."""

    worker_id: str = "w-lapsed"
    token: str = "gone"

    def check(self) -> None:
        raise LeaseLost("lapsed")


async def test_an_order_whose_lease_is_lost_is_not_sent(h: Harness) -> None:
    me = await h.account(Decimal(100))
    await h.adapter.open([me])
    fenced = order(h, me, fence=LapsedLease())
    with pytest.raises(LeaseLost):
        await h.adapter.buy([fenced])
    assert await h.adapter.find_purchase(fenced) is None


async def test_refusals_are_fills_with_reasons_and_buy_nothing(h: Harness) -> None:
    minimum = h.capabilities["min_stake"]
    poor, rich = await h.account(minimum), await h.account(Decimal(100))
    await h.adapter.open([rich])
    too_much = order(h, rich, stake=h.capabilities["max_stake"] + 1)
    broke = order(h, poor, stake=2 * minimum)
    late = order(h, rich, deadline_ms=int(time.time() * 1000) - 1_000)
    fills = await h.adapter.buy([too_much, broke, late])
    assert [f.client_order_id for f in fills] == [
        too_much.client_order_id,
        broke.client_order_id,
        late.client_order_id,
    ]
    assert fills[0].status == "rejected" and fills[0].reason
    assert (fills[1].status, fills[1].reason) == ("rejected", "insufficient_balance")
    assert fills[2].status != "placed"
    for o in (too_much, broke, late):
        found = await h.adapter.find_purchase(o)
        assert found is None or found.status != "placed"


async def test_a_lost_answer_is_found_and_not_bought_again(h: Harness) -> None:
    me = await h.account(Decimal(100))
    await h.adapter.open([me])
    lost = order(h, me)
    async with h.losing_the_next_answer():
        try:
            answered: Fill | None = (await h.adapter.buy([lost]))[0]  # reconciled inside
        except AmbiguousPurchase:
            answered = None
    found = await h.adapter.find_purchase(lost)
    assert found is not None
    placed(found, lost)
    assert answered is None or answered.contract_id == found.contract_id
    assert await h.adapter.buy([lost]) == [found]  # asked again: the same purchase
    if h.capabilities["reports_balances"]:
        left = Decimal(100) - h.capabilities["min_stake"]
        assert (await h.adapter.balances([me]))[me.account_id] == left


async def test_outcome_once_the_contract_has_expired(h: Harness) -> None:
    me = await h.account(Decimal(100))
    await h.adapter.open([me])
    up = order(h, me, expiry_seconds=2)
    [fill] = await h.adapter.buy([up])
    assert fill.contract_id
    assert await h.adapter.outcome(me, fill.contract_id) is None  # still open
    deadline = time.monotonic() + 30
    while (outcome := await h.adapter.outcome(me, fill.contract_id)) is None:
        assert time.monotonic() < deadline, "never settled"
        await asyncio.sleep(0.25)
    assert outcome.contract_id == fill.contract_id and outcome.settled_at_ms
    expected = {
        "won": outcome.profit > 0,
        "lost": outcome.profit == -up.stake,
        "refund": outcome.profit == 0,
    }
    assert expected[outcome.outcome], outcome


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness

"""The Deriv adapter against the simulator running as a real uvicorn process.

Deadlines are generous and nothing asserts on timing: the machine may be slow and noisy.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from loguru import logger

from broker_workers import price_feed
from broker_workers.adapters import resolve_adapter
from broker_workers.adapters.base import Account, BrokerAdapter, Order, RejectedError
from broker_workers.adapters.deriv import DerivBroker, RateBudget, _buy_limits
from broker_workers.deriv_sim.process import RunningSimulator
from signal_hub.settings import load_settings
from tests.procs import SIM_SEED as SEED

_ids = itertools.count(1)


def new_broker(sim: RunningSimulator, connections: int | None = None) -> DerivBroker:
    """An adapter on the simulator, with short timeouts; ``connections`` overrides the pool."""
    settings = load_settings(
        {"APP_ENV": "development", "DERIV_WS_URL": sim.ws_url, "DERIV_APP_ID": "1089"}
    )
    if connections is not None:
        settings = replace(settings, deriv_connections=connections)
    adapter = DerivBroker(settings)
    adapter.reply_timeout_s = 2.0
    adapter.backoff_base_s = 0.05
    adapter.reconcile_delay_s = 0.1
    return adapter


@pytest.fixture
async def broker(sim: RunningSimulator, http: httpx.AsyncClient) -> AsyncIterator[DerivBroker]:
    adapter = new_broker(sim)  # the default pool: DERIV_CONNECTIONS=2
    yield adapter
    await adapter.close()


async def make_account(http: httpx.AsyncClient, name: str, balance: float = 100) -> Account:
    token = f"tok-{name}-{next(_ids)}"
    response = await http.post("/_sim/accounts", json={"token": token, "balance": balance})
    assert response.status_code == 201
    return Account(account_id=f"acct-{name}", credentials={"token": token})


async def make_accounts(http: httpx.AsyncClient, n: int, balance: float = 100) -> list[Account]:
    tokens = [f"tok-many-{next(_ids)}" for _ in range(n)]
    specs = [{"token": token, "balance": balance} for token in tokens]
    response = await http.post("/_sim/accounts", json={"accounts": specs})
    assert response.status_code == 201
    return [Account(account_id=f"acct-{t}", credentials={"token": t}) for t in tokens]


def ghost(name: str = "ghost") -> Account:
    return Account(account_id=f"acct-{name}", credentials={"token": f"tok-unknown-{next(_ids)}"})


def order(account: Account, **overrides: Any) -> Order:
    n = next(_ids)
    fields: dict[str, Any] = {
        "client_order_id": f"sig-1-sub-{n}",  # the trade id: {signal}-{subscription}
        "signal_id": "sig-1",
        "subscription_id": f"sub-{n}",
        "account": account,
        "asset": "R_100",
        "direction": "CALL",
        "expiry_seconds": 60,
        "stake": Decimal("0.35"),
        "deadline_ms": int(time.time() * 1000) + 30_000,
    }
    return Order(**{**fields, **overrides})


async def purchases(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await http.get("/_sim/purchases")).json()["purchases"])


async def faults(http: httpx.AsyncClient, **plan: Any) -> None:
    assert (await http.post("/_sim/faults", json=plan)).status_code == 200


async def rate_limit_answers(http: httpx.AsyncClient) -> int:
    return int((await http.get("/_sim/stats")).json()["rate_limited"])


async def balance_of(http: httpx.AsyncClient, loginid: str) -> float:
    listed = (await http.get("/_sim/accounts")).json()["accounts"]
    return float(next(a["balance"] for a in listed if a["loginid"] == loginid))


def test_registered_and_shaped_like_the_protocol() -> None:
    assert resolve_adapter("deriv") is DerivBroker
    adapter = DerivBroker(load_settings({"APP_ENV": "development"}))
    assert isinstance(adapter, BrokerAdapter)
    caps = DerivBroker.capabilities
    assert caps["min_stake"] == Decimal("0.35")
    assert caps["max_orders_per_request"] == 100
    assert caps["assets"]["EURUSD"] == "frxEURUSD"
    assert caps["assets"]["R_75"] == "R_75"
    assert caps["buys_per_minute"] == 324  # 90 % of the 360 a minute Deriv documents
    assert "app_id=" in adapter.url
    assert len(adapter.sessions) == 2  # DERIV_CONNECTIONS' default


async def test_placed_keeps_the_stake_and_tags_the_purchase(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    o = order(me)
    [fill] = await broker.buy([o])
    assert fill.status == "placed"
    assert fill.stake == Decimal("0.35")
    assert fill.payout == Decimal("0.68")
    [made] = await purchases(http)
    assert made["call"] == "buy"  # the session's own account: a single buy
    assert made["contract_id"] == int(fill.contract_id or 0)
    assert made["amount"] == 0.35
    assert made["passthrough"] == {
        "client_order_id": o.client_order_id,
        "signal_id": o.signal_id,
        "subscription_id": o.subscription_id,
    }
    assert await broker.find_purchase(o) == fill


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("InvalidToken", "invalid_token"),
        ("AuthorizationRequired", "invalid_token"),
        ("InsufficientBalance", "insufficient_balance"),
        ("MarketIsClosed", "market_closed"),
        ("ContractBuyValidationError", "invalid_contract"),
        ("OfferingsValidationError", "invalid_contract"),
        ("InputValidationFailed", "invalid_contract"),
        ("InvalidContractProposal", "invalid_contract"),
        ("PriceMoved", "price_moved"),
        ("ContractCreationFailure", "broker_error"),
    ],
)
async def test_each_error_code_has_its_reason(
    broker: DerivBroker, http: httpx.AsyncClient, code: str, reason: str
) -> None:
    me = await make_account(http, "me")
    other = await make_account(http, "other")
    await broker.open([me])
    await faults(http, error_queue=[code, code])
    single, multi = await asyncio.gather(broker.buy([order(me)]), broker.buy([order(other)]))
    assert (single[0].status, single[0].reason) == ("rejected", reason)
    assert (multi[0].status, multi[0].reason) == ("rejected", reason)
    assert await purchases(http) == []


async def test_refusals_from_the_broker_itself(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me", balance=0.5)
    poor = await make_account(http, "poor", balance=0.1)
    await broker.open([me])
    await faults(http, closed_symbols=["frxEURUSD"])
    fills = await broker.buy(
        [
            order(poor),
            order(ghost(), signal_id="sig-2"),
            order(me, asset="EURUSD"),
            order(me, asset="XAUUSD"),
            order(me, stake=Decimal("0.34"), signal_id="sig-3"),
        ]
    )
    assert [(f.status, f.reason) for f in fills] == [
        ("rejected", "insufficient_balance"),
        ("rejected", "invalid_token"),
        ("rejected", "market_closed"),
        ("rejected", "invalid_contract"),  # not a Deriv asset: never sent
        ("rejected", "invalid_contract"),  # under Deriv's minimum stake
    ]
    assert await purchases(http) == []


async def test_multi_account_buy_with_receipts_and_errors(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    session = await make_account(http, "session")
    rich = await make_account(http, "rich")
    poor = await make_account(http, "poor", balance=0.2)
    rich2 = await make_account(http, "rich2")
    await broker.open([session])
    orders = [order(rich), order(poor), order(ghost()), order(rich2)]
    fills = await broker.buy(orders)
    assert [(f.client_order_id, f.status, f.reason) for f in fills] == [
        (orders[0].client_order_id, "placed", None),
        (orders[1].client_order_id, "rejected", "insufficient_balance"),
        (orders[2].client_order_id, "rejected", "invalid_token"),
        (orders[3].client_order_id, "placed", None),
    ]
    made = await purchases(http)
    assert {p["call"] for p in made} == {"buy_contract_for_multiple_accounts"}
    for p in made:  # one request; its passthrough maps every token back to its order
        passthrough = p["passthrough"]
        assert passthrough["signal_id"] == "sig-1"
        coid = f"sig-1-{passthrough['subscription_ids'][p['token_index']]}"
        fill = next(f for f in fills if f.client_order_id == coid)
        assert fill.contract_id == str(p["contract_id"])
    assert len({p["token_index"] for p in made}) == 2


async def test_large_groups_are_split_within_deriv_limits(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    session = await make_account(http, "session")
    accounts = [await make_account(http, f"s{i}") for i in range(130)]
    await broker.open([session])
    fills = await broker.buy([order(a) for a in accounts])
    assert all(f.status == "placed" for f in fills)
    made = await purchases(http)
    assert len(made) == 130
    requests: dict[str, int] = {}
    for p in made:
        key = p["passthrough"]["subscription_ids"][0]
        requests[key] = requests.get(key, 0) + 1
    assert all(n <= 100 for n in requests.values())
    assert len(requests) >= 2


async def test_replies_are_matched_by_req_id_not_arrival(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    await faults(http, seed=3, latency_ms=5, jitter_ms=80)
    orders = [order(me, asset=a) for a in ("R_10", "R_25", "R_50", "R_75", "R_100", "EURUSD")]
    fills = await broker.buy(orders)
    by_order = {p["passthrough"]["client_order_id"]: p for p in await purchases(http)}
    for o, fill in zip(orders, fills, strict=True):
        assert fill.client_order_id == o.client_order_id
        assert fill.contract_id == str(by_order[o.client_order_id]["contract_id"])
        assert by_order[o.client_order_id]["symbol"] == DerivBroker.capabilities["assets"][o.asset]


async def test_dropped_socket_reconnects_and_buys_once(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    pool = len(broker.sessions)
    assert broker.connections_opened == pool
    await faults(http, disconnect_after_messages=1)  # the buy's socket closes, unprocessed
    [fill] = await broker.buy([order(me)])
    assert fill.status == "placed"
    assert broker.connections_opened >= pool + 1
    assert len(await purchases(http)) == 1


async def test_lost_reply_is_reconciled_without_a_second_purchase(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    await faults(http, drop_after_debit_rate=1)
    o = order(me)
    [fill] = await broker.buy([o])
    [made] = await purchases(http)
    assert fill.status == "placed"
    assert fill.contract_id == str(made["contract_id"])
    assert fill.stake == Decimal("0.35")
    assert await broker.find_purchase(o) == fill


async def test_lost_multi_account_reply_is_reconciled_per_account(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    session = await make_account(http, "session")
    a, b = await make_account(http, "a"), await make_account(http, "b")
    await broker.open([session])
    await faults(http, drop_after_debit_rate=1)
    orders = [order(a), order(b), order(a, signal_id="sig-2", direction="PUT")]
    fills = await broker.buy(orders)
    made = await purchases(http)
    assert len(made) == 3
    assert all(f.status == "placed" for f in fills)
    assert sorted(f.contract_id or "" for f in fills) == sorted(str(p["contract_id"]) for p in made)


async def test_find_purchase_by_details_after_a_restart(
    broker: DerivBroker, http: httpx.AsyncClient, sim: RunningSimulator
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    bought, never = order(me), order(me, direction="PUT")
    [fill] = await broker.buy([bought])
    fresh = DerivBroker(
        load_settings({"APP_ENV": "development", "DERIV_WS_URL": sim.ws_url})
    )  # no memory of receipts
    try:
        found = await fresh.find_purchase(bought)
        # The statement stamps to the whole second; the live receipt by its arrival.
        assert found is not None and found.broker_time_ms is not None
        assert fill.broker_time_ms is not None and found.broker_time_ms <= fill.broker_time_ms
        assert replace(found, broker_time_ms=fill.broker_time_ms) == fill
        assert await fresh.find_purchase(never) is None
        assert await fresh.find_purchase(order(me)) is None  # same details, contract taken
    finally:
        await fresh.close()


async def test_our_rate_budget_is_honoured(broker: DerivBroker, http: httpx.AsyncClient) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    for session in broker.sessions:  # one request a minute per connection
        session.budget = RateBudget(per_minute=1, per_hour=100)
    pool = len(broker.sessions)
    soon = int(time.time() * 1000) + 10_000  # the next token comes back in 60 s: too late
    assets = ("R_10", "R_25", "R_50", "R_75", "R_100")[: pool + 1]
    fills = await broker.buy([order(me, asset=a, deadline_ms=soon) for a in assets])
    assert sorted((f.status, f.reason) for f in fills) == [
        ("failed", "rate_limited"),
        *[("placed", None)] * pool,
    ]
    assert len(await purchases(http)) == pool


async def test_rate_limit_answers_are_retried_until_the_deadline(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    await faults(http, error_queue=["RateLimit", "RateLimit"])
    [fill] = await broker.buy([order(me)])
    assert fill.status == "placed"

    await faults(http, buys_per_minute=1)  # per connection: one more buy on each
    pool = len(broker.sessions)
    soon = int(time.time() * 1000) + 3000
    assets = ("R_10", "R_25", "R_50", "R_75", "R_100")[: pool + 1]
    fills = await broker.buy([order(me, asset=a, deadline_ms=soon) for a in assets])
    assert sorted((f.status, f.reason) for f in fills) == [
        ("failed", "rate_limited"),
        *[("placed", None)] * pool,
    ]
    assert len(await purchases(http)) == 1 + pool


async def test_nothing_is_sent_after_the_deadline(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    await broker.open([me])
    [fill] = await broker.buy([order(me, deadline_ms=int(time.time() * 1000) - 1)])
    assert (fill.status, fill.reason) == ("skipped", "expired")
    assert await purchases(http) == []


async def test_settlement_won_and_lost_through_outcome(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me", balance=10)
    other = await make_account(http, "other", balance=10)
    await broker.open([me])
    up, down = order(me, expiry_seconds=2), order(other, expiry_seconds=2, direction="PUT")
    fills = await broker.buy([up, down])
    assert await broker.outcome(me, fills[0].contract_id or "") is None  # still open
    outcomes = []
    for account, o, fill in zip((me, other), (up, down), fills, strict=True):
        result = None
        for _ in range(150):
            result = await broker.outcome(account, fill.contract_id or "")
            if result is not None:
                break
            await asyncio.sleep(0.1)
        assert result is not None
        start = (fill.broker_time_ms or 0) // 1000
        entry = price_feed.price("R_100", (fill.broker_time_ms or 0), SEED)
        exit_ = price_feed.price("R_100", (start + 2) * 1000, SEED)
        expected, profit = price_feed.settle(
            o.direction, entry, exit_, 0.35, float(fill.payout or 0)
        )
        assert (result.outcome, result.profit) == (expected, Decimal(str(profit)))
        assert result.settled_at_ms == (start + 2) * 1000
        outcomes.append(result.outcome)
    if fills[0].broker_time_ms == fills[1].broker_time_ms and "refund" not in outcomes:
        assert sorted(outcomes) == ["lost", "won"]  # same asset and seconds, opposite sides
    want: dict[str, Decimal] = {}
    for account, fill, outcome in zip((me, other), fills, outcomes, strict=True):
        credit = {"won": fill.payout, "lost": Decimal(0), "refund": fill.stake}[outcome]
        want[account.account_id] = Decimal("10") - Decimal("0.35") + (credit or 0)
    # each credited once, and an account whose token Deriv refuses is left out
    assert await broker.balances([me, other, ghost()]) == want
    with pytest.raises(RejectedError):
        await broker.outcome(other, fills[0].contract_id or "")  # not that account's contract


async def test_keep_alive_and_reconnect_after_an_idle_close(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    me = await make_account(http, "me")
    broker.ping_interval_s = 0.2
    await broker.open([me])
    pool = len(broker.sessions)
    await faults(http, idle_timeout_s=1.5)
    await asyncio.sleep(2.5)  # pings keep the sessions open across the idle limit
    assert broker.connections_opened == pool

    broker.ping_interval_s = 600  # no pings for the next connection: the broker drops it
    await faults(http, idle_timeout_s=0.5)
    await broker.buy([order(me, asset="R_10")])  # forces a message, then the connection idles
    for _ in range(200):
        if broker.connections_opened >= pool + 1:
            break
        await asyncio.sleep(0.05)
    await faults(http)
    [fill] = await broker.buy([order(me)])
    assert fill.status == "placed"
    assert broker.connections_opened >= pool + 1


async def test_tokens_stay_out_of_logs_and_errors(
    broker: DerivBroker, http: httpx.AsyncClient
) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        me = await make_account(http, "me")
        bad = ghost()
        await broker.open([bad, me])  # the first token is refused, the second authorizes
        await faults(http, drop_after_debit_rate=1)
        fills = await broker.buy([order(me), order(bad)])
        assert [f.status for f in fills] == ["placed", "rejected"]
        assert await broker.balances([bad]) == {}
        with pytest.raises(RejectedError) as refused:
            await broker.outcome(bad, "1")
    finally:
        logger.remove(sink)
    text = "\n".join(lines) + str(refused.value) + repr(bad) + repr(me)
    assert lines
    for secret in (_token(me), _token(bad)):
        assert secret not in text


async def test_a_signal_spreads_over_every_connection(
    sim: RunningSimulator, http: httpx.AsyncClient
) -> None:
    session = await make_account(http, "session")
    accounts = await make_accounts(http, 300)
    broker = new_broker(sim, connections=3)
    try:
        await broker.open([session])
        assert broker.connections_opened == 3
        fills = await broker.buy([order(a) for a in accounts])  # three requests of 100 tokens
    finally:
        await broker.close()
    assert all(f.status == "placed" for f in fills)
    made = await purchases(http)
    assert len(made) == 300
    by_connection = Counter(p["connection"] for p in made)
    assert sorted(by_connection.values()) == [100, 100, 100]  # one request on each connection


def test_the_budget_follows_the_group_buy_is_in() -> None:
    def report(**groups: tuple[str, int, int]) -> dict[str, Any]:
        limits = {
            k: {"applies_to": a, "minutely": m, "hourly": h} for k, (a, m, h) in groups.items()
        }
        return {"website_status": {"api_call_limits": limits}}

    current = report(
        max_requestes_general=("rest of calls", 220, 14400),
        max_requests_pricing=("proposal, proposal_open_contract, buy and sell", 360, 14400),
    )
    assert _buy_limits(current) == (360, 14400)
    older = report(  # buy named in no group: it is among the "rest of calls"
        max_requestes_general=("rest of calls", 180, 14400),
        max_requests_pricing=("proposal and proposal_open_contract", 80, 3600),
    )
    assert _buy_limits(older) == (180, 14400)
    assert _buy_limits({"website_status": {}}) is None
    assert _buy_limits(report(max_requestes_general=("rest of calls", 0, 14400))) is None


async def test_each_connection_keeps_to_the_limit_website_status_reports(
    sim: RunningSimulator, http: httpx.AsyncClient
) -> None:
    # Reported and enforced: 4 a minute per connection. Our share (90 %) is 3 on each of 2.
    await faults(http, buy_limit_per_minute=4, buys_per_minute=4)
    session = await make_account(http, "session")
    accounts = await make_accounts(http, 10)
    broker = new_broker(sim, connections=2)
    try:
        await broker.open([session])
        soon = int(time.time() * 1000) + 5_000  # a spent budget refills one buy in 20 s
        fills = await broker.buy(
            [order(a, signal_id=f"sig-{i}", deadline_ms=soon) for i, a in enumerate(accounts)]
        )
    finally:
        await broker.close()
    placed = [f for f in fills if f.status == "placed"]
    assert len(placed) == 2 * 3
    assert {(f.status, f.reason) for f in fills if f.status != "placed"} == {
        ("failed", "rate_limited")
    }
    assert await rate_limit_answers(http) == 0  # never asked the broker for more than it allows
    assert len(await purchases(http)) == 6


@pytest.mark.parametrize(
    "plan",
    [
        {"disconnect_after_messages": 2},  # a buy's connection dies, the buy unprocessed
        {"disconnect_after_messages": 2, "drop_after_debit_rate": 0.5, "seed": 0},  # and debits
    ],
)
async def test_a_killed_connection_places_every_order_once(
    sim: RunningSimulator, http: httpx.AsyncClient, plan: dict[str, Any]
) -> None:
    session = await make_account(http, "session")
    accounts = await make_accounts(http, 300)
    broker = new_broker(sim, connections=3)
    try:
        await broker.open([session])
        await faults(http, latency_ms=20, jitter_ms=20, **plan)
        fills = await broker.buy([order(a) for a in accounts])
        assert broker.connections_opened >= 4  # the killed connection was opened again
    finally:
        await broker.close()
    assert all(f.status == "placed" for f in fills)
    made = await purchases(http)
    assert sorted(p["token"] for p in made) == sorted(_token(a) for a in accounts)
    assert sorted(f.contract_id or "" for f in fills) == sorted(str(p["contract_id"]) for p in made)


def _token(account: Account) -> str:
    return account.credentials["token"]

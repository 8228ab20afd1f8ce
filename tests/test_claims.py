"""The claim scripts on a real Redis: expansion, claims, the send gate and exactly-once finish."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from broker_workers.adapters.base import Account, Fill
from broker_workers.claims import ClaimBook
from broker_workers.process import order_for
from core import keys, scripts
from core.clock import utc_day
from core.records import SignalInfo
from core.scripts import Claimed, GateItem, NewSignal, Terminal
from signal_hub.cancel import Canceller
from signal_hub.errors import Forbidden, NotFound
from signal_hub.relay import records_of


async def seed_channel(redis: Redis, channel_id: str, subs: int, delay_ms: int = 2000) -> None:
    await redis.set(
        keys.channel(channel_id),
        json.dumps({"id": channel_id, "senders": ["prov"], "max_signal_delay_ms": delay_ms,
                    "assets": None, "provider_id": "prov", "name": "c"}),
    )  # fmt: skip
    for i in range(subs):
        sub_id = f"s{i}"
        entry = {"id": sub_id, "channel_id": channel_id, "user_id": f"u{i}", "account_id": f"a{i}",
                 "broker": "paper", "stake": {"mode": "fixed", "amount": 5}, "limits": {},
                 "paused": False}  # fmt: skip
        await redis.hset(keys.subscriptions(channel_id), sub_id, json.dumps(entry))
        await redis.hset(
            keys.accounts("paper"), f"a{i}", json.dumps({"id": f"a{i}", "credentials": "x"})
        )
        await redis.sadd(keys.directory(channel_id, "paper"), sub_id)


def new_signal(
    signal_id: str, channel_id: str, client_id: str = "", sender: str = "prov"
) -> NewSignal:
    return NewSignal(signal_id, channel_id, sender, "EURUSD", "CALL", 60, client_id)


async def expand(redis: Redis, signal_id: str, channel_id: str, client_id: str = "") -> list[str]:
    status, body = await scripts.expand(
        redis, new_signal(signal_id, channel_id, client_id), ["paper"]
    )
    return [status, body]


async def execution_records(redis: Redis) -> list[dict[str, Any]]:
    """Every execution record on the results stream, in order (an entry may hold a batch)."""
    entries: Any = await redis.xrange(keys.RESULTS)
    return [r for _, f in entries if f["kind"] == "execution" for r in records_of(f)]


async def beat(redis: Redis, worker: str) -> None:
    await redis.set(keys.worker_heartbeat(worker), "1", px=5000)


def gate(*ids: str, max_trades: int = 0) -> list[GateItem]:
    return [GateItem(i, "5", max_trades_per_day=max_trades) for i in ids]


async def test_expand_copies_the_directory_and_counts_it(redis: Redis) -> None:
    await seed_channel(redis, "c1", 250)
    status, body = await expand(redis, "sig1", "c1")
    assert status == "ok"
    ack = json.loads(body)
    assert ack["fanout"] == {"total": 250, "by_broker": {"paper": 250}}
    assert await redis.scard(keys.work("sig1", "paper")) == 250
    assert await redis.hget(keys.signal("sig1"), "status") == "active"
    created, deadline = await redis.hmget(keys.signal("sig1"), "created_ms", "deadline_ms")
    assert int(deadline or 0) - int(created or 0) == 2000
    entries: Any = await redis.xrange(keys.RESULTS)
    assert [e[1]["kind"] for e in entries] == ["signal"]


async def test_expand_refuses_strangers_and_dedupes_resends(redis: Redis) -> None:
    await seed_channel(redis, "c1", 3)
    answer = await scripts.expand(redis, new_signal("x", "c1", sender="mallory"), ["paper"])
    assert answer == ("err", "forbidden")
    assert not await redis.exists(keys.signal("x"))
    first = await expand(redis, "sig1", "c1", client_id="r1")
    again = await expand(redis, "sig2", "c1", client_id="r1")
    assert again == ["dup", first[1]]
    assert not await redis.exists(keys.work("sig2", "paper"))


async def test_claims_partition_the_work_and_finish_writes_each_record_once(redis: Redis) -> None:
    await seed_channel(redis, "c1", 30)
    await expand(redis, "sig1", "c1")
    a, b = ClaimBook(redis, "wa", "paper"), ClaimBook(redis, "wb", "paper")
    await beat(redis, "wa")
    await beat(redis, "wb")
    seen: list[str] = []
    for book in (a, b, a, b):
        signal, claims = await book.claim("sig1", "c1", 8)
        assert signal is not None and signal.asset == "EURUSD"
        seen += [c.subscription_id for c in claims]
        assert all(c.subscription and c.account for c in claims)
    _, rest = await a.claim("sig1", "c1", 100)
    seen += [c.subscription_id for c in rest]
    assert sorted(seen) == sorted(f"s{i}" for i in range(30))
    _, empty = await b.claim("sig1", "c1", 8)
    assert empty == []

    # seen[:8] are a's claims, seen[8:16] b's: a may send its own, never b's.
    verdicts, _ = await a.mark_sending("sig1", gate(*seen[:2], seen[8]), utc_day(), 0)
    assert verdicts == ["go", "go", "lost"]
    terminals = [Terminal(s, {"trade_id": s, "status": "placed", "channel_id": "c1"}) for s in seen]
    written = await a.finish("sig1", terminals) + await b.finish("sig1", terminals)
    assert written == 30
    assert await a.finish("sig1", terminals) == 0
    executions = await execution_records(redis)
    assert len(executions) == 30 and len({r["trade_id"] for r in executions}) == 30
    assert await redis.scard(keys.claims("wa")) == 0 and await redis.scard(keys.claims("wb")) == 0


async def test_finish_queues_settlement_and_remembers_contracts_only_when_asked(
    redis: Redis,
) -> None:
    await seed_channel(redis, "c1", 4)
    await expand(redis, "sig1", "c1")
    signal = SignalInfo.from_hash("sig1", await redis.hgetall(keys.signal("sig1")))  # type: ignore[arg-type]
    remembering = ClaimBook(redis, "wa", "deriv")
    forgetting = ClaimBook(redis, "wb", "paper", remember_contracts=False)

    def placed(book: ClaimBook, sub_id: str, account_id: str) -> Terminal:
        claim = Claimed(sub_id, {"user_id": "u", "account_id": account_id}, None)
        order = order_for(signal, claim, Account(account_id, {}), Decimal("5"))
        fill = Fill(order.client_order_id, "placed", contract_id=f"k{sub_id}",
                    stake=Decimal("5"), payout=Decimal("9.25"), broker_time_ms=1_000)  # fmt: skip
        return book.for_fill(signal, claim, order, fill, utc_day())

    both = [placed(remembering, "s0", "a0"), placed(remembering, "s1", "a0")]
    assert await remembering.finish("sig1", both) == 2
    assert await forgetting.finish("sig1", [placed(forgetting, "s2", "a2")]) == 1
    assert await redis.smembers(keys.recorded_contracts("a0")) == {"ks0", "ks1"}
    assert not await redis.exists(keys.recorded_contracts("a2"))
    assert await redis.zcard(keys.settle_queue("deriv")) == 2
    assert await redis.zcard(keys.settle_queue("paper")) == 1


async def test_the_gate_refuses_cancelled_expired_and_lapsed_workers(redis: Redis) -> None:
    await seed_channel(redis, "c1", 4, delay_ms=60_000)
    await expand(redis, "sig1", "c1")
    book = ClaimBook(redis, "w1", "paper")
    day = utc_day()
    _, claims = await book.claim("sig1", "c1", 4)
    ids = gate(*(c.subscription_id for c in claims))

    verdicts, _ = await book.mark_sending("sig1", ids[:1], day, 0)
    assert verdicts == ["lost"]  # no heartbeat: the reaper may own these claims

    await beat(redis, "w1")
    await redis.hset(keys.signal("sig1"), "status", "cancelled")
    verdicts, _ = await book.mark_sending("sig1", ids[:1], day, 0)
    assert verdicts == ["cancelled"]

    await redis.hset(keys.signal("sig1"), mapping={"status": "active", "deadline_ms": 1})
    verdicts, _ = await book.mark_sending("sig1", ids[1:2], day, 0)
    assert verdicts == ["expired"]

    await redis.hset(keys.signal("sig1"), "deadline_ms", 2**50)
    verdicts, _ = await book.mark_sending("sig1", ids[2:], day, 0)
    assert verdicts == ["go", "go"]
    states = await redis.hgetall(keys.state("sig1"))
    assert sorted(states.values()) == ["c|w1", "c|w1", "s|w1|5", "s|w1|5"]
    # The same gate again (redis-py retrying a call whose answer was lost): go, counted once.
    verdicts, _ = await book.mark_sending("sig1", ids[2:], day, 0)
    assert verdicts == ["go", "go"]


async def test_max_trades_per_day_is_counted_atomically(redis: Redis) -> None:
    await seed_channel(redis, "c1", 1, delay_ms=60_000)
    day = utc_day()
    book = ClaimBook(redis, "w1", "paper")
    await beat(redis, "w1")
    verdicts = []
    for n in range(3):
        await expand(redis, f"sig{n}", "c1")
        await book.claim(f"sig{n}", "c1", 1)
        v, _ = await book.mark_sending(f"sig{n}", gate("s0", max_trades=2), day, 0)
        verdicts += v
    assert verdicts == ["go", "go", "max_trades_per_day"]
    assert await redis.hget(keys.daily("s0", day), "trades") == "2"


async def test_cancel_ends_waiting_work_and_stops_claimed_work_at_the_gate(redis: Redis) -> None:
    await seed_channel(redis, "c1", 10, delay_ms=60_000)
    await expand(redis, "sig1", "c1")
    book = ClaimBook(redis, "w1", "paper")
    await beat(redis, "w1")
    day = utc_day()
    _, claimed = await book.claim("sig1", "c1", 3)
    canceller = Canceller(redis, ["paper"])

    with pytest.raises(Forbidden):
        await canceller.cancel("mallory", {"signal_id": "sig1"})
    with pytest.raises(NotFound):
        await canceller.cancel("prov", {"signal_id": "nope"})
    assert await redis.hget(keys.signal("sig1"), "status") == "active"

    ack = await canceller.cancel("prov", {"signal_id": "sig1"})
    assert ack == {"ok": True, "signal_id": "sig1", "cancellable": 10}
    # A repeated cancel (a resend, or a retry whose answer was lost) gives the same answer.
    assert (await canceller.cancel("prov", {"signal_id": "sig1"}))["cancellable"] == 10
    verdicts, _ = await book.mark_sending(
        "sig1", gate(*(c.subscription_id for c in claimed)), day, 0
    )
    assert verdicts == ["cancelled"] * 3

    records = await execution_records(redis)
    assert len(records) == 7 and {(r["status"], r["reason"]) for r in records} == {
        ("skipped", "cancelled")
    }
    assert {r["subscription_id"] for r in records}.isdisjoint(c.subscription_id for c in claimed)

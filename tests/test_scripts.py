"""Every Lua script through its binding, on a real Redis, checked to touch only the keys it was
given (``KEYS``): each ``redis.call`` asks ``COMMAND GETKEYS`` which keys it names and fails the
script on any other. And the record the scripts write for a subscriber nothing was sent for is the
one ``core.records`` defines."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from broker_workers.adapters.paper import ledger
from core import keys, scripts
from core.clock import now_ms, utc_day
from core.records import ExecutionRecord, SignalInfo, execution_record
from core.scripts import GateItem, NewSignal, Script, Terminal
from core.shards import Shard, Shards
from tests.test_claims import beat, execution_records, seed_channel

CHECK = """
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local function checked_call(...)
  local ok, named = pcall(redis.call, 'COMMAND', 'GETKEYS', ...)
  if ok then
    for _, key in ipairs(named) do
      if not declared[key] then error('touched a key it was not given: ' .. key) end
    end
  end
  return redis.call(...)
end
"""


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Every script checks its keys; yields the names of the scripts that ran."""
    ran: set[str] = set()
    for script in Script.loaded:
        source = CHECK + script.source.replace("redis.call(", "checked_call(")
        monkeypatch.setattr(script, "source", source)
        monkeypatch.setattr(script, "sha", hashlib.sha1(source.encode()).hexdigest())
    run = Script.__call__

    async def recording(self: Script, redis: Redis, keys: Any, args: Any = ()) -> Any:
        ran.add(self.name)
        return await run(self, redis, keys, args)

    monkeypatch.setattr(Script, "__call__", recording)
    yield ran


async def test_every_script_touches_only_its_keys(redis: Redis, checked: set[str]) -> None:
    await seed_channel(redis, "c1", 6, delay_ms=60_000)
    brokers = ["paper", "deriv"]
    # the signal comes in: now, later, fired; a spare copy; a resend
    now = NewSignal("s1", "c1", "prov", "EURUSD", "CALL", 60, "client-1")
    assert (await scripts.expand(redis, now, brokers))[0] == "ok"
    assert (await scripts.expand(redis, now, brokers))[0] == "dup"
    await scripts.make_spares(redis, "c1", brokers)
    later = NewSignal("s2", "c1", "prov", "EURUSD", "PUT", 60, "client-2")
    at_ms = now_ms() + 60_000
    assert (await scripts.schedule(redis, later, at_ms))[0] == "ok"
    assert (await scripts.fire(redis, later, at_ms, brokers))[0] == "ok"
    # a worker takes s1: claim, gate, finish; another's claims released; cancel the rest
    await beat(redis, "w1")
    signal, claimed = await scripts.claim(
        redis, signal_id="s1", channel_id="c1", broker="paper", worker_id="w1", count=4
    )
    assert signal is not None and len(claimed) == 4
    items = [GateItem(c.subscription_id, "5", 3, 10.0) for c in claimed]
    assert await scripts.renew_lease(redis, worker_id="w1", token="1", ttl_ms=5000)
    verdicts, _ = await scripts.mark_sending(
        redis, signal_id="s1", worker_id="w1", day=utc_day(), send_margin_ms=0, items=items,
        lease_token="1",
    )  # fmt: skip
    assert verdicts == ["go"] * 4
    placed = Terminal(
        claimed[0].subscription_id,
        {"trade_id": "t"},
        now_ms(),
        {"contract_id": "k1"},
        recorded_account="a0",
        undo_daily_key=keys.daily(claimed[0].subscription_id, utc_day()),
    )
    assert await scripts.finish(
        redis, signal_id="s1", broker="paper", worker_id="w1", terminals=[placed]
    )
    await redis.delete(keys.worker_heartbeat("w1"))
    redrive = await scripts.release(
        redis, worker_id="w1", only_if_dead=True, send_margin_ms=0, reconcile_after_ms=0
    )
    assert redrive == []  # the unsent ones were marked sending: orphans now
    ack = await scripts.cancel(
        redis, signal_id="s2", channel_id="c1", sender_id="prov", brokers=brokers
    )
    assert ack[0] == "ok"
    await redis.zadd(keys.ACTIVE, {"s1|paper": 0})
    assert await scripts.expire_work(redis, signal_id="s1", broker="paper") == 2
    # settlement, presence, kill points, the paper ledger
    await redis.zadd(keys.settle_queue("paper"), {"m": 0})
    assert await scripts.take_due(redis, schedule=keys.settle_queue("paper"), limit=5, lease_ms=1)
    assert await scripts.record_settlement(
        redis, broker="paper", member="m", signal_id="s1", subscription_id="s0",
        kind="settlement", record={"outcome": "lost"}, loss=5.0, day=utc_day(),
    )  # fmt: skip
    assert await scripts.presence_adjust(redis, hub_id="h", user_id="u", delta=1) == 1
    await scripts.presence_forget(redis, hub_id="h")
    await redis.set(keys.FAULT_ARMED, "after_claim:1")
    assert await scripts.fault_reached(redis, point="after_claim")
    order = ledger.LedgerOrder("o1", "a0", 1000, 500, now_ms() + 60_000, "EURUSD", "CALL", 60)
    await beat(redis, "w1")
    [contract] = await ledger.buy(redis, [order], Leased("w1", "1"))
    contract_id = json.loads(contract)["contract_id"]
    await ledger.settle(
        redis, contract_id=contract_id, outcome="won", profit_cents=425, settled_ms=1,
        credit_cents=925,
    )  # fmt: skip

    # the expansion over two shards (core.shards), now and scheduled, and sent again
    shards = Shards((Shard(redis, "s0", 0), Shard(redis, "s1", 1)))
    for shard in shards:
        await redis.set(shard.key(keys.channel("c1")), await redis.get(keys.channel("c1")) or "")
    sharded = NewSignal("s3", "c1", "prov", "EURUSD", "CALL", 60, "client-3")
    assert (await scripts.expand_sharded(shards, sharded, brokers)).answer[0] == "ok"
    assert (await scripts.expand_sharded(shards, sharded, brokers)).answer[0] == "dup"
    later = NewSignal("s4", "c1", "prov", "EURUSD", "PUT", 60)
    assert (await scripts.schedule(shards.home, later, at_ms))[0] == "ok"
    assert (await scripts.expand_sharded(shards, later, brokers, at_ms)).answer[0] == "ok"

    assert checked == {script.name for script in Script.loaded}


@dataclass(frozen=True)
class Leased:
    """A lease as the orders carry it (``adapters.base.Fence``), always held."""

    worker_id: str
    token: str

    def check(self) -> None:
        pass


async def test_a_subscriber_ended_unsent_gets_the_defined_record(redis: Redis) -> None:
    """``lua/lib/end_unsent.lua`` writes the record ``core.records.execution_record`` defines:
    the same fields and values for a subscriber cancelled before it was sent."""
    await seed_channel(redis, "c1", 1, delay_ms=60_000)
    now = NewSignal("s1", "c1", "prov", "EURUSD", "CALL", 60)
    await scripts.expand(redis, now, ["paper"])
    await scripts.cancel(
        redis, signal_id="s1", channel_id="c1", sender_id="prov", brokers=["paper"]
    )
    [written] = await execution_records(redis)
    fields: Any = await redis.hgetall(keys.signal("s1"))
    sub: Any = json.loads(await redis.hget(keys.subscriptions("c1"), "s0") or "{}")
    signal = SignalInfo.from_hash("s1", fields)
    at_ms = written["executed_ms"]
    expected = execution_record(signal, "s0", sub, "paper", "skipped", "cancelled", at_ms)
    assert written == expected  # field for field, and no field more
    assert "contract_id" not in written  # what only a placed trade has


def test_placed_records_carry_what_the_broker_answered() -> None:
    signal = SignalInfo("s1", "c1", "EURUSD", "CALL", 60, 1_000, 3_000, "active")
    sub = {"user_id": "u1", "account_id": "a1"}
    record = execution_record(
        signal, "s0", sub, "paper", "placed", None, 1_250, contract_id="k", stake=5.0, payout=9.25
    )
    assert record["latency_ms"] == 250 and record["trade_id"] == "s1-s0"
    assert set(record) == set(ExecutionRecord.__annotations__)
    assert Decimal(str(record["payout"])) == Decimal("9.25")

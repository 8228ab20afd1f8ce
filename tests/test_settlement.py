"""Settlement on a real Redis: recorded once; a broker that cannot tell is asked again for a while,
then the trade ends ``settlement_failed``, which a person sees on the trade."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.datastructures import Secret

from broker_workers.accounts import AccountBook
from broker_workers.adapters.base import Account, Outcome, TemporaryBrokerError
from broker_workers.settlement import Settler
from core import keys, scripts
from core.clock import now_ms, utc_day
from core.crypto import CredentialsBox
from core.records import settlement_failure_document
from core.settings import DEV_CREDENTIALS_KEY
from core.shards import Shard
from signal_hub.relay import records_of

KEY = Secret(DEV_CREDENTIALS_KEY.decode())


class Broker:
    """Answers outcomes from a script: an Outcome, None (open) or an error."""

    def __init__(self, *answers: Outcome | Exception | None) -> None:
        self.answers = list(answers)

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def queued(redis: Redis, due_ms: int, account_id: str = "a1") -> str:
    member = orjson.dumps(
        {"trade_id": "s1-sub1", "signal_id": "s1", "channel_id": "c1", "subscription_id": "sub1",
         "subscriber_id": "u1", "account_id": account_id, "contract_id": "k1", "stake": 5.0,
         "due_ms": due_ms}
    ).decode()  # fmt: skip
    await redis.zadd(keys.settle_queue("paper"), {member: due_ms})
    return member


async def settler(redis: Redis, broker: Broker, give_up_after_ms: int = 60_000) -> Settler:
    sealed = CredentialsBox(KEY).seal({})
    entry = {"id": "a1", "credentials": sealed, "currency": "USD"}
    await redis.hset(keys.accounts("paper"), "a1", json.dumps(entry))
    accounts = AccountBook(redis, "paper", KEY, "USD")
    return Settler(redis, "paper", broker, accounts, give_up_after_ms)  # type: ignore[arg-type]


async def published(redis: Redis) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = await redis.xrange(keys.RESULTS)
    return [(f["kind"], r) for _, f in entries for r in records_of(f)]


async def test_recorded_once_with_its_loss_counted(redis: Redis) -> None:
    lost = Outcome("k1", "lost", Decimal("-5"), now_ms())
    member = await queued(redis, now_ms())
    s = await settler(redis, Broker(lost, lost))
    await s.settle(member)
    await s.settle(member)  # a second worker, or a retry: nothing more
    [(kind, record)] = await published(redis)
    assert kind == "settlement" and (record["outcome"], record["profit"]) == ("lost", -5.0)
    assert not await redis.zcard(keys.settle_queue("paper"))


async def test_a_failing_lookup_is_retried_then_given_up_visibly(redis: Redis) -> None:
    recent = await queued(redis, now_ms())
    s = await settler(redis, Broker(TemporaryBrokerError("down"), None), give_up_after_ms=60_000)
    await s.settle(recent)  # fails: stays queued (its lease brings it back)
    await s.settle(recent)  # still open: asked again in a second
    assert await published(redis) == []
    assert await redis.zscore(keys.settle_queue("paper"), recent) is not None

    await redis.delete(keys.settle_queue("paper"))
    old = await queued(redis, now_ms() - 120_000)
    s = await settler(redis, Broker(TemporaryBrokerError("down")), give_up_after_ms=60_000)
    await s.settle(old)
    [(kind, record)] = await published(redis)
    assert kind == "settlement_failed" and record["reason"] == "broker_unreachable"
    assert settlement_failure_document(record)["settlement_error"] == "broker_unreachable"
    assert not await redis.zcard(keys.settle_queue("paper"))


async def test_a_trade_whose_account_is_gone_ends_at_once(redis: Redis) -> None:
    member = await queued(redis, now_ms(), account_id="gone")
    s = await settler(redis, Broker())
    await s.settle(member)
    [(kind, record)] = await published(redis)
    assert (kind, record["reason"]) == ("settlement_failed", "account_gone")


async def test_settled_on_its_shard(redis: Redis) -> None:
    """On a hot-path shard (``core.shards``; here a tag on the same server) the settle queue, the
    record and the day's loss are that shard's keys; the account is read from ``REDIS_URL``'s."""
    shard = Shard(redis, "s1", 1)
    member = orjson.dumps({"trade_id": "s1-sub1", "signal_id": "s1", "channel_id": "c1",
                           "subscription_id": "sub1", "subscriber_id": "u1",
                           "account_id": "a1", "contract_id": "k1", "stake": 5.0,
                           "due_ms": now_ms()}).decode()  # fmt: skip
    await redis.zadd(shard.key(keys.settle_queue("paper")), {member: now_ms()})
    s = await settler(redis, Broker(Outcome("k1", "lost", Decimal("-5"), now_ms())))
    s = Settler(shard, "paper", s.adapter, s.accounts)
    assert await scripts.take_due(
        shard, schedule=keys.settle_queue("paper"), limit=5, lease_ms=1000
    ) == [member]
    await s.settle(member)
    entries: Any = await redis.xrange(shard.key(keys.RESULTS))
    assert [f["kind"] for _, f in entries] == ["settlement"]
    assert not await redis.exists(keys.RESULTS)
    assert not await redis.zcard(shard.key(keys.settle_queue("paper")))
    day = await redis.hgetall(shard.key(keys.daily("sub1", utc_day(now_ms()))))
    assert float(day["loss"]) == 5.0

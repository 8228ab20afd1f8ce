"""Recovery on a real Redis: releasing a dead worker's claims, expiring late work, and the reaper
reconciling orphans with the (real, in-process) paper broker."""

from __future__ import annotations

import json
from decimal import Decimal

from redis.asyncio import Redis

from broker_workers.adapters.base import Account
from broker_workers.adapters.paper import PaperBroker
from broker_workers.claims import Claim, ClaimBook, release, signal_info
from broker_workers.drain import order_for
from broker_workers.reaper import Reaper
from signal_hub import keys
from signal_hub.crypto import CredentialsBox
from signal_hub.settings import load_settings
from tests.test_claims import beat, execution_records, expand, seed_channel


async def executions(redis: Redis) -> dict[str, dict[str, object]]:
    """Execution records by trade id (signal, subscriber), failing on a second one of any."""
    records = await execution_records(redis)
    assert len({r["trade_id"] for r in records}) == len(records), "a duplicate record"
    return {str(r["trade_id"]): r for r in records}


async def claim_all(redis: Redis, book: ClaimBook, signal_id: str) -> list[str]:
    _, claims = await book.claim(signal_id, 100, keys.utc_day())
    return [c.subscription_id for c in claims]


async def test_release_hands_back_unsent_and_orphans_sent_claims(redis: Redis) -> None:
    await seed_channel(redis, "c1", 6, delay_ms=60_000)
    await expand(redis, "sig1", "c1")
    book = ClaimBook(redis, "w1", "paper")
    await beat(redis, "w1")
    ids = await claim_all(redis, book, "sig1")
    verdicts, _ = await book.mark_sending("sig1", [(i, 0, "5") for i in ids[:2]], keys.utc_day(), 0)
    assert verdicts == ["go", "go"]

    # Alive: the reaper's call leaves it alone.
    args = {"send_margin_ms": 0, "reconcile_after_ms": 1000}
    assert await release(redis, "w1", only_if_dead=True, **args) == []
    assert await redis.scard(keys.claims("w1")) == 6

    await redis.delete(keys.worker_heartbeat("w1"))
    assert await release(redis, "w1", only_if_dead=True, **args) == [("sig1", "paper")]
    assert await redis.scard(keys.claims("w1")) == 0
    assert sorted(await redis.smembers(keys.work("sig1", "paper"))) == sorted(ids[2:])
    states = await redis.hgetall(keys.state("sig1"))
    assert sorted(states.values()) == ["r", "r", "r", "r", "s|w1|5", "s|w1|5"]
    deadline = int(await redis.hget(keys.signal("sig1"), "deadline_ms") or 0)
    orphans = await redis.zrange(keys.ORPHANS, 0, -1, withscores=True)
    assert sorted(orphans) == sorted((f"sig1|paper|{i}", deadline + 1000) for i in ids[:2])

    # Handed back claims are claimable again, by anyone; the dead worker's gate says lost.
    other = ClaimBook(redis, "w2", "paper")
    assert sorted(await claim_all(redis, other, "sig1")) == sorted(ids[2:])
    verdicts, _ = await book.mark_sending("sig1", [(ids[2], 0, "5")], keys.utc_day(), 0)
    assert verdicts == ["lost"]
    assert await executions(redis) == {}


async def test_release_ends_cancelled_and_late_claims_skipped(redis: Redis) -> None:
    await seed_channel(redis, "c1", 3, delay_ms=60_000)
    await seed_channel(redis, "c2", 2, delay_ms=60_000)
    await expand(redis, "sig1", "c1")
    await expand(redis, "sig2", "c2")
    book = ClaimBook(redis, "w1", "paper")
    late = await claim_all(redis, book, "sig1")
    cancelled = await claim_all(redis, book, "sig2")
    await redis.hset(keys.signal("sig1"), "deadline_ms", keys.now_ms() + 100)
    await redis.hset(keys.signal("sig2"), "status", "cancelled")

    # Within the send margin of the deadline counts as late: no worker could send it now.
    assert (
        await release(redis, "w1", only_if_dead=True, send_margin_ms=150, reconcile_after_ms=0)
        == []
    )
    records = await executions(redis)
    assert {i: (r["status"], r["reason"]) for i, r in records.items()} == {
        **{f"sig1-{i}": ("skipped", "expired") for i in late},
        **{f"sig2-{i}": ("skipped", "cancelled") for i in cancelled},
    }
    # Released twice (two reapers): nothing new.
    await release(redis, "w1", only_if_dead=True, send_margin_ms=150, reconcile_after_ms=0)
    assert len(await executions(redis)) == 5


def reaper_for(unit_redis_url: str) -> Reaper:
    settings = load_settings({"APP_ENV": "development", "REDIS_URL": unit_redis_url,
                              "PAPER_LATENCY_MS": "0", "BROKERS": "paper"})  # fmt: skip
    return Reaper(settings)


async def test_reaper_expires_unclaimed_work_past_its_deadline(
    redis: Redis, unit_redis_url: str
) -> None:
    await seed_channel(redis, "c1", 4, delay_ms=60_000)
    await expand(redis, "sig1", "c1")
    await redis.zadd(keys.ACTIVE, {"sig1|paper": keys.now_ms() - 1})
    reaper = reaper_for(unit_redis_url)
    try:
        await reaper.run_once()
        await reaper.run_once()
    finally:
        await reaper.close()
    records = await executions(redis)
    assert {(r["status"], r["reason"]) for r in records.values()} == {("skipped", "expired")}
    assert len(records) == 4
    assert await redis.zcard(keys.ACTIVE) == 0 and not await redis.exists(
        keys.work("sig1", "paper")
    )


async def test_reaper_reconciles_orphans_with_the_broker(redis: Redis, unit_redis_url: str) -> None:
    """Two subscribers were sent when their worker died: one purchase reached the broker, one
    did not. The reaper must record the first as placed (with the broker's contract) and the
    second as expired, once each, and give its counted trade back."""
    reaper = reaper_for(unit_redis_url)
    box = CredentialsBox(reaper.settings)
    await seed_channel(redis, "c1", 2, delay_ms=60_000)
    for i in range(2):
        entry = {"id": f"a{i}", "credentials": box.seal({}), "currency": "USD"}
        await redis.set(keys.account(f"a{i}"), json.dumps(entry))
        sub = json.loads(await redis.get(keys.subscription(f"s{i}")) or "{}")
        sub["limits"] = {"max_trades_per_day": 3}
        await redis.set(keys.subscription(f"s{i}"), json.dumps(sub))
    await expand(redis, "sig1", "c1")
    book = ClaimBook(redis, "w1", "paper")
    await beat(redis, "w1")
    ids = sorted(await claim_all(redis, book, "sig1"))
    day = keys.utc_day()
    assert (await book.mark_sending("sig1", [(i, 3, "5") for i in ids], day, 0))[0] == ["go"] * 2

    # The worker bought for the first subscriber, then died before recording anything.
    broker = PaperBroker(reaper.settings)
    await broker.open([])
    signal = signal_info("sig1", await redis.hgetall(keys.signal("sig1")))
    sub = json.loads(await redis.get(keys.subscription(ids[0])) or "{}")
    claim = Claim(ids[0], sub, {"id": "a0"}, 0, 0.0)
    [fill] = await broker.buy([order_for(signal, claim, Account("a0", {}), Decimal("5"))])
    assert fill.status == "placed"
    await broker.close()

    await redis.sadd(keys.workers("paper"), "w1")  # as its runtime registered it
    await redis.delete(keys.worker_heartbeat("w1"))
    await redis.hset(keys.signal("sig1"), "deadline_ms", keys.now_ms() - 5000)
    try:
        await reaper.run_once()  # adopt: both become orphans, due at once (deadline long past)
        await reaper.run_once()  # reconcile
        await reaper.run_once()  # nothing more
    finally:
        await reaper.close()

    records = await executions(redis)
    bought, never = records[f"sig1-{ids[0]}"], records[f"sig1-{ids[1]}"]
    assert bought["status"] == "placed" and bought["contract_id"] == fill.contract_id
    assert (never["status"], never["reason"]) == ("skipped", "expired")
    assert await redis.zcard(keys.ORPHANS) == 0
    waiting = [json.loads(m) for m in await redis.zrange(keys.settle_queue("paper"), 0, -1)]
    assert [(m["trade_id"], m["contract_id"]) for m in waiting] == [
        (f"sig1-{ids[0]}", fill.contract_id)
    ]
    assert await redis.hget(keys.daily(ids[1], day), "trades") == "0"
    assert await redis.hget(keys.daily(ids[0], day), "trades") == "1"

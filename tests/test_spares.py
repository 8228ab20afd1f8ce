"""The spare copy of a channel's directory: the next expansion renames it into its work set, and
any change of the directory meanwhile throws it away, so a signal reaches exactly the subscribers
of the instant it is sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis

from core import keys
from core.brokers import capabilities_of
from core.clock import now_ms
from core.dispatch import Dispatcher
from signal_hub.directory import Directory
from signal_hub.embedded_store import EmbeddedDatabase
from signal_hub.intake import Intake
from signal_hub.store import Store
from tests.test_claims import expand, seed_channel

PAST = 0  # a deadline already gone: make the spare at once


def subscription(sub_id: str) -> dict[str, Any]:
    return {"_id": sub_id, "channel_id": "c1", "user_id": "u-new", "broker_account_id": "a-new",
            "broker": "paper", "stake": {"mode": "fixed", "amount": 5}, "limits": {},
            "paused": False}  # fmt: skip


async def fanout(redis: Redis, signal_id: str) -> tuple[int, set[str]]:
    status, body = await expand(redis, signal_id, "c1")
    assert status == "ok", body
    members = {str(m) for m in await redis.smembers(keys.work(signal_id, "paper"))}
    return json.loads(body)["fanout"]["total"], members


async def test_the_next_signal_takes_the_spare_and_a_change_throws_it_away(
    redis: Redis, unit_redis_url: str
) -> None:
    await seed_channel(redis, "c1", 30)
    dispatcher = Dispatcher(unit_redis_url, 100)
    intake = Intake(redis, dispatcher, capabilities_of(["paper"]), 3600)
    directory = Directory(redis, Store(EmbeddedDatabase()), ["paper"])
    spare = keys.directory_spare("c1", "paper")
    everyone = {f"s{i}" for i in range(30)}

    assert await fanout(redis, "sig1") == (30, everyone)  # no spare yet: copied
    await intake.prepare_spares("c1", "sig1", ["paper"], PAST)
    assert {str(m) for m in await redis.smembers(spare)} == everyone
    assert await fanout(redis, "sig2") == (30, everyone)
    assert not await redis.exists(spare)  # renamed into sig2's work set

    await intake.prepare_spares("c1", "sig2", ["paper"], PAST)
    await directory.put_subscription(subscription("s-new"))
    assert not await redis.exists(spare)
    assert await fanout(redis, "sig3") == (31, everyone | {"s-new"})

    await intake.prepare_spares("c1", "sig3", ["paper"], PAST)
    await directory.remove_subscription(subscription("s-new"))
    assert not await redis.exists(spare)
    assert await fanout(redis, "sig4") == (30, everyone)
    dispatcher.close()


async def test_the_spare_waits_until_the_work_is_claimed(redis: Redis, unit_redis_url: str) -> None:
    await seed_channel(redis, "c1", 10)
    dispatcher = Dispatcher(unit_redis_url, 100)
    intake = Intake(redis, dispatcher, capabilities_of(["paper"]), 3600)
    await fanout(redis, "sig1")
    deadline_ms = now_ms() + 30_000
    making = asyncio.create_task(intake.prepare_spares("c1", "sig1", ["paper"], deadline_ms))
    await asyncio.sleep(0.3)
    assert not making.done() and not await redis.exists(keys.directory_spare("c1", "paper"))
    await redis.spop(keys.work("sig1", "paper"), 10)  # the workers claimed everyone
    await asyncio.wait_for(making, timeout=5)
    assert await redis.scard(keys.directory_spare("c1", "paper")) == 10
    dispatcher.close()

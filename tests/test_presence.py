"""Presence: the relay emits a subscriber's events only while some hub holds its socket."""

from __future__ import annotations

import redis as sync_redis
from redis.asyncio import Redis

from core import keys
from signal_hub.presence import Presence
from tests.client import Api, live
from tests.procs import System, redis_url, wait_until


async def test_counts_per_hub_add_up_and_a_gone_hub_is_forgotten(redis: Redis) -> None:
    a, b = Presence(redis, "hub-a"), Presence(redis, "hub-b")
    await a.joined("u1")
    await a.joined("u1")
    await b.joined("u1")
    await b.joined("u2")
    assert await a.online(["u1", "u2", "u3"]) == {"u1", "u2"}

    await a.left("u1")
    await b.left("u2")
    assert await a.online(["u1", "u2"]) == {"u1"}
    assert await redis.hget(keys.ONLINE, "u1") == "2"

    await b.forget("hub-a")  # hub-a died with one socket of u1
    assert await redis.hget(keys.ONLINE, "u1") == "1"
    await a.forget("hub-a")  # a second time changes nothing
    assert await redis.hget(keys.ONLINE, "u1") == "1"
    await b.left("u1")
    assert await a.online(["u1", "u2"]) == set()
    assert await redis.exists(keys.ONLINE, keys.online_at("hub-a"), keys.online_at("hub-b")) == 0


async def test_a_subscriber_is_online_while_a_socket_is_open(system: System, api: Api) -> None:
    provider = api.signup("provider")
    channel = api.channel(provider)
    subscriber = api.subscriber(channel["id"])[0]
    client = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)

    def sockets() -> int:
        return int(client.hget(keys.ONLINE, subscriber.id) or 0)

    first = await live(system.base_url, "/subscriber", subscriber)
    second = await live(system.base_url, "/subscriber", subscriber)
    assert sockets() == 2
    await first.close()
    wait_until(lambda: sockets() == 1, timeout=5, what="one socket left")
    await second.close()
    wait_until(lambda: sockets() == 0, timeout=5, what="no socket left")
    client.close()

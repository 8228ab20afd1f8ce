"""The Redis directory rebuilt from the store: the same keys as the hub's own writes, in chunks."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from core import keys
from core.shards import Shard, Shards
from signal_hub import directory
from signal_hub.directory import Directory
from signal_hub.embedded_store import EmbeddedDatabase
from signal_hub.store import Store, new_id

BROKERS = ["paper", "deriv"]


async def snapshot(redis: Redis) -> dict[str, Any]:
    """Every key of the database with its value (sets sorted; a sorted set's members, not the
    times they are due), but the time of the last rebuild."""
    state: dict[str, Any] = {}
    async for key in redis.scan_iter(count=1000):
        if key == keys.DIRECTORY_BUILT:
            continue
        kind = await redis.type(key)
        if kind == "set":
            state[key] = sorted(await redis.smembers(key))
        elif kind == "zset":
            state[key] = sorted(await redis.zrange(key, 0, -1))
        elif kind == "hash":
            state[key] = await redis.hgetall(key)
        else:
            state[key] = await redis.get(key)
    return state


async def seeded_store(channels: int, subscribers: int) -> tuple[Store, list[dict[str, Any]]]:
    """Channels with subscribers split across two brokers, plus a subscription whose channel is
    gone; returns the store and its channels."""
    store = Store(EmbeddedDatabase())
    chans = [
        {"_id": new_id(), "name": f"c{i}", "provider_id": "p", "max_signal_delay_ms": 1000}
        for i in range(channels)
    ]
    accounts, subs = [], []
    for i in range(subscribers):
        broker = ("paper", "deriv")[(i // channels) % 2]
        account = {
            "_id": new_id(),
            "user_id": f"u{i}",
            "broker": broker,
            "credentials_sealed": "sealed",
        }
        accounts.append(account)
        subs.append(
            {
                "_id": new_id(),
                "channel_id": chans[i % channels]["_id"],
                "user_id": f"u{i}",
                "broker_account_id": account["_id"],
                "broker": broker,
                "stake": {"mode": "fixed", "amount": 1},
            }
        )
    orphan = dict(subs[0], _id=new_id(), channel_id="gone", user_id="u-orphan")
    await store.channels.insert_many(chans)
    await store.broker_accounts.insert_many(accounts)
    await store.subscriptions.insert_many([*subs, orphan])
    return store, chans


@pytest.mark.parametrize("chunk", [3, 1000])
async def test_rebuild_writes_what_the_hub_writes_and_drops_stale_members(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(directory, "CHUNK", chunk)
    store, chans = await seeded_store(channels=4, subscribers=25)
    hub = Directory(redis, store, BROKERS)
    for account in await store.broker_accounts.find({}).to_list():
        await hub.put_account(account)
    for channel in chans:
        await hub.put_channel(channel)
    for sub in await store.subscriptions.find({"channel_id": {"$ne": "gone"}}).to_list():
        await hub.put_subscription(sub)
    expected = await snapshot(redis)
    await redis.flushdb()

    first, second = chans[0]["_id"], chans[1]["_id"]
    await redis.sadd(keys.directory(first, "paper"), "unsubscribed")
    await redis.sadd(keys.directory_spare(second, "deriv"), "unsubscribed")
    counts = await hub.rebuild()

    assert counts == {"channels": 4, "accounts": 25, "subscriptions": 25}
    assert await snapshot(redis) == expected
    assert await redis.scard(keys.directory(first, "paper")) == 4  # of its 7, 3 are on deriv
    assert await store.subscriptions.count_documents({"channel_id": "gone"}) == 1


async def test_a_sharded_directory_is_split_by_account(redis: Redis) -> None:
    """Over two shards (``core.shards``; here on one server, apart by their tags), the hub's own
    writes and the rebuild agree, and a subscription's entry and set membership, with a copy of
    its account's entry, are on its account's shard only; the channel entry is on both."""
    store, chans = await seeded_store(channels=4, subscribers=25)
    shards = Shards((Shard(redis, "s0", 0), Shard(redis, "s1", 1)))
    hub = Directory(redis, store, BROKERS, shards)
    for account in await store.broker_accounts.find({}).to_list():
        await hub.put_account(account)
    for channel in chans:
        await hub.put_channel(channel)
    subs = await store.subscriptions.find({"channel_id": {"$ne": "gone"}}).to_list()
    for sub in subs:
        await hub.put_subscription(sub)
    expected = await snapshot(redis)
    await redis.flushdb()
    stale = shards[1].key(keys.directory(chans[0]["_id"], "paper"))
    await redis.sadd(stale, "unsubscribed")
    assert await hub.rebuild() == {"channels": 4, "accounts": 25, "subscriptions": 25}
    assert await snapshot(redis) == expected

    assert {shards.of_account(s["broker_account_id"]).index for s in subs} == {0, 1}
    for sub in subs:
        mine = shards.of_account(sub["broker_account_id"])
        other = shards[1 - mine.index]
        entries, members = (
            keys.subscriptions(sub["channel_id"]),
            keys.directory(sub["channel_id"], sub["broker"]),
        )
        assert await redis.hexists(mine.key(entries), sub["_id"])
        assert await redis.sismember(mine.key(members), sub["_id"])
        assert not await redis.hexists(other.key(entries), sub["_id"])
        assert not await redis.sismember(other.key(members), sub["_id"])
        account = keys.accounts(sub["broker"])
        assert await redis.hexists(mine.key(account), sub["broker_account_id"])
        assert await redis.hexists(account, sub["broker_account_id"])  # the full one, REDIS_URL's
    for channel in chans:
        assert all([await redis.exists(s.key(keys.channel(channel["_id"]))) for s in shards])
    assert not await redis.exists(keys.channel(chans[0]["_id"]))  # no untagged copy


async def test_rebuild_of_an_emptied_channel_and_an_empty_store(redis: Redis) -> None:
    store, chans = await seeded_store(channels=1, subscribers=2)
    hub = Directory(redis, store, BROKERS)
    await hub.rebuild()
    await store.subscriptions.delete_many({})
    assert await hub.rebuild() == {"channels": 1, "accounts": 2, "subscriptions": 0}
    channel_id = chans[0]["_id"]
    assert await redis.exists(keys.channel(channel_id))
    for key in (keys.directory(channel_id, "paper"), keys.directory(channel_id, "deriv")):
        assert not await redis.exists(key)
    await redis.flushdb()
    empty = Directory(redis, Store(EmbeddedDatabase()), BROKERS)
    assert await empty.rebuild() == {"channels": 0, "accounts": 0, "subscriptions": 0}
    assert await snapshot(redis) == {}


async def test_active_subscribers_and_the_health_schedule_follow_the_directory(
    redis: Redis,
) -> None:
    """Each broker's unpaused subscriptions (the ``ctc_subscribers`` gauge) and its accounts'
    health schedule (the workers' periodic checks) move with every write and the rebuild."""
    store, _ = await seeded_store(channels=1, subscribers=4)
    hub = Directory(redis, store, BROKERS)
    await hub.rebuild()
    subs = await store.subscriptions.find({"channel_id": {"$ne": "gone"}}).to_list()
    accounts = await store.broker_accounts.find({}).to_list()

    async def active(broker: str) -> set[str]:
        return {str(m) for m in await redis.smembers(keys.active_subscribers(broker))}

    async def scheduled(broker: str) -> set[str]:
        return {str(m) for m in await redis.zrange(keys.health_due(broker), 0, -1)}

    by_broker = {b: {s["_id"] for s in subs if s["broker"] == b} for b in BROKERS}
    assert {b: await active(b) for b in BROKERS} == by_broker
    accounts_of = {b: {a["_id"] for a in accounts if a["broker"] == b} for b in BROKERS}
    assert {b: await scheduled(b) for b in BROKERS} == accounts_of

    paused = dict(subs[0], paused=True)
    await hub.put_subscription(paused)
    assert paused["_id"] not in await active(paused["broker"])
    await store.subscriptions.update_one({"_id": paused["_id"]}, {"$set": {"paused": True}})
    await hub.remove_subscription(subs[1])
    await store.subscriptions.delete_one({"_id": subs[1]["_id"]})
    await hub.remove_account(accounts[0])
    await store.broker_accounts.delete_one({"_id": accounts[0]["_id"]})
    assert accounts[0]["_id"] not in await scheduled(accounts[0]["broker"])
    expected = {b: await active(b) for b in BROKERS}
    await hub.rebuild()  # the same sets from the store
    assert {b: await active(b) for b in BROKERS} == expected
    assert accounts[0]["_id"] not in await scheduled(accounts[0]["broker"])

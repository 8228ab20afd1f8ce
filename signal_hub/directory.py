"""The Redis directory of who copies whom, kept in step with the store.

The hot path reads only this: the channel entry (who may send), the per-broker subscriber sets
(what to expand), the channel's subscription entries and each broker's account entries (what the
workers need). Every write to the store's channels, accounts and subscriptions goes through here
too, and :meth:`rebuild` makes the directory again from the store at start-up, unless live hubs
are keeping it (:meth:`kept`). Every change of a subscriber set deletes its spare copy
(``keys.directory_spare``, made by the intake for the next expansion) in the same transaction.

Two more things are kept with it, for the workers and the metrics: each account is on its
broker's health schedule (``keys.health_due``, which the workers' periodic account checks take
from), and each broker has the set of its subscriptions that are not paused
(``keys.active_subscribers``, the ``ctc_subscribers`` gauge).

With several hot-path shards (:mod:`core.shards`) a subscription's entry and its place in the
subscriber sets are on the shard of its account, with a copy of that account's entry for the
claims; the channel entry is on every shard; the rest stays on ``REDIS_URL``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis

from core import keys
from core.clock import now_ms
from core.shards import Shard, Shards, unsharded
from signal_hub.store import Store

CHUNK = 1000  # entries per pipeline when the directory is rebuilt


def channel_entry(channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": channel["_id"],
        "name": channel["name"],
        "provider_id": channel["provider_id"],
        "senders": [channel["provider_id"], *channel.get("traders", [])],
        "max_signal_delay_ms": channel["max_signal_delay_ms"],
        "assets": channel.get("assets") or None,
        "suspended": bool(channel.get("suspended")),
    }


def subscription_entry(sub: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sub["_id"],
        "channel_id": sub["channel_id"],
        "user_id": sub["user_id"],
        "account_id": sub["broker_account_id"],
        "broker": sub["broker"],
        "stake": sub["stake"],
        "limits": sub.get("limits") or {},
        "paused": bool(sub.get("paused")),
    }


def account_entry(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": account["_id"],
        "user_id": account["user_id"],
        "broker": account["broker"],
        "currency": account.get("currency", "USD"),
        "credentials": account["credentials_sealed"],
    }


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


def _dumps(value: dict[str, Any]) -> str:
    return _ENCODER.encode(value)


class Directory:
    def __init__(
        self, redis: Redis, store: Store, brokers: list[str], shards: Shards | None = None
    ) -> None:
        self.redis = redis
        self.store = store
        self.brokers = brokers  # those this deployment offers (BROKERS)
        self.shards = shards or unsharded(redis)

    async def put_channel(self, channel: dict[str, Any]) -> None:
        for shard in self.shards:
            await shard.redis.set(
                shard.key(keys.channel(channel["_id"])), _dumps(channel_entry(channel))
            )

    async def put_account(self, account: dict[str, Any]) -> None:
        broker = account["broker"]
        entry = _dumps(account_entry(account))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.accounts(broker), account["_id"], entry)
            pipe.zadd(keys.health_due(broker), {account["_id"]: now_ms()}, nx=True)
            await pipe.execute()
        if self.shards.sharded:  # the claims' copy, on the account's shard
            shard = self.shards.of_account(account["_id"])
            await shard.redis.hset(shard.key(keys.accounts(broker)), account["_id"], entry)

    async def remove_account(self, account: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.accounts(account["broker"]), account["_id"])
            pipe.zrem(keys.health_due(account["broker"]), account["_id"])
            await pipe.execute()
        if self.shards.sharded:
            shard = self.shards.of_account(account["_id"])
            await shard.redis.hdel(shard.key(keys.accounts(account["broker"])), account["_id"])

    async def put_subscription(self, sub: dict[str, Any]) -> None:
        shard = self.shards.of_account(sub["broker_account_id"])
        k = shard.key
        async with shard.redis.pipeline(transaction=not shard.cluster) as pipe:
            pipe.hset(
                k(keys.subscriptions(sub["channel_id"])),
                sub["_id"],
                _dumps(subscription_entry(sub)),
            )
            pipe.sadd(k(keys.directory(sub["channel_id"], sub["broker"])), sub["_id"])
            pipe.delete(k(keys.directory_spare(sub["channel_id"], sub["broker"])))
            if not self.shards.sharded:
                _mark_active(pipe, sub)
            await pipe.execute()
        if self.shards.sharded:
            async with self.redis.pipeline(transaction=True) as pipe:
                _mark_active(pipe, sub)
                await pipe.execute()

    async def remove_subscription(self, sub: dict[str, Any]) -> None:
        shard = self.shards.of_account(sub["broker_account_id"])
        k = shard.key
        async with shard.redis.pipeline(transaction=not shard.cluster) as pipe:
            pipe.srem(k(keys.directory(sub["channel_id"], sub["broker"])), sub["_id"])
            pipe.delete(k(keys.directory_spare(sub["channel_id"], sub["broker"])))
            pipe.hdel(k(keys.subscriptions(sub["channel_id"])), sub["_id"])
            if not self.shards.sharded:
                pipe.srem(keys.active_subscribers(sub["broker"]), sub["_id"])
            await pipe.execute()
        if self.shards.sharded:
            await self.redis.srem(keys.active_subscribers(sub["broker"]), sub["_id"])

    async def rebuild(self) -> dict[str, int]:
        """Write every channel, account and subscription of the store into Redis.

        Start-up must not cost a round trip per entry (100,000 subscribers took 35-40 s), so each
        collection is read in one pass and written in chunks of :data:`CHUNK` entries, one
        ``HSET`` per broker (accounts) or channel (subscriptions) per chunk. Entries are written
        before the sets that name them: whoever finds an id in a set finds its entry.
        Subscriptions of a channel the store does not hold are skipped. Each channel's subscriber
        sets are then replaced in one transaction, so a signal expanded during the rebuild sees
        either the old or the new set, never half of one, and ids no longer subscribed go.
        """
        counts = {"channels": 0, "accounts": 0, "subscriptions": 0}
        main = Shard(self.redis)
        async for accounts in _chunks(self.store.broker_accounts.find({})):
            await self._put_entries(main, accounts, "broker", keys.accounts, account_entry)
            if self.shards.sharded:  # the claims' copies
                for shard, part in self._split(accounts, "_id"):
                    await self._put_entries(shard, part, "broker", keys.accounts, account_entry)
            await self._schedule_checks(accounts)
            counts["accounts"] += len(accounts)
        # per shard: channel -> its subscription ids on that shard, by broker
        members: list[dict[str, dict[str, list[str]]]] = [{} for _ in self.shards]
        async for channels in _chunks(self.store.channels.find({})):
            for shard in self.shards:
                await shard.redis.mset(
                    {shard.key(keys.channel(c["_id"])): _dumps(channel_entry(c)) for c in channels}
                )
                members[shard.index].update((c["_id"], {}) for c in channels)
            counts["channels"] += len(channels)
        active = _ActiveSets(self.redis, self.brokers)
        async for subs in _chunks(self.store.subscriptions.find({})):
            subs = [s for s in subs if s["channel_id"] in members[0]]
            for shard, part in self._split(subs, "broker_account_id"):
                await self._put_entries(
                    shard, part, "channel_id", keys.subscriptions, subscription_entry
                )
                for sub in part:
                    by_broker = members[shard.index][sub["channel_id"]]
                    by_broker.setdefault(sub["broker"], []).append(sub["_id"])
            await active.add([s for s in subs if not s.get("paused")])
            counts["subscriptions"] += len(subs)
        for shard in self.shards:
            channel_ids = list(members[shard.index])
            for start in range(0, len(channel_ids), CHUNK):
                await self._replace_sets(
                    shard,
                    {c: members[shard.index][c] for c in channel_ids[start : start + CHUNK]},
                )
        await active.replace()
        await self.redis.set(keys.DIRECTORY_BUILT, now_ms())
        return counts

    def _split(
        self, docs: list[dict[str, Any]], account_field: str
    ) -> list[tuple[Shard, list[dict[str, Any]]]]:
        """``docs`` by the shard of the account ``doc[account_field]`` names."""
        parts: dict[int, list[dict[str, Any]]] = {}
        for doc in docs:
            parts.setdefault(self.shards.of_account(doc[account_field]).index, []).append(doc)
        return [(self.shards[i], part) for i, part in sorted(parts.items())]

    async def kept(self, live_hubs: list[str]) -> bool:
        """Is the directory built and kept in step by ``live_hubs`` (other hubs, running)?

        Then a starting hub must not rebuild it: the rebuild reads the store and then replaces
        the sets, and a subscription that a live hub removed (or added) in between would come
        back (or go), a purchase for someone no longer subscribed. Without a live hub, or when
        Redis lost the directory, there is nothing to race with and the rebuild runs."""
        return bool(live_hubs) and bool(await self.redis.exists(keys.DIRECTORY_BUILT))

    async def _schedule_checks(self, accounts: list[dict[str, Any]]) -> None:
        """Put accounts on their broker's health schedule, due now unless already there."""
        by_broker: dict[str, dict[Any, float]] = {}
        at = now_ms()
        for account in accounts:
            by_broker.setdefault(account["broker"], {})[account["_id"]] = at
        async with self.redis.pipeline(transaction=False) as pipe:
            for broker, due in by_broker.items():
                pipe.zadd(keys.health_due(broker), due, nx=True)
            await pipe.execute()

    async def _put_entries(
        self,
        shard: Shard,
        docs: list[dict[str, Any]],
        field: str,
        key_of: Callable[[str], str],
        entry_of: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        """Each document's entry into the HASH ``key_of(doc[field])``, one HSET per hash."""
        by_key: dict[str, dict[Any, Any]] = {}
        for doc in docs:
            by_key.setdefault(shard.key(key_of(doc[field])), {})[doc["_id"]] = _dumps(entry_of(doc))
        async with shard.redis.pipeline(transaction=False) as pipe:
            for key, entries in by_key.items():
                pipe.hset(key, mapping=entries)
            await pipe.execute()

    async def _replace_sets(self, shard: Shard, members: dict[str, dict[str, list[str]]]) -> None:
        """Replace these channels' subscriber sets on ``shard``, in one transaction (a pipeline
        on a Redis Cluster, which has no transaction across calls)."""
        k = shard.key
        async with shard.redis.pipeline(transaction=not shard.cluster) as pipe:
            for channel_id, by_broker in members.items():
                for broker in {*self.brokers, *by_broker}:
                    pipe.delete(k(keys.directory(channel_id, broker)))
                    pipe.delete(k(keys.directory_spare(channel_id, broker)))
                for broker, ids in by_broker.items():
                    pipe.sadd(k(keys.directory(channel_id, broker)), *ids)
            await pipe.execute()


def _mark_active(pipe: Any, sub: dict[str, Any]) -> None:
    if sub.get("paused"):
        pipe.srem(keys.active_subscribers(sub["broker"]), sub["_id"])
    else:
        pipe.sadd(keys.active_subscribers(sub["broker"]), sub["_id"])


class _ActiveSets:
    """Each broker's set of active subscriptions, made aside and then renamed into place, so
    that the gauge never reads half a rebuild."""

    def __init__(self, redis: Redis, brokers: list[str]) -> None:
        self.redis = redis
        self.brokers = set(brokers)
        self.tag = uuid.uuid4().hex[:8]

    def _aside(self, broker: str) -> str:
        return f"{keys.active_subscribers(broker)}:rebuild:{self.tag}"

    async def add(self, subs: list[dict[str, Any]]) -> None:
        by_broker: dict[str, list[str]] = {}
        for sub in subs:
            by_broker.setdefault(sub["broker"], []).append(sub["_id"])
            self.brokers.add(sub["broker"])
        async with self.redis.pipeline(transaction=False) as pipe:
            for broker, ids in by_broker.items():
                pipe.sadd(self._aside(broker), *ids)
            await pipe.execute()

    async def replace(self) -> None:
        for broker in sorted(self.brokers):
            aside = self._aside(broker)
            if await self.redis.exists(aside):
                await self.redis.rename(aside, keys.active_subscribers(broker))
            else:
                await self.redis.delete(keys.active_subscribers(broker))


async def _chunks(docs: AsyncIterable[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    async for doc in docs:
        chunk.append(doc)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

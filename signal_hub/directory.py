"""The Redis directory of who copies whom, kept in step with the store.

The hot path reads only this: the channel entry (who may send), the per-broker subscriber sets
(what to expand) and the subscription and account entries (what the workers need). Every write to
the store's channels, accounts and subscriptions goes through here too, and :meth:`rebuild` makes
the directory again from the store at start-up.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.store import Store


def channel_entry(channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": channel["_id"],
        "name": channel["name"],
        "provider_id": channel["provider_id"],
        "senders": [channel["provider_id"], *channel.get("traders", [])],
        "max_signal_delay_ms": channel["max_signal_delay_ms"],
        "assets": channel.get("assets") or None,
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


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


class Directory:
    def __init__(self, redis: Redis, store: Store) -> None:
        self.redis = redis
        self.store = store

    async def put_channel(self, channel: dict[str, Any]) -> None:
        await self.redis.set(keys.channel(channel["_id"]), _dumps(channel_entry(channel)))

    async def put_account(self, account: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.account(account["_id"]), _dumps(account_entry(account)))
            pipe.sadd(keys.broker_accounts(account["broker"]), account["_id"])
            await pipe.execute()

    async def put_subscription(self, sub: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.subscription(sub["_id"]), _dumps(subscription_entry(sub)))
            pipe.sadd(keys.directory(sub["channel_id"], sub["broker"]), sub["_id"])
            pipe.sadd(keys.directory_brokers(sub["channel_id"]), sub["broker"])
            await pipe.execute()

    async def remove_subscription(self, sub: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(keys.directory(sub["channel_id"], sub["broker"]), sub["_id"])
            pipe.delete(keys.subscription(sub["_id"]))
            await pipe.execute()

    async def rebuild(self) -> dict[str, int]:
        """Write every channel, account and subscription of the store into Redis.

        Each channel's subscriber sets are replaced in one transaction, so a signal expanded
        during the rebuild sees either the old or the new set, never half of one.
        """
        counts = {"channels": 0, "accounts": 0, "subscriptions": 0}
        async for account in self.store.broker_accounts.find({}):
            await self.put_account(account)
            counts["accounts"] += 1
        async for channel in self.store.channels.find({}):
            await self.put_channel(channel)
            counts["channels"] += 1
            by_broker: dict[str, list[str]] = {}
            async with self.redis.pipeline(transaction=False) as pipe:
                async for sub in self.store.subscriptions.find({"channel_id": channel["_id"]}):
                    pipe.set(keys.subscription(sub["_id"]), _dumps(subscription_entry(sub)))
                    by_broker.setdefault(sub["broker"], []).append(sub["_id"])
                    counts["subscriptions"] += 1
                await pipe.execute()
            old_brokers = {
                str(b) for b in await self.redis.smembers(keys.directory_brokers(channel["_id"]))
            }
            async with self.redis.pipeline(transaction=True) as pipe:
                for broker in set(old_brokers) | set(by_broker):
                    pipe.delete(keys.directory(channel["_id"], broker))
                pipe.delete(keys.directory_brokers(channel["_id"]))
                for broker, ids in by_broker.items():
                    pipe.sadd(keys.directory(channel["_id"], broker), *ids)
                    pipe.sadd(keys.directory_brokers(channel["_id"]), broker)
                await pipe.execute()
        return counts

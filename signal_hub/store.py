"""The system of record: users, channels, broker accounts, subscriptions, signals, trades.

MongoDB through PyMongo's async API when ``MONGODB_URL`` is set, otherwise the embedded store of
:mod:`signal_hub.embedded_store` (in memory, or journaled to ``EMBEDDED_STORE_PATH``); the code that
uses :class:`Store` is the same for both. The hot path never waits on it: signals and trades arrive
here through the results stream (see :mod:`signal_hub.relay`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from signal_hub.embedded_store import EmbeddedDatabase
from signal_hub.settings import Settings


def new_id() -> str:
    """A fresh document id: an ObjectId's hex, time-ordered and safe in URLs and Redis keys."""
    return str(ObjectId())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Handles on the collections, plus the indexes their queries need."""

    def __init__(self, db: Any, client: AsyncMongoClient[Any] | None = None) -> None:
        self.db = db
        self._client = client
        self.embedded = client is None
        self.users = db["users"]
        self.refresh_tokens = db["refresh_tokens"]
        self.channels = db["channels"]
        self.broker_accounts = db["broker_accounts"]
        self.subscriptions = db["subscriptions"]
        self.signals = db["signals"]
        self.trades = db["trades"]
        self.audit = db["audit"]

    @classmethod
    def open(cls, settings: Settings) -> Store:
        if settings.mongodb_url:
            client: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongodb_url, tz_aware=True)
            return cls(client[settings.mongodb_db], client)
        return cls(EmbeddedDatabase(settings.mongodb_db, settings.embedded_store_path))

    async def ensure_indexes(self) -> None:
        await self.users.create_index("email", unique=True)
        await self.refresh_tokens.create_index("family")
        await self.refresh_tokens.create_index("expires_at", expireAfterSeconds=0)
        await self.channels.create_index("provider_id")
        await self.channels.create_index("traders")
        await self.broker_accounts.create_index("user_id")
        await self.subscriptions.create_index(
            [("channel_id", ASCENDING), ("user_id", ASCENDING)], unique=True
        )
        await self.subscriptions.create_index("user_id")
        await self.subscriptions.create_index("broker_account_id")
        await self.signals.create_index([("channel_id", ASCENDING), ("created_at", DESCENDING)])
        await self.trades.create_index("signal_id")
        await self.trades.create_index([("subscriber_id", ASCENDING), ("created_at", DESCENDING)])
        await self.trades.create_index([("channel_id", ASCENDING), ("status", ASCENDING)])
        await self.trades.create_index([("created_at", DESCENDING)])
        await self.audit.create_index([("at", DESCENDING)])

    async def ping(self) -> bool:
        result = await self.db.command("ping")
        return bool(result.get("ok"))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        elif isinstance(self.db, EmbeddedDatabase):
            self.db.close()

"""Broker accounts as a worker sees them: the directory's entries (``accounts:<broker>``) with
their credentials opened, each kept until its sealed credentials change."""

from __future__ import annotations

from typing import Any

import orjson
from loguru import logger
from redis.asyncio import Redis
from starlette.datastructures import Secret

from broker_workers.adapters.base import Account
from core import keys
from core.crypto import CredentialsBox, CredentialsError


class AccountBook:
    def __init__(self, redis: Redis, broker: str, credentials_key: Secret, currency: str) -> None:
        self.redis = redis
        self.broker = broker
        self.currency = currency  # the broker's default, for an entry that names none
        self._box = CredentialsBox(credentials_key)
        self._opened: dict[str, tuple[str, Account]] = {}

    def open(self, entry: dict[str, Any] | None) -> Account | None:
        """The account of a directory entry, its credentials decrypted; ``None`` if there is no
        entry or its credentials cannot be decrypted (logged)."""
        if entry is None:
            return None
        cached = self._opened.get(entry["id"])
        if cached and cached[0] == entry["credentials"]:
            return cached[1]
        try:
            credentials = self._box.open(entry["credentials"])
        except CredentialsError:
            logger.error("credentials of account {} cannot be decrypted", entry["id"])
            return None
        account = Account(entry["id"], credentials, entry.get("currency") or self.currency)
        self._opened[entry["id"]] = (entry["credentials"], account)
        return account

    async def get(self, account_id: str) -> Account | None:
        raw: Any = await self.redis.hget(keys.accounts(self.broker), account_id)
        return self.open(orjson.loads(raw)) if raw else None

    async def known(self) -> list[Account]:
        """Every account of this broker in the directory, to warm sessions up."""
        entries: Any = await self.redis.hvals(keys.accounts(self.broker))
        opened = (self.open(orjson.loads(raw)) for raw in entries)
        return [account for account in opened if account is not None]

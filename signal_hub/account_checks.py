"""Asking a broker's worker pool about accounts: is this token good, what is the balance.

The hub never talks to a broker: the workers hold the sessions (and the rate budgets). A check is
an RQ job at the front of the broker's queue (named by its dotted path, so the hub does not import
the workers' code); the job answers on a reply list that the hub waits on with a timeout, and
writes what it found into each account's health hash (``keys.account_health``), which the
account listing reads. Credentials travel sealed, as they are kept.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from redis.asyncio import Redis
from rq import Queue, Worker

from core import keys
from core.connections import sync_redis_client
from signal_hub.errors import ApiError, GatewayTimeout, Unavailable, ValidationFailed

CHECK_JOB = "broker_workers.checks.check_accounts_job"


@dataclass(frozen=True, slots=True)
class AccountToCheck:
    """What a worker needs to check an account: its id, sealed credentials and currency."""

    account_id: str
    credentials_sealed: str
    currency: str

    def wire(self) -> dict[str, str]:
        return {"id": self.account_id, "credentials": self.credentials_sealed,
                "currency": self.currency}  # fmt: skip


class AccountChecks:
    def __init__(self, redis_url: str, redis: Redis, timeout_s: float) -> None:
        self._sync = sync_redis_client(redis_url)
        self.redis = redis
        self.timeout_s = timeout_s

    def _enqueue(self, broker: str, accounts: list[AccountToCheck], reply: str) -> None:
        queue = Queue(keys.queue_name(broker), connection=self._sync)
        if not Worker.count(connection=self._sync, queue=queue):
            raise Unavailable(
                f"No {broker} worker is running to check this account; try again shortly.",
                "broker_unavailable",
            )
        queue.enqueue_call(
            CHECK_JOB,
            args=(broker, [a.wire() for a in accounts], reply),
            at_front=True,
            ttl=int(self.timeout_s) + 1,  # not picked up by then: nobody waits for it any more
            result_ttl=0,
            failure_ttl=3600,
            timeout=int(self.timeout_s) + 5,
            description=f"check {len(accounts)} {broker} account(s)",
        )

    async def check(
        self, broker: str, accounts: list[AccountToCheck], timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Each account's health, ``{id: {status, balance, currency, checked_ms, message}}``."""
        reply = keys.check_reply(secrets.token_hex(8))
        await anyio.to_thread.run_sync(self._enqueue, broker, accounts, reply)
        answer = await self.redis.blpop([reply], timeout=timeout_s or self.timeout_s)
        if answer is None:
            raise GatewayTimeout(
                f"{broker.title()} did not answer in time; nothing was saved. Try again.",
                "broker_check_timeout",
            )
        health: dict[str, Any] = json.loads(answer[1])
        return health

    async def health(self, account_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The last health the workers recorded per account (empty if never checked)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hgetall(keys.account_health(account_id))
            found: list[dict[str, Any]] = await pipe.execute()
        return dict(zip(account_ids, found, strict=True))

    def close(self) -> None:
        self._sync.close()


def refusal(broker: str, health: dict[str, Any]) -> ApiError | None:
    """The error to answer when a check refused the account, else None."""
    if health.get("status") == "refused":
        return ValidationFailed(
            f"This token was refused by {broker.title()}: check it has the Trade scope.",
            "broker_token_refused",
        )
    if health.get("status") == "unreachable":
        return Unavailable(
            f"{broker.title()} could not be reached to check this account; try again.",
            "broker_unreachable",
        )
    return None

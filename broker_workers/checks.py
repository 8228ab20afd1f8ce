"""Account checks: a worker of the broker's pool asks the broker about accounts.

Two ways in. The hub enqueues a check job (``signal_hub.account_checks``) to check a token before
saving an account and to refresh an account on request; it runs on the worker's warm runtime and
answers on the hub's reply list. And every worker keeps the health of its broker's accounts
current by itself (:class:`Refresher`), so that a provider sees before sending how many
subscribers would not be copied (``GET /api/channels/{id}/readiness``).

Either way each account's health (``keys.account_health``) is recorded: a token the broker
refuses is ``refused``; a broker that cannot be reached is ``unreachable``; nothing raises out of
here.

The periodic refresh is shared by the pool through one schedule, ``keys.health_due(broker)``
(account id -> when its next check is due; the hub's directory adds every account): a worker
takes a few due accounts at a time in one atomic step that also moves them one period ahead
(``take_due.lua``), so each account is checked about once per ``HEALTH_REFRESH_S`` whatever the
number of workers, and one that a dying worker took is simply checked a period later. A worker
takes none while it drains a signal, and no more than its own budget
(``HEALTH_CHECKS_PER_MIN``, in small parallel groups); a broker's purchases keep their rate
budget (Deriv: checks read on short-lived connections of their own, never on the purchase
sessions' budget).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import orjson
from loguru import logger

from broker_workers.adapters.base import Account, BrokerError
from broker_workers.runtime import WorkerRuntime, current
from core import keys, scripts

HEALTH_TTL_S = 7 * 24 * 3600
REPLY_TTL_S = 60
CHECK_TIMEOUT_S = 8.0
PARALLEL = 4  # accounts a refresh asks the broker about at once


def check_accounts_job(broker: str, requests: list[dict[str, str]], reply_key: str) -> None:
    """RQ entry point (``broker_workers.checks.check_accounts_job``)."""
    runtime = current()
    if runtime is None:
        raise RuntimeError("account checks run on a BrokerWorker (rq worker-pool -w ...)")
    runtime.run(check_accounts(runtime, requests, reply_key))


async def check_accounts(
    rt: WorkerRuntime, requests: list[dict[str, str]], reply_key: str
) -> dict[str, dict[str, str | int]]:
    """Check, record, and answer on ``reply_key``."""
    health = await _ask(rt, requests)
    async with rt.redis.pipeline(transaction=False) as pipe:
        _record(pipe, health)
        pipe.lpush(reply_key, orjson.dumps(health))
        pipe.expire(reply_key, REPLY_TTL_S)
        await pipe.execute()
    return health


async def check_and_record(
    rt: WorkerRuntime, requests: list[dict[str, str]]
) -> dict[str, dict[str, str | int]]:
    """Check and record, answering no one (the periodic refresh)."""
    health = await _ask(rt, requests)
    async with rt.redis.pipeline(transaction=False) as pipe:
        _record(pipe, health)
        await pipe.execute()
    return health


def _record(pipe: Any, health: dict[str, dict[str, str | int]]) -> None:
    for account_id, record in health.items():
        pipe.hset(keys.account_health(account_id), mapping=record)
        pipe.expire(keys.account_health(account_id), HEALTH_TTL_S)


async def _ask(
    rt: WorkerRuntime, requests: list[dict[str, str]]
) -> dict[str, dict[str, str | int]]:
    """Each account's health as the broker sees it now."""
    now_ms = int(time.time() * 1000)
    accounts: list[Account] = []
    health: dict[str, dict[str, str | int]] = {}
    for request in requests:
        account = rt.accounts.open(request)
        if account is None:
            health[request["id"]] = _health("refused", now_ms, request, "unreadable credentials")
        else:
            accounts.append(account)
    if accounts:
        balances: dict[str, Decimal] | None = None  # a broker that reports none: unchecked
        if rt.capabilities["reports_balances"]:
            try:
                balances = await asyncio.wait_for(rt.adapter.balances(accounts), CHECK_TIMEOUT_S)
            except (BrokerError, TimeoutError, OSError) as exc:
                logger.warning("account check on {} failed: {}", rt.broker, exc)
                for a in accounts:
                    health[a.account_id] = _health("unreachable", now_ms, {"currency": a.currency})
                balances = {}
        for a in accounts:
            if a.account_id in health:
                continue
            if balances is None:
                health[a.account_id] = _health("unchecked", now_ms, {"currency": a.currency})
            elif a.account_id in balances:
                health[a.account_id] = _health(
                    "ok", now_ms, {"currency": a.currency}, balance=balances[a.account_id]
                )
            else:
                health[a.account_id] = _health(
                    "refused", now_ms, {"currency": a.currency}, "the broker refused the token"
                )
    return health


def _health(
    status: str,
    now_ms: int,
    request: dict[str, str],
    message: str = "",
    balance: Decimal | None = None,
) -> dict[str, str | int]:
    return {
        "status": status,
        "balance": "" if balance is None else str(balance),
        "currency": request.get("currency", "USD"),
        "checked_ms": now_ms,
        "message": message,
    }


class Refresher:
    """Keeps the health of the broker's accounts current, a few due accounts at a time (see the
    module's docstring); runs on the worker's runtime loop for the life of the process."""

    def __init__(self, rt: WorkerRuntime) -> None:
        self.rt = rt
        settings = rt.settings
        self.period_ms = max(1, int(settings.health_refresh_s * 1000))
        self.tick_s = min(1.0, max(0.05, settings.health_refresh_s / 4))
        self.batch = settings.health_batch
        self.per_s = settings.health_checks_per_min / 60
        self._tokens = float(self.batch)
        self._stamp = time.monotonic()

    def _budget(self) -> int:
        now = time.monotonic()
        self._tokens = min(float(self.batch), self._tokens + (now - self._stamp) * self.per_s)
        self._stamp = now
        return int(self._tokens)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("account health refresh failed; retrying")

    async def refresh(self) -> int:
        """Check the accounts that are due, as many as the budget allows now; how many."""
        rt = self.rt
        if rt.stopping or rt.draining:  # never at signal time
            return 0
        limit = min(self.batch, self._budget())
        if limit <= 0:
            return 0
        schedule = keys.health_due(rt.broker)
        due = await scripts.take_due(
            rt.redis, schedule=schedule, limit=limit, lease_ms=self.period_ms
        )
        if not due:
            return 0
        self._tokens -= len(due)
        entries: list[Any] = await rt.redis.hmget(keys.accounts(rt.broker), due)
        gone = [account_id for account_id, raw in zip(due, entries, strict=True) if raw is None]
        if gone:  # removed since: no longer ours to check
            await rt.redis.zrem(schedule, *gone)
        requests = [orjson.loads(raw) for raw in entries if raw is not None]
        for start in range(0, len(requests), PARALLEL):
            await check_and_record(rt, requests[start : start + PARALLEL])
        rt.health_checked += len(requests)
        return len(requests)

"""The account-check job: a worker of the broker's pool asks the broker about accounts.

The hub enqueues it (``signal_hub.account_checks``) to check a token before saving an account and
to refresh an account's balance; the job runs on the worker's warm runtime, records each account's
health (``keys.account_health``) and answers on the hub's reply list. A token the broker refuses
is ``refused``; a broker that cannot be reached is ``unreachable``; nothing raises out of here.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import orjson
from loguru import logger

from broker_workers.adapters.base import Account, BrokerError
from broker_workers.runtime import WorkerRuntime, current
from core import keys

HEALTH_TTL_S = 7 * 24 * 3600
REPLY_TTL_S = 60
CHECK_TIMEOUT_S = 8.0


def check_accounts_job(broker: str, requests: list[dict[str, str]], reply_key: str) -> None:
    """RQ entry point (``broker_workers.checks.check_accounts_job``)."""
    runtime = current()
    if runtime is None:
        raise RuntimeError("account checks run on a BrokerWorker (rq worker-pool -w ...)")
    runtime.run(check_accounts(runtime, requests, reply_key))


async def check_accounts(
    rt: WorkerRuntime, requests: list[dict[str, str]], reply_key: str
) -> dict[str, dict[str, str | int]]:
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
    async with rt.redis.pipeline(transaction=False) as pipe:
        for account_id, record in health.items():
            pipe.hset(keys.account_health(account_id), mapping=record)  # type: ignore[arg-type]
            pipe.expire(keys.account_health(account_id), HEALTH_TTL_S)
        pipe.lpush(reply_key, orjson.dumps(health))
        pipe.expire(reply_key, REPLY_TTL_S)
        await pipe.execute()
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

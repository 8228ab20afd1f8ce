"""The one way this project opens Redis: with retries and a health check.

A Redis restart, failover or ``CLIENT KILL`` leaves pooled connections dead while they sit idle.
The health check pings a connection that was idle for a while before using it, and a command
that still meets a broken connection is retried on a fresh one, with a short backoff. Every
script and command the hot path repeats this way is safe to run twice (see
:mod:`broker_workers.claims`), because a retried command may have run the first time.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

HEALTH_CHECK_S = 2
RETRIES = 5


def redis_client(url: str) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), RETRIES),
        retry_on_error=[ConnectionError, TimeoutError],
    )

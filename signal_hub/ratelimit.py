"""Fixed-window rate limits in Redis, shared by every hub instance."""

from __future__ import annotations

from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.errors import RateLimited


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def hit(self, scope: str, subject: str, limit: int, window_s: int) -> None:
        """Count one request; raise :class:`RateLimited` past ``limit`` in the window."""
        if limit <= 0:
            return
        key = keys.rate_limit(scope, subject)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=window_s, nx=True)  # the window starts with its first request
            pipe.incr(key)
            _, count = await pipe.execute()
        if count > limit:
            raise RateLimited("Too many requests; wait a moment and try again.")

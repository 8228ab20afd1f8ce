"""Fixed-window rate limits in Redis, shared by every hub instance."""

from __future__ import annotations

from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.errors import RateLimited


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def hit(self, scope: str, subject: str, limit: int, window_s: int) -> None:
        """Count one request; raise :class:`RateLimited` past ``limit`` in the window, saying
        when the window ends (``Retry-After``)."""
        if limit <= 0:
            return
        key = keys.rate_limit(scope, subject)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=window_s, nx=True)  # the window starts with its first request
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = await pipe.execute()
        if count > limit:
            wait = ttl if ttl > 0 else window_s
            raise RateLimited(f"Too many requests; try again in {wait} s.", wait)

"""Which subscribers are connected to some hub, so that the relay emits only to rooms with someone
in them.

A subscriber's room lives on whichever hub its socket reached, and an emit goes through the Redis
manager: one ``PUBLISH`` that every hub receives and unpickles, whether anyone joined the room or
not. At 100,000 subscribers a signal, those emits were 40% of the relay's CPU, while few
subscribers watch at any one moment.

Each hub counts its own sockets per user in ``online:{hub}`` and adds them into ``online``, the sum
over hubs. The counts can only be too high, never too low: a subscriber is counted before it
enters its room, and the counts of a hub that died stay until a live hub takes over its results
and subtracts them (:meth:`Presence.forget`). Too high costs an emit to an empty room; nothing is
ever withheld from a room someone joined.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from redis.asyncio import Redis

from core import keys, scripts


def hub_instance_id() -> str:
    """This hub process's name: its results consumer and its presence counts."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Presence:
    def __init__(self, redis: Redis, hub_id: str | None = None) -> None:
        self.redis = redis
        self._hub_id = hub_id  # None: this process (named when asked, after any fork)

    async def _change(self, user_id: str, delta: int) -> None:
        hub_id = self._hub_id or hub_instance_id()
        await scripts.presence_adjust(self.redis, hub_id=hub_id, user_id=user_id, delta=delta)

    async def joined(self, user_id: str) -> None:
        """Call before the socket enters the user's room."""
        await self._change(user_id, 1)

    async def left(self, user_id: str) -> None:
        await self._change(user_id, -1)

    async def forget(self, hub_id: str) -> None:
        """Take a gone hub's sockets out of the sums (or this hub's, left from a previous life)."""
        await scripts.presence_forget(self.redis, hub_id=hub_id)

    async def online(self, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` with a socket on some hub."""
        if not user_ids:
            return set()
        counts: Any = await self.redis.hmget(keys.ONLINE, user_ids)
        return {user for user, count in zip(user_ids, counts, strict=True) if count}

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

from signal_hub import keys

ADJUST = """
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if total <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
"""

FORGET = """
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local total = redis.call('HINCRBY', KEYS[1], counts[i], -tonumber(counts[i + 1]))
  if total <= 0 then redis.call('HDEL', KEYS[1], counts[i]) end
end
redis.call('DEL', KEYS[2])
"""


def hub_instance_id() -> str:
    """This hub process's name: its results consumer and its presence counts."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Presence:
    def __init__(self, redis: Redis, hub_id: str | None = None) -> None:
        self.redis = redis
        self._hub_id = hub_id  # None: this process (named when asked, after any fork)
        self._adjust = redis.register_script(ADJUST)
        self._forget = redis.register_script(FORGET)

    async def _change(self, user_id: str, delta: int) -> None:
        await self._adjust(
            keys=[keys.ONLINE, keys.online_at(self._hub_id or hub_instance_id())],
            args=[user_id, delta],
        )

    async def joined(self, user_id: str) -> None:
        """Call before the socket enters the user's room."""
        await self._change(user_id, 1)

    async def left(self, user_id: str) -> None:
        await self._change(user_id, -1)

    async def forget(self, hub_id: str) -> None:
        """Take a gone hub's sockets out of the sums (or this hub's, left from a previous life)."""
        await self._forget(keys=[keys.ONLINE, keys.online_at(hub_id)], args=[])

    async def online(self, user_ids: list[str]) -> set[str]:
        """Those of ``user_ids`` with a socket on some hub."""
        if not user_ids:
            return set()
        counts: Any = await self.redis.hmget(keys.ONLINE, user_ids)
        return {user for user, count in zip(user_ids, counts, strict=True) if count}

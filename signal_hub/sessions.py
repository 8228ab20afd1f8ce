"""Every open socket of a user, on every hub, so that a session can be ended where it lives.

Socket.IO rooms answer "who gets this event", not "which sockets does this user hold": a removed
trader's sockets would keep the channel's feed, and a logged-out session's sockets would keep
their connection. Each hub records its sockets in Redis (``sockets:{user}``: ``namespace|sid`` ->
session family) and acts on any of them through the Socket.IO Redis manager, which hands the
request to the hub that holds the socket.
"""

from __future__ import annotations

import socketio
from redis.asyncio import Redis

from core import keys


class Sessions:
    def __init__(self, redis: Redis, sio: socketio.AsyncServer) -> None:
        self.redis = redis
        self.sio = sio

    async def opened(self, user_id: str, namespace: str, sid: str, family: str) -> None:
        key = keys.sockets_of(user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, f"{namespace}|{sid}", family)
            pipe.expire(key, keys.SOCKETS_TTL_S)  # a dead hub's entries go
            await pipe.execute()

    async def closed(self, user_id: str, namespace: str, sid: str) -> None:
        await self.redis.hdel(keys.sockets_of(user_id), f"{namespace}|{sid}")

    async def _sockets(self, user_id: str) -> list[tuple[str, str, str]]:
        entries: dict[str, str] = await self.redis.hgetall(keys.sockets_of(user_id))  # type: ignore[assignment]
        found = []
        for field, family in entries.items():
            namespace, _, sid = field.partition("|")
            found.append((namespace, sid, family))
        return found

    async def leave_room(self, user_id: str, namespace: str, room: str) -> int:
        """Take every socket of ``user_id`` on ``namespace`` out of ``room``, on every hub."""
        left = 0
        for ns, sid, _ in await self._sockets(user_id):
            if ns == namespace:
                await self.sio.leave_room(sid, room, namespace=ns)
                left += 1
        return left

    async def end_user(self, user_id: str) -> int:
        """Disconnect every socket of a user (a suspension), on every hub."""
        sockets = await self._sockets(user_id)
        for ns, sid, _ in sockets:
            await self.sio.disconnect(sid, namespace=ns)
        return len(sockets)

    async def end_family(self, user_id: str, family: str) -> int:
        """Disconnect the sockets of one session (a refresh family), on every hub."""
        ended = 0
        for ns, sid, fam in await self._sockets(user_id):
            if fam == family:
                await self.sio.disconnect(sid, namespace=ns)
                ended += 1
        return ended

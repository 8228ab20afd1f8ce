"""Cancelling a signal: every worker of every broker sees it at once, because it is state, not
a message.

One Lua script (``core/lua/cancel.lua``) marks the signal cancelled (the workers' send gate reads
that flag atomically before every batch goes to a broker), takes every subscriber still waiting in
the work sets and writes each one's terminal record, ``skipped``/``cancelled``, once. Subscribers
already claimed but not yet sent will be turned away by the gate; they are counted as cancellable
too. Purchases already sent stand: a binary option cannot be un-bought. A scheduled signal
cancelled before its instant never fans out; its ack counts the subscribers it would have reached.
Asking again gives the same answer.

With several hot-path shards (:mod:`core.shards`) the script runs on the home shard first (the
sender's rights, a scheduled signal taken out of ``scheduled``), then on every other shard; the
counts are summed.

This is a broadcast in effect: no worker is told, every worker of every broker reads the flag in
the same atomic step that would let it buy, so none can miss it and none can eat it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from core import keys, scripts
from core.shards import Shards, unsharded
from signal_hub.errors import ApiError, Conflict, Forbidden, NotFound
from signal_hub.validation import validate

_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "signal_not_found": (NotFound, "No such signal, or it is too old to cancel."),
    "forbidden": (Forbidden, "You may not cancel signals of this channel."),
    "not_cancellable": (Conflict, "This signal has ended; there is nothing left to cancel."),
}


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal_id: str = Field(min_length=1, max_length=64)


class Canceller:
    def __init__(self, redis: Redis, brokers: list[str], shards: Shards | None = None) -> None:
        self.redis = redis
        self.brokers = brokers  # those a signal may have fanned out to (BROKERS)
        self.shards = shards or unsharded(redis)

    async def cancel(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Cancel what is not yet sent; the ack says how many purchases that stopped."""
        request = validate(CancelIn, payload, "{signal_id}")
        home = self.shards.home
        fields: Any = await home.redis.hmget(
            home.key(keys.signal(request.signal_id)), "channel_id", "status"
        )
        channel_id, was = fields
        if channel_id is None:
            status, value = "err", "signal_not_found"
        elif self.shards.sharded:
            status, value = await self._cancel_sharded(
                request.signal_id, channel_id, sender_id, was
            )
        else:
            status, value = await scripts.cancel(
                self.redis,
                signal_id=request.signal_id,
                channel_id=channel_id,
                sender_id=sender_id,
                brokers=self.brokers,
            )
        if status == "err":
            error_type, message = _ERRORS[value]
            raise error_type(message, value)
        return {"ok": True, "signal_id": request.signal_id, "cancellable": int(value)}

    async def _cancel_sharded(
        self, signal_id: str, channel_id: str, sender_id: str, was: str | None
    ) -> tuple[str, Any]:
        """The home shard decides; then every other shard, its counts added. A scheduled
        signal's count (the channel's subscribers on every shard) is kept on the home shard, so
        that asking again gives the same answer."""
        home = self.shards.home
        status, value = await scripts.cancel(
            home, signal_id=signal_id, channel_id=channel_id, sender_id=sender_id,
            brokers=self.brokers,
        )  # fmt: skip
        if status == "err":
            return status, value
        total = int(value)
        for shard in self.shards.all[1:]:
            part, n = await scripts.cancel(
                shard, signal_id=signal_id, channel_id=channel_id, sender_id=sender_id,
                brokers=self.brokers, publish=False,
            )  # fmt: skip
            if part == "ok":
                total += int(n)
            elif was == "scheduled":  # never fanned out: its subscribers on this shard now
                for broker in self.brokers:
                    total += int(
                        await shard.redis.scard(shard.key(keys.directory(channel_id, broker)))
                    )
        if was == "scheduled":
            await home.redis.hset(home.key(keys.signal(signal_id)), "cancellable", total)
        return "ok", total

"""Cancelling a signal: every worker of every broker sees it at once, because it is state, not
a message.

One Lua script (``core/lua/cancel.lua``) marks the signal cancelled (the workers' send gate reads
that flag atomically before every batch goes to a broker), takes every subscriber still waiting in
the work sets and writes each one's terminal record, ``skipped``/``cancelled``, once. Subscribers
already claimed but not yet sent will be turned away by the gate; they are counted as cancellable
too. Purchases already sent stand: a binary option cannot be un-bought. A scheduled signal
cancelled before its instant never fans out; its ack counts the subscribers it would have reached.
Asking again gives the same answer.

This is a broadcast in effect: no worker is told, every worker of every broker reads the flag in
the same atomic step that would let it buy, so none can miss it and none can eat it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from core import keys, scripts
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
    def __init__(self, redis: Redis, brokers: list[str]) -> None:
        self.redis = redis
        self.brokers = brokers  # those a signal may have fanned out to (BROKERS)

    async def cancel(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Cancel what is not yet sent; the ack says how many purchases that stopped."""
        request = validate(CancelIn, payload, "{signal_id}")
        channel_id: Any = await self.redis.hget(keys.signal(request.signal_id), "channel_id")
        if channel_id is None:
            status, value = "err", "signal_not_found"
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

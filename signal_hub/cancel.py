"""Cancelling a signal: every worker of every broker sees it at once, because it is state, not
a message.

One Lua script marks the signal cancelled (the workers' send gate reads that flag atomically before
every batch goes to a broker), takes every subscriber still waiting in the work sets and writes each
one's terminal record, ``skipped``/``cancelled``, once. Subscribers already claimed but not yet
sent will be turned away by the gate; they are counted as cancellable too. Purchases already sent
stand: a binary option cannot be un-bought. A scheduled signal cancelled before its instant never
fans out; its ack counts the subscribers it would have reached. Asking again gives the same answer.

This is a broadcast in effect: no worker is told, every worker of every broker reads the flag in
the same atomic step that would let it buy, so none can miss it and none can eat it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.errors import ApiError, Conflict, Forbidden, NotFound
from signal_hub.lua import END_UNSENT, NOW_MS
from signal_hub.validation import validate

CANCEL = (
    NOW_MS
    + END_UNSENT
    + """
local s = hash_of(redis.call('HGETALL', KEYS[1]))
if s.channel_id == nil then return {'err', 'signal_not_found'} end
local prefix, signal_id = ARGV[3], ARGV[1]
local raw = redis.call('GET', prefix .. 'chan:' .. s.channel_id)
local allowed = false
if raw then
  for _, sender in ipairs(cjson.decode(raw).senders) do
    if sender == ARGV[2] then allowed = true end
  end
end
if not allowed then return {'err', 'forbidden'} end
if s.status == 'cancelled' then return {'ok', tonumber(s.cancellable or '0')} end
if s.status ~= 'active' and s.status ~= 'scheduled' then return {'err', 'not_cancellable'} end
redis.call('HSET', KEYS[1], 'status', 'cancelled')
local cancelled = 0
if redis.call('ZREM', KEYS[5], signal_id) == 1 then
  -- not fanned out yet: every subscriber the channel has now would have been bought for
  for _, broker in ipairs(redis.call('SMEMBERS', prefix .. 'dirbrokers:' .. s.channel_id)) do
    cancelled = cancelled + redis.call('SCARD', prefix .. 'dir:' .. s.channel_id .. ':' .. broker)
  end
else
  local now = now_ms()
  for broker in string.gmatch(s.brokers or '', '[^,]+') do
    local work = prefix .. 'work:' .. signal_id .. ':' .. broker
    local ids = redis.call('SMEMBERS', work)
    redis.call('DEL', work)
    redis.call('ZREM', KEYS[4], signal_id .. '|' .. broker)
    for _, id in ipairs(ids) do
      cancelled = cancelled
        + end_unsent(prefix, signal_id, s, id, broker, 'cancelled', now, KEYS[3])
    end
  end
  for _, state in ipairs(redis.call('HVALS', KEYS[2])) do
    if string.sub(state, 1, 2) == 'c|' then cancelled = cancelled + 1 end
  end
end
redis.call('HSET', KEYS[1], 'cancellable', cancelled)
redis.call('XADD', KEYS[3], '*', 'kind', 'signal_status',
  'data', cjson.encode({signal_id = signal_id, channel_id = s.channel_id, status = 'cancelled'}))
return {'ok', cancelled}
"""
)

_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "signal_not_found": (NotFound, "No such signal, or it is too old to cancel."),
    "forbidden": (Forbidden, "You may not cancel signals of this channel."),
    "not_cancellable": (Conflict, "This signal has ended; there is nothing left to cancel."),
}


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signal_id: str = Field(min_length=1, max_length=64)


class Canceller:
    def __init__(self, redis: Redis) -> None:
        self._cancel = redis.register_script(CANCEL)

    async def cancel(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Cancel what is not yet sent; the ack says how many purchases that stopped."""
        request = validate(CancelIn, payload, "{signal_id}")
        status, value = await self._cancel(
            keys=[
                keys.signal(request.signal_id),
                keys.state(request.signal_id),
                keys.RESULTS,
                keys.ACTIVE,
                keys.SCHEDULED,
            ],
            args=[request.signal_id, sender_id, keys.PREFIX],
        )
        if status == "err":
            error_type, message = _ERRORS[value]
            raise error_type(message, value)
        return {"ok": True, "signal_id": request.signal_id, "cancellable": int(value)}

"""Cancelling a signal: every worker of every broker sees it at once, because it is state, not
a message.

One Lua script marks the signal cancelled (the workers' send gate reads that flag atomically before
every batch goes to a broker), takes every subscriber still waiting in the work sets and writes each
one's terminal record, ``skipped``/``cancelled``, once. Subscribers already claimed but not yet
sent will be turned away by the gate; they are counted as cancellable too. Purchases already sent
stand: a binary option cannot be un-bought.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.errors import ApiError, Forbidden, NotFound
from signal_hub.validation import validate

CANCEL = """
local sig = redis.call('HGETALL', KEYS[1])
if #sig == 0 then return {'err', 'signal_not_found'} end
local s = {}
for i = 1, #sig, 2 do s[sig[i]] = sig[i + 1] end
local prefix, signal_id = ARGV[3], ARGV[1]
local raw = redis.call('GET', prefix .. 'chan:' .. s.channel_id)
local allowed = false
if raw then
  for _, sender in ipairs(cjson.decode(raw).senders) do
    if sender == ARGV[2] then allowed = true end
  end
end
if not allowed then return {'err', 'forbidden'} end
if s.status == 'cancelled' then return {'ok', 0} end
redis.call('HSET', KEYS[1], 'status', 'cancelled')
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local created_ms = tonumber(s.created_ms)
local cancelled = 0
for broker in string.gmatch(s.brokers or '', '[^,]+') do
  local work = prefix .. 'work:' .. signal_id .. ':' .. broker
  local ids = redis.call('SMEMBERS', work)
  redis.call('DEL', work)
  redis.call('ZREM', KEYS[4], signal_id .. '|' .. broker)
  for _, id in ipairs(ids) do
    if redis.call('HGET', KEYS[2], id) ~= 'd' then
      redis.call('HSET', KEYS[2], id, 'd')
      local entry = redis.call('GET', prefix .. 'sub:' .. id)
      local sub = entry and cjson.decode(entry) or {}
      redis.call('XADD', KEYS[3], '*', 'kind', 'execution', 'data', cjson.encode({
        signal_id = signal_id, trade_id = signal_id .. '-' .. id, channel_id = s.channel_id,
        subscription_id = id, subscriber_id = sub.user_id, account_id = sub.account_id,
        broker = broker, asset = s.asset, direction = s.direction,
        expiry_seconds = tonumber(s.expiry_seconds), status = 'skipped', reason = 'cancelled',
        signal_created_ms = created_ms, executed_ms = now_ms,
        latency_ms = now_ms - created_ms}))
      cancelled = cancelled + 1
    end
  end
end
for _, state in ipairs(redis.call('HVALS', KEYS[2])) do
  if string.sub(state, 1, 2) == 'c|' then cancelled = cancelled + 1 end
end
redis.call('XADD', KEYS[3], '*', 'kind', 'signal_status',
  'data', cjson.encode({signal_id = signal_id, status = 'cancelled'}))
return {'ok', cancelled}
"""

_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "signal_not_found": (NotFound, "No such signal, or it is too old to cancel."),
    "forbidden": (Forbidden, "You may not cancel signals of this channel."),
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
            ],
            args=[request.signal_id, sender_id, keys.PREFIX],
        )
        if status == "err":
            error_type, message = _ERRORS[value]
            raise error_type(message, value)
        return {"ok": True, "signal_id": request.signal_id, "cancellable": int(value)}

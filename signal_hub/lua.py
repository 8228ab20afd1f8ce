"""Lua shared by the scripts of the hub, the workers and the reaper.

Prepended to a script's body, so each script stays one atomic call while the record a
subscriber ends with when nothing was sent (cancelled, expired) is written in one place only.
"""

NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# end_unsent(prefix, signal_id, sig, id, broker, reason, at_ms, results_key) -> 1 if written:
# ends a subscriber that was never sent as ``skipped`` with ``reason``, once (state ``d``).
# ``sig`` is the signal's hash as a Lua table (HGETALL folded by ``hash_of``).
END_UNSENT = """
local function hash_of(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end
local function end_unsent(prefix, signal_id, sig, id, broker, reason, at_ms, results_key)
  local state_key = prefix .. 'state:' .. signal_id
  if redis.call('HGET', state_key, id) == 'd' then return 0 end
  redis.call('HSET', state_key, id, 'd')
  local entry = redis.call('GET', prefix .. 'sub:' .. id)
  local sub = entry and cjson.decode(entry) or {}
  local created_ms = tonumber(sig.created_ms)
  redis.call('XADD', results_key, '*', 'kind', 'execution', 'data', cjson.encode({
    signal_id = signal_id, trade_id = signal_id .. '-' .. id, channel_id = sig.channel_id,
    subscription_id = id, subscriber_id = sub.user_id, account_id = sub.account_id,
    broker = broker, asset = sig.asset, direction = sig.direction,
    expiry_seconds = tonumber(sig.expiry_seconds), status = 'skipped', reason = reason,
    signal_created_ms = created_ms, executed_ms = at_ms,
    latency_ms = math.max(0, at_ms - created_ms)}))
  return 1
end
"""

# each_chunk(values, call) calls ``call`` with the values in slices of 1,000 (Lua's unpack has a
# limit); gather(values, call) does the same and joins the replies. The hot path's scripts read and
# write a batch with a few multi-key commands (HMGET, MGET, HSET of many fields, SADD of many
# members) instead of a few commands per subscriber: in Redis, a call from Lua costs about as much
# as the work of a small command.
BATCHED = """
local function each_chunk(values, call)
  for i = 1, #values, 1000 do
    call(unpack(values, i, math.min(i + 999, #values)))
  end
end
local function gather(values, call)
  local all = {}
  each_chunk(values, function(...)
    for _, v in ipairs(call(...)) do all[#all + 1] = v end
  end)
  return all
end
"""

-- hash_of(flat): a hash's HGETALL reply as a Lua table.
local function hash_of(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- end_unsent(k, signal_id, sig, id, broker, reason, at_ms) -> 1 if written: ends a subscriber
-- that was never sent as ``skipped`` with ``reason``, once (state ``d``). ``k`` holds the keys:
-- ``state`` (state:{S}), ``subs`` (subs:{C}), ``results``; ``sig`` is the signal's hash (hash_of).
-- The record is core.records.ExecutionRecord's wire form (tests/test_scripts.py holds the two
-- together).
local function end_unsent(k, signal_id, sig, id, broker, reason, at_ms)
  if redis.call('HGET', k.state, id) == 'd' then return 0 end
  redis.call('HSET', k.state, id, 'd')
  local entry = redis.call('HGET', k.subs, id)
  local sub = entry and cjson.decode(entry) or {}
  local created_ms = tonumber(sig.created_ms)
  redis.call('XADD', k.results, '*', 'kind', 'execution', 'data', cjson.encode({
    signal_id = signal_id, trade_id = signal_id .. '-' .. id, channel_id = sig.channel_id,
    subscription_id = id, subscriber_id = sub.user_id or cjson.null,
    account_id = sub.account_id or cjson.null, broker = broker, asset = sig.asset,
    direction = sig.direction, expiry_seconds = tonumber(sig.expiry_seconds), status = 'skipped',
    reason = reason, signal_created_ms = created_ms, executed_ms = at_ms,
    latency_ms = math.max(0, at_ms - created_ms)}))
  return 1
end

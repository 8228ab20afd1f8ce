-- uses: now_ms, end_unsent
-- Cancel: mark the signal (every worker's send gate reads the flag), end every subscriber still
-- waiting in a work set ``skipped``/``cancelled``, once; count the claimed-but-unsent ones, which
-- the gate will turn away. A scheduled signal never fans out; its count is the channel's now.
-- KEYS: sig:{S}, state:{S}, results, active, scheduled, chan:{C}, subs:{C}, then per broker
--   (ARGV[4..]) dir:{C}:b and work:{S}:b.
-- ARGV: signal_id, sender_id, publish ('1': the status record; '0' on a shard other than the
--   home one, core/shards.py, so that it is published once), brokers...
-- Returns {'ok', cancellable} or {'err', code}; asking again gives the same answer.
local signal_id, sender_id = ARGV[1], ARGV[2]
local s = hash_of(redis.call('HGETALL', KEYS[1]))
if s.channel_id == nil then return {'err', 'signal_not_found'} end
local raw = redis.call('GET', KEYS[6])
local allowed = false
if raw then
  for _, sender in ipairs(cjson.decode(raw).senders) do
    if sender == sender_id then allowed = true end
  end
end
if not allowed then return {'err', 'forbidden'} end
if s.status == 'cancelled' then return {'ok', tonumber(s.cancellable or '0')} end
if s.status ~= 'active' and s.status ~= 'scheduled' then return {'err', 'not_cancellable'} end
redis.call('HSET', KEYS[1], 'status', 'cancelled')
local cancelled = 0
local k = {state = KEYS[2], subs = KEYS[7], results = KEYS[3]}
if redis.call('ZREM', KEYS[5], signal_id) == 1 then
  -- not fanned out yet: every subscriber the channel has now would have been bought for
  for i = 1, #ARGV - 3 do
    cancelled = cancelled + redis.call('SCARD', KEYS[6 + 2 * i])
  end
else
  local now = now_ms()
  for i = 1, #ARGV - 3 do
    local broker, work = ARGV[3 + i], KEYS[7 + 2 * i]
    local ids = redis.call('SMEMBERS', work)
    redis.call('DEL', work)
    redis.call('ZREM', KEYS[4], signal_id .. '|' .. broker)
    for _, id in ipairs(ids) do
      cancelled = cancelled + end_unsent(k, signal_id, s, id, broker, 'cancelled', now)
    end
  end
  for _, state in ipairs(redis.call('HVALS', KEYS[2])) do
    if string.sub(state, 1, 2) == 'c|' then cancelled = cancelled + 1 end
  end
end
redis.call('HSET', KEYS[1], 'cancellable', cancelled)
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[3], '*', 'kind', 'signal_status',
    'data', cjson.encode({signal_id = signal_id, channel_id = s.channel_id, status = 'cancelled'}))
end
return {'ok', cancelled}

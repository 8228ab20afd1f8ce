-- What the three ways of taking a signal (expand, schedule, fire) share.
-- ARGV[1..9]: signal_id, channel_id, sender_id, asset, direction, expiry_seconds,
-- client_signal_id, ttl (s), at_ms ('' = now); brokers from ARGV[10] on.
local function signal_args()
  return {id = ARGV[1], channel_id = ARGV[2], sender_id = ARGV[3], asset = ARGV[4],
    direction = ARGV[5], expiry_seconds = ARGV[6], client_signal_id = ARGV[7],
    ttl = tonumber(ARGV[8]), at_ms = tonumber(ARGV[9]), brokers = {unpack(ARGV, 10)}}
end

-- Who may send is checked before anything is answered, a resend's old answer included: a removed
-- trader must get neither a new signal nor the acknowledgement of an old one.
local function sender_refusal(chan, sender_id)
  if not chan then return 'channel_not_found' end
  if chan.suspended then return 'channel_suspended' end
  for _, sender in ipairs(chan.senders) do
    if sender == sender_id then return nil end
  end
  return 'forbidden'
end

local function asset_refusal(chan, asset)
  if type(chan.assets) == 'table' and #chan.assets > 0 then
    for _, listed in ipairs(chan.assets) do
      if listed == asset then return nil end
    end
    return 'asset_not_allowed'
  end
  return nil
end

-- The checks before a signal is taken: its sender, a resend of it (``dedupe_key``), the same call
-- retried (redis-py retried it after its answer was lost: the same answer), its asset. The
-- script's answer when one of them decides, else nil.
local function answered(chan, a, sig_key, dedupe_key)
  local refused = sender_refusal(chan, a.sender_id)
  if refused then return {'err', refused} end
  if dedupe_key then
    local previous = redis.call('GET', dedupe_key)
    if previous then return {'dup', previous} end
  end
  local previous = redis.call('HGET', sig_key, 'ack')
  if previous then return {'ok', previous} end
  refused = asset_refusal(chan, a.asset)
  if refused then return {'err', refused} end
  return nil
end

-- The signal's hash and its record for the results stream (the relay stores it).
local function new_signal(sig_key, a)
  redis.call('HSET', sig_key, 'channel_id', a.channel_id, 'sender_id', a.sender_id,
    'asset', a.asset, 'direction', a.direction, 'expiry_seconds', a.expiry_seconds,
    'client_signal_id', a.client_signal_id, 'scheduled_ms', a.at_ms or '')
  redis.call('EXPIRE', sig_key, a.ttl)
  return {id = a.id, channel_id = a.channel_id, sender_id = a.sender_id, asset = a.asset,
    direction = a.direction, expiry_seconds = tonumber(a.expiry_seconds),
    client_signal_id = a.client_signal_id, scheduled_ms = a.at_ms}
end

-- Each broker's subscriber set becomes this signal's work set: the spare copy made after the
-- previous signal is renamed (O(1)), else the set is copied. ``first`` is the index in KEYS of
-- the first broker's three keys: dir, dirspare, work.
local function fan_out(sig_key, active_key, first, a, record, chan, created_ms)
  local deadline_ms = created_ms + tonumber(chan.max_signal_delay_ms)
  local by_broker, brokers, total = {}, {}, 0
  for i, broker in ipairs(a.brokers) do
    local dir, spare, work = KEYS[first + 3 * (i - 1)], KEYS[first + 3 * i - 2],
      KEYS[first + 3 * i - 1]
    local n = 0
    local taken = redis.call('EXISTS', spare) == 1
    if taken then
      redis.call('RENAME', spare, work)
    else
      taken = redis.call('COPY', dir, work) == 1
    end
    if taken then
      n = redis.call('SCARD', work)
      redis.call('EXPIRE', work, a.ttl)
      redis.call('ZADD', active_key, deadline_ms, a.id .. '|' .. broker)
    end
    if n > 0 then
      by_broker[broker] = n
      brokers[#brokers + 1] = broker
    end
    total = total + n
  end
  redis.call('HSET', sig_key, 'created_ms', created_ms, 'deadline_ms', deadline_ms,
    'status', 'active', 'total', total, 'brokers', table.concat(brokers, ','))
  record.status, record.created_ms, record.deadline_ms = 'active', created_ms, deadline_ms
  record.fanout = {total = total, by_broker = by_broker}
  return cjson.encode({ok = true, signal_id = a.id, deadline_ms = deadline_ms,
    fanout = record.fanout})
end

-- The acknowledgement kept (for a retried call, and a resend when ``dedupe_key``) and the
-- record published.
local function publish(sig_key, dedupe_key, results_key, a, record, ack)
  redis.call('HSET', sig_key, 'ack', ack)
  if dedupe_key then redis.call('SET', dedupe_key, ack, 'EX', a.ttl) end
  redis.call('XADD', results_key, '*', 'kind', 'signal', 'data', cjson.encode(record))
end

local function channel_entry(key)
  local raw = redis.call('GET', key)
  return raw and cjson.decode(raw)
end

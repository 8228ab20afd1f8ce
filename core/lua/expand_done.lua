-- uses: end_unsent
-- A signal on K shards, last step, on the home shard: the acknowledgement counts every shard's
-- fan-out; it is kept (for a retried call and a resend) and the signal's record published, once.
-- KEYS: sig:{S}, results; last, dedupe:{C}:... when the signal has a client id.
-- ARGV: signal id, total, by broker (JSON object), brokers with work (comma separated), TTL (s)
-- Returns the acknowledgement (JSON), the first one when asked again.
local done = redis.call('HGET', KEYS[1], 'ack')
if done then return done end
local s = hash_of(redis.call('HGETALL', KEYS[1]))
local fanout = {total = tonumber(ARGV[2]), by_broker = cjson.decode(ARGV[3])}
local deadline = tonumber(s.deadline_ms)
local ack = cjson.encode({ok = true, signal_id = ARGV[1], deadline_ms = deadline, fanout = fanout})
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'brokers', ARGV[4], 'ack', ack)
if s.status ~= 'cancelled' then redis.call('HSET', KEYS[1], 'status', 'active') end
if KEYS[3] then redis.call('SET', KEYS[3], ack, 'EX', tonumber(ARGV[5])) end
redis.call('XADD', KEYS[2], '*', 'kind', 'signal', 'data', cjson.encode({
  id = ARGV[1], channel_id = s.channel_id, sender_id = s.sender_id, asset = s.asset,
  direction = s.direction, expiry_seconds = tonumber(s.expiry_seconds),
  client_signal_id = s.client_signal_id, scheduled_ms = tonumber(s.scheduled_ms),
  status = 'active', created_ms = tonumber(s.created_ms), deadline_ms = deadline,
  fanout = fanout}))
return ack

-- uses: now_ms, signal
-- A signal for later (ARGV[9], ms): checked and recorded as scheduled; the scheduler fires it.
-- KEYS: chan:{C}, sig:{S}, results, scheduled; last, dedupe:{C}:... when it has a client id.
local a = signal_args()
local chan = channel_entry(KEYS[1])
local dedupe_key = KEYS[5]
local answer = answered(chan, a, KEYS[2], dedupe_key)
if answer then return answer end
local record = new_signal(KEYS[2], a)
local now = now_ms()
redis.call('ZADD', KEYS[4], a.at_ms, a.id)
redis.call('HSET', KEYS[2], 'status', 'scheduled', 'created_ms', now)
record.status, record.created_ms = 'scheduled', now
record.fanout = {total = 0, by_broker = {}}
local ack = cjson.encode({ok = true, signal_id = a.id, status = 'scheduled',
  scheduled_ms = a.at_ms, fanout = record.fanout})
publish(KEYS[2], dedupe_key, KEYS[3], a, record, ack)
return {'ok', ack}

-- uses: now_ms, signal
-- A signal for now: checks, then the fan-out into each broker's work set, in one atomic step.
-- KEYS: chan:{C}, sig:{S}, results, active, then per broker (ARGV[10..]) dir:{C}:b,
--   dirspare:{C}:b, work:{S}:b; last, dedupe:{C}:... when the signal has a client id.
-- Returns {'ok', ack}, {'dup', first ack} or {'err', code}.
local a = signal_args()
local chan = channel_entry(KEYS[1])
local dedupe_key = KEYS[5 + 3 * #a.brokers]
local refused = sender_refusal(chan, a.sender_id)
if refused then return {'err', refused} end
if dedupe_key then
  local previous = redis.call('GET', dedupe_key)
  if previous then return {'dup', previous} end
end
-- the same call again (redis-py retried it after its answer was lost): the same answer
local previous = redis.call('HGET', KEYS[2], 'ack')
if previous then return {'ok', previous} end
refused = asset_refusal(chan, a.asset)
if refused then return {'err', refused} end
local record = new_signal(KEYS[2], a)
local ack = fan_out(KEYS[2], KEYS[4], 5, a, record, chan, now_ms())
publish(KEYS[2], dedupe_key, KEYS[3], a, record, ack)
return {'ok', ack}

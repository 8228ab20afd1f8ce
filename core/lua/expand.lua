-- uses: now_ms, signal
-- A signal for now: checks, then the fan-out into each broker's work set, in one atomic step.
-- KEYS: chan:{C}, sig:{S}, results, active, then per broker (ARGV[10..]) dir:{C}:b,
--   dirspare:{C}:b, work:{S}:b; last, dedupe:{C}:... when the signal has a client id.
-- Returns {'ok', ack}, {'dup', first ack} or {'err', code}.
local a = signal_args()
local chan = channel_entry(KEYS[1])
local dedupe_key = KEYS[5 + 3 * #a.brokers]
local answer = answered(chan, a, KEYS[2], dedupe_key)
if answer then return answer end
local record = new_signal(KEYS[2], a)
local ack = fan_out(KEYS[2], KEYS[4], 5, a, record, chan, now_ms())
publish(KEYS[2], dedupe_key, KEYS[3], a, record, ack)
return {'ok', ack}

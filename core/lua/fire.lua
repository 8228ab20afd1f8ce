-- uses: signal
-- A scheduled signal at its instant: taken out of ``scheduled`` (so it fires once, whichever hub
-- gets there first), the sender's rights checked again, the channel fanned out as it is now. Its
-- deadline counts from the instant it was scheduled for (ARGV[9]), however late this runs.
-- KEYS: chan:{C}, sig:{S}, results, active, scheduled, then per broker dir, dirspare, work.
-- Returns {'ok', ack}, {'dup', ack} (fired already), {'gone', ''} (cancelled) or {'err', code}.
local a = signal_args()
if redis.call('ZREM', KEYS[5], a.id) == 0 then
  if redis.call('HGET', KEYS[2], 'status') == 'active' then
    return {'dup', redis.call('HGET', KEYS[2], 'ack')}
  end
  return {'gone', ''}
end
local chan = channel_entry(KEYS[1])
local refused = sender_refusal(chan, a.sender_id) or asset_refusal(chan, a.asset)
if refused then return {'err', refused} end
local record = new_signal(KEYS[2], a)
local ack = fan_out(KEYS[2], KEYS[4], 6, a, record, chan, a.at_ms)
publish(KEYS[2], nil, KEYS[3], a, record, ack)
return {'ok', ack}

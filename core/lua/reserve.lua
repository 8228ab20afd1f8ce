-- uses: now_ms, signal
-- A signal on K shards (core/shards.py), first step, on the home shard: the checks of expand.lua
-- (or, firing a scheduled signal, fire.lua's taking it out of ``scheduled``), then the signal
-- recorded ``expanding`` with its instant and deadline, its resend key pointing at it
-- (``pending:<id>``): a resend while it is being fanned out completes this signal, never a second.
-- KEYS: chan:{C}, sig:{S}, scheduled; last, dedupe:{C}:... when the signal has a client id.
-- ARGV: as signal_args (ARGV[9]: the scheduled instant when firing, '' for now); no brokers.
-- Returns {'go', created ms, deadline ms}, {'ok' | 'dup', ack} (answered already: a retried call,
-- a resend, a fired signal), {'dup', 'pending:<id>'} (a resend of a signal still being fanned
-- out), {'gone', ''} (a cancelled scheduled signal) or {'err', code}.
local a = signal_args()
local chan = channel_entry(KEYS[1])
local dedupe_key = KEYS[4]
local s = redis.call('HMGET', KEYS[2], 'status', 'created_ms', 'deadline_ms', 'ack')
if s[1] == 'expanding' then return {'go', s[2], s[3]} end  -- this call, retried
local created
if a.at_ms then
  if redis.call('ZREM', KEYS[3], a.id) == 0 then
    if s[4] then return {'dup', s[4]} end
    return {'gone', ''}
  end
  local refused = sender_refusal(chan, a.sender_id) or asset_refusal(chan, a.asset)
  if refused then return {'err', refused} end
  created = a.at_ms
else
  local answer = answered(chan, a, KEYS[2], dedupe_key)
  if answer then return answer end
  created = now_ms()
end
new_signal(KEYS[2], a)
local deadline = created + tonumber(chan.max_signal_delay_ms)
redis.call('HSET', KEYS[2], 'status', 'expanding', 'created_ms', created, 'deadline_ms', deadline)
if dedupe_key then redis.call('SET', dedupe_key, 'pending:' .. a.id, 'EX', a.ttl) end
return {'go', created, deadline}

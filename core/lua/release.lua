-- uses: now_ms, end_unsent
-- Give up a worker's claims on one signal: claimed-but-unsent ones go back to the work set (or
-- end ``skipped`` when a cancel or the deadline leaves nothing to do), sending ones - maybe bought,
-- maybe not - wait in ``orphans`` for the reaper to reconcile with the broker after the deadline,
-- when no one can buy them any more. Members no longer in the worker's claims are left alone.
-- KEYS: claims:{W}, worker:{W}, sig:{S}, state:{S}, subs:{C}, results, orphans, active, then
--   work:{S}:b per broker (ARGV[7..6 + n])
-- ARGV: worker, only if dead ('1': nothing while the heartbeat lives), send margin (ms),
--   reconcile after (ms), signal id, n, brokers..., members (``signal|broker|subscription``)...
-- Returns the brokers whose work set got subscribers back (they need a drain job).
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local worker, margin, after, signal_id = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local n = tonumber(ARGV[6])
local work_of = {}
for i = 1, n do work_of[ARGV[6 + i]] = KEYS[8 + i] end
local sig = hash_of(redis.call('HGETALL', KEYS[3]))
local k = {state = KEYS[4], subs = KEYS[5], results = KEYS[6]}
local now = now_ms()
local sending = 's|' .. worker .. '|'
local redrive, seen = {}, {}
for i = 7 + n, #ARGV do
  local member = ARGV[i]
  local _, broker, id = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  if redis.call('SREM', KEYS[1], member) == 1 and sig.deadline_ms ~= nil then
    local state = redis.call('HGET', KEYS[4], id) or ''
    local deadline = tonumber(sig.deadline_ms)
    if state == 'c|' .. worker then
      if sig.status == 'cancelled' then
        end_unsent(k, signal_id, sig, id, broker, 'cancelled', now)
      elseif now + margin > deadline then
        end_unsent(k, signal_id, sig, id, broker, 'expired', now)
      else
        redis.call('HSET', KEYS[4], id, 'r')
        redis.call('SADD', work_of[broker], id)
        redis.call('ZADD', KEYS[8], deadline, signal_id .. '|' .. broker)
        if not seen[broker] then
          seen[broker] = true
          redrive[#redrive + 1] = broker
        end
      end
    elseif string.sub(state, 1, #sending) == sending then
      redis.call('ZADD', KEYS[7], deadline + after, member)
    end
  end
end
return redrive

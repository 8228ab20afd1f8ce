-- uses: now_ms, end_unsent
-- Work of a signal on one broker whose deadline has passed: each subscriber still waiting ends
-- ``skipped``/``expired``, once, and the work set goes. Nothing happens unless the member is due.
-- KEYS: active, results, sig:{S}, state:{S}, subs:{C}, work:{S}:b
-- ARGV: member (``signal|broker``), signal id, broker
-- Returns how many subscribers it ended.
local now = now_ms()
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > now then return 0 end
local sig = hash_of(redis.call('HGETALL', KEYS[3]))
local k = {state = KEYS[4], subs = KEYS[5], results = KEYS[2]}
local ended = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  ended = ended + end_unsent(k, ARGV[2], sig, id, ARGV[3], 'expired', now)
end
redis.call('DEL', KEYS[6])
redis.call('ZREM', KEYS[1], ARGV[1])
return ended

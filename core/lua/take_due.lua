-- uses: now_ms
-- Take up to ARGV[1] members of a schedule (settle:b, orphans) whose time has come, leasing each
-- for ARGV[2] ms: its score moves into the future instead of it being removed, so a process that
-- dies while handling it leaves it to be taken again.
-- KEYS: the ZSET
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
end
return due

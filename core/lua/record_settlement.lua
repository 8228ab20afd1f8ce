-- How a placed trade ended (``settlement``), or that its outcome could not be learned in time
-- (``settlement_failed``): published once per trade, whoever gets there first; a loss is added
-- to the day's counters the loss limit reads.
-- KEYS: settle:b, settled:{S}:<sub>, results, daily:<sub>:<day>
-- ARGV: member, kind, record (JSON), loss (>= 0), TTL of the guard and the counters (s)
-- Returns 1 if this call published it.
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[5])) then
  redis.call('XADD', KEYS[3], '*', 'kind', ARGV[2], 'data', ARGV[3])
  if tonumber(ARGV[4]) > 0 then
    redis.call('HINCRBYFLOAT', KEYS[4], 'loss', ARGV[4])
    redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
  end
  return 1
end
return 0

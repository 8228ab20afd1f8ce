-- uses: batched, now_ms
-- The last gate before the broker, for a batch: the whole batch is refused when the signal was
-- cancelled or its deadline (less the send margin) has passed, or when the worker's lease is not
-- the one named (lapsed, or lapsed and taken again under a new token: the reaper may already own
-- its claims: ``lost``; an empty token asks only for a live lease). Then per subscriber: a claim
-- no longer this worker's is ``lost``; the day's loss limit and trade count are checked, the trade
-- counted; what may go is marked ``s|worker|stake`` (the reaper reconciles with that stake).
-- KEYS: state:{S}, sig:{S}, worker:{W}, then each item's daily counters (daily:<sub>:<day>)
-- ARGV: worker, lease token ('' = any live lease), send margin (ms), daily TTL (s), then per
--   item: id, max trades (0 = none), daily loss limit (0 = none), stake
-- Returns {verdicts, Redis' clock (ms)}: per item 'go', 'lost', 'cancelled', 'expired',
-- 'daily_loss_limit' or 'max_trades_per_day'. Run twice, it answers the same and counts once.
local worker, token, margin, daily_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local verdict = 'go'
local lease = redis.call('GET', KEYS[3])
if (not lease) or (token ~= '' and lease ~= token) then
  verdict = 'lost'
elseif redis.call('HGET', KEYS[2], 'status') == 'cancelled' then
  verdict = 'cancelled'
elseif now + margin > tonumber(redis.call('HGET', KEYS[2], 'deadline_ms')) then
  verdict = 'expired'
end
local ids = {}
for i = 5, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local out, sending_now = {}, {}
if #ids == 0 then return {out, now} end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[1], ...) end)
for j, id in ipairs(ids) do
  local i = 5 + (j - 1) * 4
  local max_trades, loss_limit, daily_key = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), KEYS[3 + j]
  local sending = 's|' .. worker .. '|' .. ARGV[i + 3]
  local result = verdict
  if states[j] == sending and verdict == 'go' then
    result = 'go'  -- this very call, retried after its answer was lost: already counted
  elseif states[j] ~= 'c|' .. worker then
    result = 'lost'
  elseif verdict == 'go' then
    if loss_limit > 0 and tonumber(redis.call('HGET', daily_key, 'loss') or '0') >= loss_limit then
      result = 'daily_loss_limit'
    elseif max_trades > 0 then
      local n = redis.call('HINCRBY', daily_key, 'trades', 1)
      redis.call('EXPIRE', daily_key, daily_ttl)
      if n > max_trades then
        redis.call('HINCRBY', daily_key, 'trades', -1)
        result = 'max_trades_per_day'
      end
    end
    if result == 'go' then
      sending_now[#sending_now + 1] = id
      sending_now[#sending_now + 1] = sending
    end
  end
  out[j] = result
end
if #sending_now > 0 then
  each_chunk(sending_now, function(...) redis.call('HSET', KEYS[1], ...) end)
end
return {out, now}

-- uses: batched
-- Claim a batch: pop up to ARGV[1] subscribers from the work set, mark each ``c|worker`` (one
-- handed back, ``r``, may be claimed again; any other state is someone else's), remember them in
-- the worker's claims, and return what the process phase needs in the same round trip.
-- KEYS: work:{S}:b, state:{S}, sig:{S}, claims:{W}, subs:{C}, accounts:b
-- ARGV: count, worker, member prefix (``signal|broker|``), state TTL (s)
-- Returns {} when the signal is gone, else {signal hash (flat), ids, subscription entries,
-- account entries} ('' where an entry is missing).
local sig = redis.call('HGETALL', KEYS[3])
if #sig == 0 then return {} end
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local worker, member_prefix = ARGV[2], ARGV[3]
local claimed, subs, accounts = {}, {}, {}
if #ids == 0 then return {sig, claimed, subs, accounts} end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[2], ...) end)
local owned, members = {}, {}
for i, id in ipairs(ids) do
  if (not states[i]) or states[i] == 'r' then
    claimed[#claimed + 1] = id
    owned[#owned + 1] = id
    owned[#owned + 1] = 'c|' .. worker
    members[#members + 1] = member_prefix .. id
  end
end
if #claimed > 0 then
  each_chunk(owned, function(...) redis.call('HSET', KEYS[2], ...) end)
  each_chunk(members, function(...) redis.call('SADD', KEYS[4], ...) end)
  local entries = gather(claimed, function(...) return redis.call('HMGET', KEYS[5], ...) end)
  local account_ids, account_of = {}, {}
  for i, entry in ipairs(entries) do
    if entry then
      account_ids[#account_ids + 1] = cjson.decode(entry).account_id
      account_of[i] = #account_ids
    end
    subs[i] = entry or ''
  end
  local found = gather(account_ids, function(...) return redis.call('HMGET', KEYS[6], ...) end)
  for i = 1, #claimed do
    accounts[i] = (account_of[i] and found[account_of[i]]) or ''
  end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return {sig, claimed, subs, accounts}

-- uses: batched
-- Write each subscriber's terminal record once: one already ``d`` is skipped, so a retry or a
-- reaper racing a slow worker cannot add a second record. A batch's records are one stream entry
-- (a JSON list: the relay's cost is per entry more than per record). A placed contract waits for
-- settlement and, when asked, is remembered as recorded for its account (reconciling another
-- order by its details must never take it for its own); a trade counted at the gate and not
-- bought is given back.
-- KEYS: state:{S}, claims:{W}, results, settle:b, then the extra keys the items point at
--   (recorded:<account>, daily:<sub>:<day>)
-- ARGV: member prefix, recorded TTL (s), then per item: id, record (JSON), settle due (ms),
--   settle member ('' = none), index in KEYS of its recorded set (0 = none), contract id,
--   index in KEYS of the daily counters to give a trade back to (0 = none)
-- Returns how many records were new.
local member_prefix, recorded_ttl, ids = ARGV[1], tonumber(ARGV[2]), {}
for i = 3, #ARGV, 7 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[1], ...) end)
local records, members, done, settle, seen = {}, {}, {}, {}, {}
for j, id in ipairs(ids) do
  local i = 3 + (j - 1) * 7
  local record, due, settle_member = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local recorded, contract_id, undo_daily = tonumber(ARGV[i + 4]), ARGV[i + 5], tonumber(ARGV[i + 6])
  if states[j] ~= 'd' and not seen[id] then
    seen[id] = true
    done[#done + 1] = id
    done[#done + 1] = 'd'
    records[#records + 1] = record
    if settle_member ~= '' then
      settle[#settle + 1] = due
      settle[#settle + 1] = settle_member
    end
    if recorded > 0 then
      redis.call('SADD', KEYS[recorded], contract_id)
      redis.call('EXPIRE', KEYS[recorded], recorded_ttl)
    end
    if undo_daily > 0 then redis.call('HINCRBY', KEYS[undo_daily], 'trades', -1) end
  end
  members[#members + 1] = member_prefix .. id
end
if #records > 0 then
  each_chunk(done, function(...) redis.call('HSET', KEYS[1], ...) end)
  if #settle > 0 then each_chunk(settle, function(...) redis.call('ZADD', KEYS[4], ...) end) end
  redis.call('XADD', KEYS[3], '*', 'kind', 'execution', 'data',
    '[' .. table.concat(records, ',') .. ']')
end
each_chunk(members, function(...) redis.call('SREM', KEYS[2], ...) end)
return #records

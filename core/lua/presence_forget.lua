-- A gone hub's sockets taken out of the sums over all hubs.
-- KEYS: online, online:<hub>
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local total = redis.call('HINCRBY', KEYS[1], counts[i], -tonumber(counts[i + 1]))
  if total <= 0 then redis.call('HDEL', KEYS[1], counts[i]) end
end
redis.call('DEL', KEYS[2])
return #counts / 2

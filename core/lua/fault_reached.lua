-- Has this passage of kill point ARGV[1] (by any worker) the number a test armed? Then disarm.
-- KEYS: fault:kill (``<point>:<nth>``), fault:count
local spec = redis.call('GET', KEYS[1])
if not spec then return 0 end
local point, nth = string.match(spec, '^([%w_]+):(%d+)$')
if point ~= ARGV[1] then return 0 end
if redis.call('INCR', KEYS[2]) >= tonumber(nth) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0

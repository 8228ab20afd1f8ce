-- each_chunk(values, call) calls ``call`` with the values in slices of 1,000 (Lua's unpack has a
-- limit); gather(values, call) does the same and joins the replies. The hot path's scripts read and
-- write a batch with a few multi-key commands (HMGET, HSET of many fields, SADD of many members)
-- instead of a few commands per subscriber: in Redis, a call from Lua costs about as much as the
-- work of a small command.
local function each_chunk(values, call)
  for i = 1, #values, 1000 do
    call(unpack(values, i, math.min(i + 999, #values)))
  end
end
local function gather(values, call)
  local all = {}
  each_chunk(values, function(...)
    for _, v in ipairs(call(...)) do all[#all + 1] = v end
  end)
  return all
end

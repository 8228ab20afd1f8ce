-- uses: batched, now_ms
-- Buy a batch of orders on the paper ledger, atomically and idempotently: an order (by client
-- order id) bought before returns its contract again; one past its deadline (the ledger's clock)
-- is skipped; one the account's balance cannot cover is refused. Fencing: when the batch names
-- the lease it was sent under (the worker's lease key and its token), the whole batch is refused
-- ('lost:lease_lost') unless that key still holds that token, so that a request held up in a
-- network cut buys nothing once the worker's claims may be the reaper's.
-- KEYS: balances, orders (client order id -> contract id), contracts, the contract sequence,
--   then the lease key (worker:{W}) when fenced
-- ARGV: the lease token ('' = not fenced), the worker ('' = none), then per order: client order
--   id, account, starting balance (cents), stake (cents), deadline (ms), asset, direction,
--   expiry (s)
-- Returns per order a contract (JSON, with the worker that bought it) or 'status:reason'.
local now = now_ms()
local token, worker = ARGV[1], ARGV[2]
local first = 3
if token ~= '' and redis.call('GET', KEYS[5]) ~= token then
  local out = {}
  for i = first, #ARGV, 8 do out[#out + 1] = 'lost:lease_lost' end
  return out
end
local coids, accounts = {}, {}
for i = first, #ARGV, 8 do
  coids[#coids + 1] = ARGV[i]
  accounts[#accounts + 1] = ARGV[i + 1]
end
if #coids == 0 then return {} end
local existing = gather(coids, function(...) return redis.call('HMGET', KEYS[2], ...) end)
local stored = gather(accounts, function(...) return redis.call('HMGET', KEYS[1], ...) end)
local out, balance, buying, known = {}, {}, {}, {}
for j = 1, #coids do
  local i = (j - 1) * 8 + first
  local account, start, stake = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if existing[j] then
    known[#known + 1] = existing[j]
  elseif now > tonumber(ARGV[i + 4]) then
    out[j] = 'skipped:expired'
  else
    if balance[account] == nil then balance[account] = tonumber(stored[j] or start) end
    if balance[account] < stake then
      out[j] = 'rejected:insufficient_balance'
    else
      balance[account] = balance[account] - stake
      buying[#buying + 1] = j
    end
  end
end
if #known > 0 then
  local contracts = gather(known, function(...) return redis.call('HMGET', KEYS[3], ...) end)
  local k = 0
  for j = 1, #coids do
    if existing[j] then k = k + 1; out[j] = contracts[k] end
  end
end
if #buying > 0 then
  local last = redis.call('INCRBY', KEYS[4], #buying)
  local contracts, orders = {}, {}
  for n, j in ipairs(buying) do
    local i = (j - 1) * 8 + first
    local id = tostring(last - #buying + n)
    local contract = cjson.encode({contract_id = id, client_order_id = ARGV[i],
      account = ARGV[i + 1], asset = ARGV[i + 5], direction = ARGV[i + 6],
      stake_cents = tonumber(ARGV[i + 3]), bought_ms = now,
      expiry_ms = now + tonumber(ARGV[i + 7]) * 1000, status = 'open', worker = worker})
    contracts[#contracts + 1] = id
    contracts[#contracts + 1] = contract
    orders[#orders + 1] = ARGV[i]
    orders[#orders + 1] = id
    out[j] = contract
  end
  each_chunk(contracts, function(...) redis.call('HSET', KEYS[3], ...) end)
  each_chunk(orders, function(...) redis.call('HSET', KEYS[2], ...) end)
end
local balances = {}
for account, cents in pairs(balance) do
  balances[#balances + 1] = account
  balances[#balances + 1] = cents
end
if #balances > 0 then each_chunk(balances, function(...) redis.call('HSET', KEYS[1], ...) end) end
return out

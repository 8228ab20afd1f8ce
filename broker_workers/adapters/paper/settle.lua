-- Settle a contract once: its outcome, profit and time, and the credit to its account's balance.
-- KEYS: contracts, balances
-- ARGV: contract id, outcome, profit (cents), settled at (ms), credit (cents)
-- Returns the contract (JSON), or false if there is none.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local contract = cjson.decode(raw)
if contract.status == 'open' then
  contract.status = ARGV[2]
  contract.profit_cents = tonumber(ARGV[3])
  contract.settled_ms = tonumber(ARGV[4])
  redis.call('HINCRBY', KEYS[2], contract.account, tonumber(ARGV[5]))
  raw = cjson.encode(contract)
  redis.call('HSET', KEYS[1], ARGV[1], raw)
end
return raw

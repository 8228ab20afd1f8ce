"""The paper broker: virtual balances and the seeded price feed, so anyone can copy risk-free.

It behaves like a remote broker that happens to keep its ledger in Redis: purchases are atomic
(one Lua script per request), idempotent on the client order id (a retried order returns the same
contract instead of buying twice), refused past the signal's deadline by the broker's own clock,
and settled once at expiry with the balance credited. A configurable latency stands in for the
network round trip of a real broker.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from broker_workers.adapters.base import (
    DEFAULT_CAPABILITIES,
    Account,
    Capabilities,
    Fill,
    Order,
    Outcome,
    TemporaryBrokerError,
)
from broker_workers.price_feed import BASE_PRICES, price, settle
from signal_hub.connections import redis_client
from signal_hub.lua import BATCHED
from signal_hub.settings import Settings

BALANCES = "paper:balance"
ORDERS = "paper:orders"
CONTRACTS = "paper:contracts"
SEQUENCE = "paper:contract_seq"

# One batch in a few multi-key commands (see ``signal_hub.lua.BATCHED``): the ledger shares Redis
# with the hot path, and per-order commands from Lua cost more than the work they do.
BUY = (
    BATCHED
    + """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local coids, accounts = {}, {}
for i = 1, #ARGV, 8 do
  coids[#coids + 1] = ARGV[i]
  accounts[#accounts + 1] = ARGV[i + 1]
end
if #coids == 0 then return {} end
local existing = gather(coids, function(...) return redis.call('HMGET', KEYS[2], ...) end)
local stored = gather(accounts, function(...) return redis.call('HMGET', KEYS[1], ...) end)
local out, balance, buying, known = {}, {}, {}, {}
for j = 1, #coids do
  local i = (j - 1) * 8 + 1
  local account, start, stake = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if existing[j] then
    known[#known + 1] = existing[j]
  elseif now_ms > tonumber(ARGV[i + 4]) then
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
    local i = (j - 1) * 8 + 1
    local id = tostring(last - #buying + n)
    local contract = cjson.encode({contract_id = id, client_order_id = ARGV[i],
      account = ARGV[i + 1], asset = ARGV[i + 5], direction = ARGV[i + 6],
      stake_cents = tonumber(ARGV[i + 3]), bought_ms = now_ms,
      expiry_ms = now_ms + tonumber(ARGV[i + 7]) * 1000, status = 'open'})
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
"""
)

SETTLE = """
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
"""


def _cents(amount: Decimal | float | str) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


class PaperBroker:
    name: ClassVar[str] = "paper"
    capabilities: ClassVar[Capabilities] = Capabilities(
        {
            **DEFAULT_CAPABILITIES,
            "min_stake": Decimal("1"),
            "max_orders_per_request": 1000,
            "assets": {asset: asset for asset in BASE_PRICES},
        }
    )

    def __init__(self, settings: Settings) -> None:
        self.latency_s = settings.paper_latency_ms / 1000
        self.payout_rate = Decimal(str(settings.paper_payout_rate))
        self.start_cents = _cents(settings.paper_start_balance)
        self.seed = settings.price_seed
        self.redis = redis_client(settings.redis_url)
        self._buy = self.redis.register_script(BUY)
        self._settle = self.redis.register_script(SETTLE)

    def _start_cents(self, account: Account) -> int:
        start = account.credentials.get("starting_balance")
        return _cents(start) if start is not None else self.start_cents

    async def open(self, accounts: list[Account]) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    async def buy(self, orders: list[Order]) -> list[Fill]:
        await asyncio.sleep(self.latency_s)
        args: list[Any] = []
        for o in orders:
            args += [
                o.client_order_id,
                o.account.account_id,
                self._start_cents(o.account),
                _cents(o.stake),
                o.deadline_ms,
                o.asset,
                o.direction,
                o.expiry_seconds,
            ]
        try:
            replies = await self._buy(keys=[BALANCES, ORDERS, CONTRACTS, SEQUENCE], args=args)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise TemporaryBrokerError("paper ledger unreachable") from exc
        return [self._fill(o.client_order_id, r) for o, r in zip(orders, replies, strict=True)]

    def _fill(self, client_order_id: str, reply: str) -> Fill:
        if not reply.startswith("{"):
            status, reason = reply.split(":", 1)
            return Fill(client_order_id, status, reason)  # type: ignore[arg-type]
        contract = orjson.loads(reply)
        stake = Decimal(contract["stake_cents"]) / 100
        return Fill(
            client_order_id,
            "placed",
            contract_id=contract["contract_id"],
            stake=stake,
            payout=(stake * (1 + self.payout_rate)).quantize(Decimal("0.01")),
            broker_time_ms=contract["bought_ms"],
        )

    async def find_purchase(self, order: Order) -> Fill | None:
        contract_id = await self.redis.hget(ORDERS, order.client_order_id)
        if contract_id is None:
            return None
        contract = await self.redis.hget(CONTRACTS, contract_id)
        return self._fill(order.client_order_id, str(contract)) if contract else None

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        raw = await self.redis.hget(CONTRACTS, contract_id)
        if raw is None:
            return None
        contract = json.loads(raw)
        if contract["status"] == "open":
            if await self._now_ms() < contract["expiry_ms"]:
                return None
            entry = price(contract["asset"], contract["bought_ms"], self.seed)
            exit_ = price(contract["asset"], contract["expiry_ms"], self.seed)
            stake = contract["stake_cents"] / 100
            payout = float((Decimal(stake) * (1 + self.payout_rate)).quantize(Decimal("0.01")))
            result, profit = settle(contract["direction"], entry, exit_, stake, payout)
            credit = {"won": _cents(payout), "refund": contract["stake_cents"]}.get(result, 0)
            raw = await self._settle(
                keys=[CONTRACTS, BALANCES],
                args=[contract_id, result, _cents(profit), contract["expiry_ms"], credit],
            )
            contract = json.loads(raw)
        return Outcome(
            contract_id=contract_id,
            outcome=contract["status"],
            profit=Decimal(contract["profit_cents"]) / 100,
            settled_at_ms=contract["settled_ms"],
        )

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        raw = await self.redis.hmget(BALANCES, [a.account_id for a in accounts])
        return {
            a.account_id: Decimal(int(r) if r is not None else self._start_cents(a)) / 100
            for a, r in zip(accounts, raw, strict=True)
        }

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

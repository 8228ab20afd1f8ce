"""Settlement: ask the broker how each placed contract ended, once it is due, and record it once.

Placed contracts wait in ``settle:{broker}`` scored by their expiry. Any worker of that broker may
take due ones: taking one pushes its score a lease into the future instead of removing it, so a
worker that dies mid-settlement leaves it to be taken again. The record is written once per trade
(``settled:{trade}`` guards it), whoever gets there first.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from loguru import logger

from signal_hub import keys

if TYPE_CHECKING:
    from broker_workers.runtime import WorkerRuntime

TAKE_DUE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), member)
end
return due
"""

RECORD_SETTLEMENT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 172800) then
  redis.call('XADD', KEYS[3], '*', 'kind', 'settlement', 'data', ARGV[2])
  if tonumber(ARGV[3]) > 0 then
    redis.call('HINCRBYFLOAT', KEYS[4], 'loss', ARGV[3])
    redis.call('EXPIRE', KEYS[4], 172800)
  end
  return 1
end
return 0
"""

POLL_S = 0.25
TAKE_LIMIT = 200
LEASE_MS = 30_000
RETRY_OPEN_MS = 1_000


async def settlement_loop(rt: WorkerRuntime) -> None:
    take = rt.redis.register_script(TAKE_DUE)
    record = rt.redis.register_script(RECORD_SETTLEMENT)
    queue = keys.settle_queue(rt.broker)
    while True:
        try:
            due = await take(keys=[queue], args=[TAKE_LIMIT, LEASE_MS])
            if due:
                await asyncio.gather(*(_settle_one(rt, record, queue, m) for m in due))
            else:
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("settlement pass failed: {}", type(exc).__name__)
            await asyncio.sleep(POLL_S)


async def _settle_one(rt: WorkerRuntime, record: Any, queue: str, member: str) -> None:
    item = json.loads(member)
    raw_account = await rt.redis.get(keys.account(item["account_id"]))
    account = rt.account(json.loads(raw_account)) if raw_account else None
    if account is None:
        logger.error("trade {} cannot settle: its account is gone", item["trade_id"])
        return
    outcome = await rt.adapter.outcome(account, item["contract_id"])
    if outcome is None:
        await rt.redis.zadd(queue, {member: keys.now_ms() + RETRY_OPEN_MS})
        return
    settlement = {
        "signal_id": item["signal_id"],
        "trade_id": item["trade_id"],
        "channel_id": item["channel_id"],
        "subscriber_id": item["subscriber_id"],
        "contract_id": item["contract_id"],
        "outcome": outcome.outcome,
        "profit": float(outcome.profit),
        "settled_ms": outcome.settled_at_ms,
    }
    loss = -float(outcome.profit) if outcome.profit < 0 else 0.0
    await record(
        keys=[
            queue,
            keys.settled(item["trade_id"]),
            keys.RESULTS,
            keys.daily(item["subscription_id"], keys.utc_day(outcome.settled_at_ms)),
        ],
        args=[member, json.dumps(settlement, separators=(",", ":")), loss],
    )

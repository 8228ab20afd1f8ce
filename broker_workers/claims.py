"""Claims: how a worker takes subscribers of a signal, marks them sent, and records the outcome.

Each subscriber of a signal moves through ``state:{signal}`` in Redis:

    (unclaimed) -> c|worker (claimed) -> s|worker (sending) -> d (done)

Every transition is one Lua script over a whole batch, so the cost per subscriber is a few
in-server operations, and each is atomic:

- :data:`CLAIM` pops a batch from the work set and returns, in the same round trip, what the
  process phase needs (signal, subscription and account entries, today's risk counters).
- :data:`MARK_SENDING` is the last gate before the broker: it refuses the whole batch when the
  signal was cancelled or its deadline passed, refuses a worker whose heartbeat lapsed (the reaper
  may already own its claims), and counts the day's trades against ``max_trades_per_day``.
- :data:`FINISH` writes each terminal record to the results stream once: a subscriber already
  ``d`` is skipped, so a retry or a reaper racing a slow worker cannot add a second record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from signal_hub import keys

CLAIM = """
local sig = redis.call('HGETALL', KEYS[3])
if #sig == 0 then return {} end
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local prefix, worker, member_prefix, day = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local claimed, subs, accounts, daily = {}, {}, {}, {}
for _, id in ipairs(ids) do
  local state = redis.call('HGET', KEYS[2], id)
  if (not state) or state == 'r' then
    redis.call('HSET', KEYS[2], id, 'c|' .. worker)
    redis.call('SADD', KEYS[4], member_prefix .. id)
    local sub = redis.call('GET', prefix .. 'sub:' .. id)
    local account = false
    if sub then
      local account_id = cjson.decode(sub).account_id
      account = redis.call('GET', prefix .. 'acct:' .. account_id)
    end
    local counters = redis.call('HMGET', prefix .. 'daily:' .. id .. ':' .. day, 'trades', 'loss')
    claimed[#claimed + 1] = id
    subs[#subs + 1] = sub or ''
    accounts[#accounts + 1] = account or ''
    daily[#daily + 1] = (counters[1] or '0') .. '|' .. (counters[2] or '0')
  end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
return {sig, claimed, subs, accounts, daily}
"""

MARK_SENDING = """
local worker = ARGV[1]
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local verdict = 'go'
if redis.call('EXISTS', KEYS[3]) == 0 then
  verdict = 'lost'
elseif redis.call('HGET', KEYS[2], 'status') == 'cancelled' then
  verdict = 'cancelled'
elseif now_ms + tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[2], 'deadline_ms')) then
  verdict = 'expired'
end
local out = {}
for i = 3, #ARGV, 3 do
  local id, max_trades, daily_key = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local result = verdict
  if redis.call('HGET', KEYS[1], id) ~= 'c|' .. worker then
    result = 'lost'
  elseif verdict == 'go' then
    if max_trades > 0 then
      local n = redis.call('HINCRBY', daily_key, 'trades', 1)
      redis.call('EXPIRE', daily_key, 172800)
      if n > max_trades then
        redis.call('HINCRBY', daily_key, 'trades', -1)
        result = 'max_trades_per_day'
      end
    end
    if result == 'go' then redis.call('HSET', KEYS[1], id, 's|' .. worker) end
  end
  out[#out + 1] = result
end
return {out, now_ms}
"""

FINISH = """
local written, member_prefix = 0, ARGV[1]
for i = 2, #ARGV, 5 do
  local id, record, due = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local settle_member, undo_daily = ARGV[i + 3], ARGV[i + 4]
  if redis.call('HGET', KEYS[1], id) ~= 'd' then
    redis.call('HSET', KEYS[1], id, 'd')
    redis.call('XADD', KEYS[3], '*', 'kind', 'execution', 'data', record)
    if settle_member ~= '' then redis.call('ZADD', KEYS[4], tonumber(due), settle_member) end
    if undo_daily ~= '' then redis.call('HINCRBY', undo_daily, 'trades', -1) end
    written = written + 1
  end
  redis.call('SREM', KEYS[2], member_prefix .. id)
end
return written
"""


@dataclass(frozen=True, slots=True)
class SignalInfo:
    signal_id: str
    channel_id: str
    asset: str
    direction: str
    expiry_seconds: int
    created_ms: int
    deadline_ms: int
    status: str


@dataclass(frozen=True, slots=True)
class Claim:
    subscription_id: str
    subscription: dict[str, Any] | None
    account: dict[str, Any] | None
    trades_today: int
    loss_today: float


@dataclass(frozen=True, slots=True)
class Terminal:
    """One subscriber's terminal record, with what FINISH must do besides publishing it."""

    subscription_id: str
    record: dict[str, Any]
    settle_due_ms: int | None = None
    settle_member: dict[str, Any] | None = None
    undo_daily_key: str | None = None


def _signal_info(signal_id: str, flat: list[str]) -> SignalInfo:
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return SignalInfo(
        signal_id=signal_id,
        channel_id=fields["channel_id"],
        asset=fields["asset"],
        direction=fields["direction"],
        expiry_seconds=int(fields["expiry_seconds"]),
        created_ms=int(fields["created_ms"]),
        deadline_ms=int(fields["deadline_ms"]),
        status=fields["status"],
    )


def _loads(raw: str) -> dict[str, Any] | None:
    return json.loads(raw) if raw else None


class ClaimBook:
    """The claim scripts, bound to one worker of one broker."""

    def __init__(self, redis: Redis, worker_id: str, broker: str) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.broker = broker
        self._claim = redis.register_script(CLAIM)
        self._mark = redis.register_script(MARK_SENDING)
        self._finish = redis.register_script(FINISH)

    def _member_prefix(self, signal_id: str) -> str:
        return f"{signal_id}|{self.broker}|"

    async def claim(
        self, signal_id: str, count: int, day: str
    ) -> tuple[SignalInfo | None, list[Claim]]:
        reply = await self._claim(
            keys=[
                keys.work(signal_id, self.broker),
                keys.state(signal_id),
                keys.signal(signal_id),
                keys.claims(self.worker_id),
            ],
            args=[
                count,
                keys.PREFIX,
                self.worker_id,
                self._member_prefix(signal_id),
                day,
                keys.SIGNAL_TTL_S,
            ],
        )
        if not reply:
            return None, []
        flat, ids, subs, accounts, daily = reply
        claims = []
        for sub_id, sub, account, counters in zip(ids, subs, accounts, daily, strict=True):
            trades, loss = counters.split("|")
            claims.append(Claim(sub_id, _loads(sub), _loads(account), int(trades), float(loss)))
        return _signal_info(signal_id, flat), claims

    async def mark_sending(
        self, signal_id: str, items: list[tuple[str, int]], day: str, send_margin_ms: int
    ) -> tuple[list[str], int]:
        """Per item (subscription id, max trades per day or 0): ``go`` or why not; Redis' now."""
        args: list[Any] = [self.worker_id, send_margin_ms]
        for sub_id, max_trades in items:
            args += [sub_id, max_trades, keys.daily(sub_id, day)]
        verdicts, now_ms = await self._mark(
            keys=[
                keys.state(signal_id),
                keys.signal(signal_id),
                keys.worker_heartbeat(self.worker_id),
            ],
            args=args,
        )
        return list(verdicts), int(now_ms)

    async def finish(self, signal_id: str, terminals: list[Terminal]) -> int:
        """Publish each terminal record once; returns how many were new."""
        if not terminals:
            return 0
        args: list[Any] = [self._member_prefix(signal_id)]
        for t in terminals:
            args += [
                t.subscription_id,
                json.dumps(t.record, separators=(",", ":")),
                t.settle_due_ms or 0,
                json.dumps(t.settle_member, separators=(",", ":")) if t.settle_member else "",
                t.undo_daily_key or "",
            ]
        written: int = await self._finish(
            keys=[
                keys.state(signal_id),
                keys.claims(self.worker_id),
                keys.RESULTS,
                keys.settle_queue(self.broker),
            ],
            args=args,
        )
        return written

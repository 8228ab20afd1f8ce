"""Claims: how a worker takes subscribers of a signal, marks them sent, and records the outcome.

Each subscriber of a signal moves through ``state:{signal}`` in Redis:

    (unclaimed) -> c|worker (claimed) -> s|worker|stake (sending) -> d (done)

A released claim goes back to ``r`` (unclaimed again); a released sending one waits in
``orphans`` for the reaper, with its state unchanged.

Every transition is one Lua script over a whole batch, so the cost per subscriber is a few
in-server operations, and each is atomic:

- :data:`CLAIM` pops a batch from the work set and returns, in the same round trip, what the
  process phase needs (signal, subscription and account entries, today's risk counters).
- :data:`MARK_SENDING` is the last gate before the broker: it refuses the whole batch when the
  signal was cancelled or its deadline passed, refuses a worker whose heartbeat lapsed (the reaper
  may already own its claims), and counts the day's trades against ``max_trades_per_day``.
- :data:`FINISH` writes each terminal record to the results stream once, a batch's records as one
  entry (a JSON list: the relay's cost is per entry more than per record); a subscriber already
  ``d`` is skipped, so a retry or a reaper racing a slow worker cannot add a second record. A
  placed contract is remembered as recorded for its account, so reconciling another order by its
  details can never take it for its own.
- :data:`RELEASE` gives up a worker's claims: claimed-but-unsent ones go back to the work set (or
  end ``skipped`` when the deadline or a cancel leaves nothing to do), sending ones - maybe bought,
  maybe not - go to ``orphans`` for the reaper to reconcile with the broker after the deadline,
  when no one can buy them any more. A worker releases its own leftovers at the end of a drain
  job; the reaper releases the claims of a worker whose heartbeat lapsed.

Every script is safe to run twice (redis-py retries a command whose connection broke, and the
first run may have happened): a repeated claim leaves the first batch to :data:`RELEASE`, a
repeated gate answers ``go`` again without counting twice, a repeated finish writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.lua import BATCHED, END_UNSENT, NOW_MS

CLAIM = (
    BATCHED
    + """
local sig = redis.call('HGETALL', KEYS[3])
if #sig == 0 then return {} end
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
local prefix, worker, member_prefix, day = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local claimed, subs, accounts, daily = {}, {}, {}, {}
if #ids == 0 then return {sig, claimed, subs, accounts, daily} end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[2], ...) end)
local owned, members, sub_keys = {}, {}, {}
for i, id in ipairs(ids) do
  if (not states[i]) or states[i] == 'r' then
    claimed[#claimed + 1] = id
    owned[#owned + 1] = id
    owned[#owned + 1] = 'c|' .. worker
    members[#members + 1] = member_prefix .. id
    sub_keys[#sub_keys + 1] = prefix .. 'sub:' .. id
  end
end
if #claimed > 0 then
  each_chunk(owned, function(...) redis.call('HSET', KEYS[2], ...) end)
  each_chunk(members, function(...) redis.call('SADD', KEYS[4], ...) end)
  local entries = gather(sub_keys, function(...) return redis.call('MGET', ...) end)
  local account_keys, account_of = {}, {}
  for i, entry in ipairs(entries) do
    local counters = {}
    if entry then
      local sub = cjson.decode(entry)
      account_keys[#account_keys + 1] = prefix .. 'acct:' .. sub.account_id
      account_of[i] = #account_keys
      -- the day's counters matter only to a subscription with limits
      if type(sub.limits) == 'table' and next(sub.limits) ~= nil then
        counters = redis.call('HMGET', prefix .. 'daily:' .. claimed[i] .. ':' .. day,
          'trades', 'loss')
      end
    end
    subs[i] = entry or ''
    daily[i] = (counters[1] or '0') .. '|' .. (counters[2] or '0')
  end
  local found = gather(account_keys, function(...) return redis.call('MGET', ...) end)
  for i = 1, #claimed do
    accounts[i] = (account_of[i] and found[account_of[i]]) or ''
  end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
return {sig, claimed, subs, accounts, daily}
"""
)

MARK_SENDING = (
    BATCHED
    + """
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
local ids = {}
for i = 3, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local out, sending_now = {}, {}
if #ids == 0 then return {out, now_ms} end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[1], ...) end)
for j, id in ipairs(ids) do
  local i = 3 + (j - 1) * 4
  local max_trades, daily_key = tonumber(ARGV[i + 1]), ARGV[i + 2]
  local sending = 's|' .. worker .. '|' .. ARGV[i + 3]
  local state = states[j]
  local result = verdict
  if state == sending and verdict == 'go' then
    result = 'go'  -- this very call, retried after its answer was lost: already counted
  elseif state ~= 'c|' .. worker then
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
    if result == 'go' then
      sending_now[#sending_now + 1] = id
      sending_now[#sending_now + 1] = sending
    end
  end
  out[j] = result
end
if #sending_now > 0 then
  each_chunk(sending_now, function(...) redis.call('HSET', KEYS[1], ...) end)
end
return {out, now_ms}
"""
)

FINISH = (
    BATCHED
    + """
local member_prefix, ids = ARGV[1], {}
for i = 2, #ARGV, 7 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
local states = gather(ids, function(...) return redis.call('HMGET', KEYS[1], ...) end)
local records, members, done, settle, seen = {}, {}, {}, {}, {}
for j, id in ipairs(ids) do
  local i = 2 + (j - 1) * 7
  local record, due, settle_member = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local recorded, contract_id, undo_daily = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  if states[j] ~= 'd' and not seen[id] then
    seen[id] = true
    done[#done + 1] = id
    done[#done + 1] = 'd'
    records[#records + 1] = record
    if settle_member ~= '' then
      settle[#settle + 1] = due
      settle[#settle + 1] = settle_member
    end
    if recorded ~= '' then
      redis.call('SADD', recorded, contract_id)
      redis.call('EXPIRE', recorded, 86400)
    end
    if undo_daily ~= '' then redis.call('HINCRBY', undo_daily, 'trades', -1) end
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
"""
)

RELEASE = (
    NOW_MS
    + END_UNSENT
    + """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {} end
local worker, prefix, margin, after = ARGV[1], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local only_signal = ARGV[6]
local now = now_ms()
local sending = 's|' .. worker .. '|'
local redrive, seen = {}, {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local signal_id, broker, id = string.match(member, '^([^|]+)|([^|]+)|(.+)$')
  if signal_id and (only_signal == '' or only_signal == signal_id) then
    local sig = hash_of(redis.call('HGETALL', prefix .. 'sig:' .. signal_id))
    local state = redis.call('HGET', prefix .. 'state:' .. signal_id, id) or ''
    if sig.deadline_ms == nil then
      -- the signal is gone (expired keys): nothing left to do for it
    elseif state == 'c|' .. worker then
      local deadline = tonumber(sig.deadline_ms)
      if sig.status == 'cancelled' then
        end_unsent(prefix, signal_id, sig, id, broker, 'cancelled', now, KEYS[3])
      elseif now + margin > deadline then
        end_unsent(prefix, signal_id, sig, id, broker, 'expired', now, KEYS[3])
      else
        redis.call('HSET', prefix .. 'state:' .. signal_id, id, 'r')
        redis.call('SADD', prefix .. 'work:' .. signal_id .. ':' .. broker, id)
        redis.call('ZADD', KEYS[5], deadline, signal_id .. '|' .. broker)
        if not seen[signal_id .. '|' .. broker] then
          seen[signal_id .. '|' .. broker] = true
          redrive[#redrive + 1] = signal_id .. '|' .. broker
        end
      end
    elseif string.sub(state, 1, #sending) == sending then
      redis.call('ZADD', KEYS[4], tonumber(sig.deadline_ms) + after, member)
    end
    redis.call('SREM', KEYS[1], member)
  end
end
return redrive
"""
)


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
    return signal_info(signal_id, dict(zip(flat[::2], flat[1::2], strict=True)))


def signal_info(signal_id: str, fields: dict[str, str]) -> SignalInfo:
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
    return orjson.loads(raw) if raw else None


class ClaimBook:
    """The claim scripts, bound to one worker of one broker."""

    def __init__(
        self, redis: Redis, worker_id: str, broker: str, *, remember_contracts: bool = True
    ) -> None:
        """``remember_contracts``: keep each account's recorded contracts (see :data:`FINISH`),
        which only a broker whose purchases are found by their details needs."""
        self.redis = redis
        self.worker_id = worker_id
        self.broker = broker
        self.remember_contracts = remember_contracts
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
        self, signal_id: str, items: list[tuple[str, int, str]], day: str, send_margin_ms: int
    ) -> tuple[list[str], int]:
        """Per item (subscription id, max trades per day or 0, stake): ``go`` or why not; and
        Redis' clock. The stake is kept in the state, for the reaper to reconcile with."""
        args: list[Any] = [self.worker_id, send_margin_ms]
        for sub_id, max_trades, stake in items:
            args += [sub_id, max_trades, keys.daily(sub_id, day), stake]
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
        remember = self.remember_contracts
        for t in terminals:
            placed = t.settle_member
            args += [
                t.subscription_id,
                orjson.dumps(t.record),
                t.settle_due_ms or 0,
                orjson.dumps(placed) if placed else "",
                keys.recorded_contracts(placed["account_id"]) if placed and remember else "",
                placed["contract_id"] if placed else "",
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


async def release(
    redis: Redis,
    worker_id: str,
    *,
    only_if_dead: bool,
    send_margin_ms: int,
    reconcile_after_ms: int,
    signal_id: str = "",
) -> list[tuple[str, str]]:
    """Give up ``worker_id``'s claims (of ``signal_id`` only, when given); returns the
    (signal, broker) pairs whose work set got subscribers back and needs a drain job.

    ``only_if_dead``: do nothing while the worker's heartbeat lives (the reaper's call).
    """
    script = redis.register_script(RELEASE)
    redrive: list[str] = await script(
        keys=[
            keys.claims(worker_id),
            keys.worker_heartbeat(worker_id),
            keys.RESULTS,
            keys.ORPHANS,
            keys.ACTIVE,
        ],
        args=[
            worker_id,
            "1" if only_if_dead else "0",
            keys.PREFIX,
            send_margin_ms,
            reconcile_after_ms,
            signal_id,
        ],
    )
    pairs = [member.split("|", 1) for member in redrive]
    return [(signal, broker) for signal, broker in pairs]


async def recorded_contracts(redis: Redis, account_id: str) -> frozenset[str]:
    """Contract ids already recorded for trades of ``account_id`` (see :data:`FINISH`)."""
    members: Any = await redis.smembers(keys.recorded_contracts(account_id))
    return frozenset(str(m) for m in members)

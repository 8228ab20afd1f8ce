"""Signal intake: validate, authorize, stamp the deadline, expand, dispatch.

The whole decision is one Lua script in Redis (:data:`EXPAND`): the resend check, the sender's
right to the channel, the deadline from the channel's delay budget, the copy of each broker's
subscriber set into that signal's work set (server-side, no per-subscriber round trip: the spare
copy made after the previous signal is renamed in O(1), else ``COPY``), the signal record and the
``signal`` entry on the results stream that the relay persists. Then drain jobs go to each
broker's RQ queue, after the acknowledgement is on its way (a hub that dies in between leaves the
work to the reaper's redrive), and once the work is claimed the next spare copies are made. The
acknowledgement counts exactly what was expanded.

A signal with ``at`` is only recorded (``scheduled``) and put in the ``scheduled`` set; the
scheduler of any hub fires it at that instant through the same script, which checks the sender's
rights again and expands the channel as it is then. Its deadline counts from ``at``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from loguru import logger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from signal_hub import keys
from signal_hub.dispatch import Dispatcher
from signal_hub.errors import ApiError, Forbidden, NotFound, ValidationFailed
from signal_hub.store import new_id
from signal_hub.validation import validate

KNOWN_ASSETS_NOTE = "see GET /api/assets"

EXPAND = """
local mode, dedupe_key, signal_id = ARGV[10], KEYS[4], ARGV[1]
-- who may send is checked before anything is answered, a resend's old answer included: a
-- removed trader must get neither a new signal nor the acknowledgement of an old one
local raw = redis.call('GET', KEYS[1])
local chan = raw and cjson.decode(raw)
local function refusal()
  if not chan then return 'channel_not_found' end
  for _, sender in ipairs(chan.senders) do
    if sender == ARGV[3] then return nil end
  end
  return 'forbidden'
end
if mode ~= 'fire' and refusal() then return {'err', refusal()} end
if mode == 'fire' then
  if redis.call('ZREM', KEYS[7], signal_id) == 0 then
    if redis.call('HGET', KEYS[3], 'status') == 'active' then
      return {'dup', redis.call('HGET', KEYS[3], 'ack')}
    end
    return {'gone', ''}
  end
else
  if dedupe_key ~= '' then
    local previous = redis.call('GET', dedupe_key)
    if previous then return {'dup', previous} end
  end
  -- the same call again (redis-py retried it after its answer was lost): the same answer
  local previous = redis.call('HGET', KEYS[3], 'ack')
  if previous then return {'ok', previous} end
end
if refusal() then return {'err', refusal()} end
if type(chan.assets) == 'table' and #chan.assets > 0 then
  local listed = false
  for _, asset in ipairs(chan.assets) do
    if asset == ARGV[4] then listed = true end
  end
  if not listed then return {'err', 'asset_not_allowed'} end
end
local channel_id, prefix, ttl = ARGV[2], ARGV[9], tonumber(ARGV[8])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local record = {id = signal_id, channel_id = channel_id, sender_id = ARGV[3], asset = ARGV[4],
  direction = ARGV[5], expiry_seconds = tonumber(ARGV[6]), client_signal_id = ARGV[7]}
if ARGV[11] ~= '' then record.scheduled_ms = tonumber(ARGV[11]) end
redis.call('HSET', KEYS[3], 'channel_id', channel_id, 'sender_id', ARGV[3], 'asset', ARGV[4],
  'direction', ARGV[5], 'expiry_seconds', ARGV[6], 'client_signal_id', ARGV[7],
  'scheduled_ms', ARGV[11])
redis.call('EXPIRE', KEYS[3], ttl)
local ack
if mode == 'schedule' then
  redis.call('ZADD', KEYS[7], tonumber(ARGV[11]), signal_id)
  redis.call('HSET', KEYS[3], 'status', 'scheduled', 'created_ms', now_ms)
  record.status, record.created_ms = 'scheduled', now_ms
  record.fanout = {total = 0, by_broker = {}}
  ack = cjson.encode({ok = true, signal_id = signal_id, status = 'scheduled',
    scheduled_ms = record.scheduled_ms, fanout = record.fanout})
else
  -- a scheduled signal is due at its instant, however late the scheduler fires it
  local created_ms = now_ms
  if mode == 'fire' then created_ms = tonumber(ARGV[11]) end
  local deadline_ms = created_ms + tonumber(chan.max_signal_delay_ms)
  local by_broker, brokers, total = {}, {}, 0
  for _, broker in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local work = prefix .. 'work:' .. signal_id .. ':' .. broker
    local spare = prefix .. 'dirspare:' .. channel_id .. ':' .. broker
    local n = 0
    local taken = redis.call('EXISTS', spare) == 1
    if taken then
      redis.call('RENAME', spare, work)  -- O(1): the copy was made after the previous signal
    else
      taken = redis.call('COPY', prefix .. 'dir:' .. channel_id .. ':' .. broker, work) == 1
    end
    if taken then
      n = redis.call('SCARD', work)
      redis.call('EXPIRE', work, ttl)
      redis.call('ZADD', KEYS[6], deadline_ms, signal_id .. '|' .. broker)
    end
    if n > 0 then
      by_broker[broker] = n
      brokers[#brokers + 1] = broker
    end
    total = total + n
  end
  redis.call('HSET', KEYS[3], 'created_ms', created_ms, 'deadline_ms', deadline_ms,
    'status', 'active', 'total', total, 'brokers', table.concat(brokers, ','))
  record.status, record.created_ms, record.deadline_ms = 'active', created_ms, deadline_ms
  record.fanout = {total = total, by_broker = by_broker}
  ack = cjson.encode({ok = true, signal_id = signal_id, deadline_ms = deadline_ms,
    fanout = record.fanout})
end
redis.call('HSET', KEYS[3], 'ack', ack)
if dedupe_key ~= '' then redis.call('SET', dedupe_key, ack, 'EX', ttl) end
redis.call('XADD', KEYS[5], '*', 'kind', 'signal', 'data', cjson.encode(record))
return {'ok', ack}
"""

# A spare copy of each of the channel's directory sets, for the next expansion to rename into its
# work set: COPY is O(subscribers) inside the expansion (16 ms for 50,000, on the ack's path and
# with Redis serving no one else meanwhile), RENAME is O(1). A spare exists only while it equals
# its set: every change of the set deletes it in the same transaction (directory.py).
SPARE = """
for _, broker in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local spare = ARGV[1] .. 'dirspare:' .. ARGV[2] .. ':' .. broker
  if redis.call('EXISTS', spare) == 0 then
    redis.call('COPY', ARGV[1] .. 'dir:' .. ARGV[2] .. ':' .. broker, spare)
  end
end
"""
SPARE_POLL_S = 0.1

_EXPAND_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "channel_not_found": (NotFound, "No such channel."),
    "forbidden": (Forbidden, "You may not send signals to this channel."),
    "asset_not_allowed": (ValidationFailed, "This channel does not trade that asset."),
}


class SignalIn(BaseModel):
    """A provider's signal as sent over Socket.IO."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel_id: str = Field(min_length=1, max_length=64)
    asset: str = Field(min_length=1, max_length=32)
    direction: Literal["CALL", "PUT"]
    expiry_seconds: int = Field(ge=15, le=24 * 3600)
    client_signal_id: str | None = Field(default=None, min_length=1, max_length=128)
    at: AwareDatetime | None = None


# An ``at`` this little in the past is "now" (clocks differ); further back it is a mistake.
AT_PAST_TOLERANCE_MS = 1000


def parse_signal(payload: Any, tradable_assets: set[str]) -> SignalIn:
    signal = validate(SignalIn, payload, "{channel_id, asset, direction, expiry_seconds, at?}")
    if signal.asset not in tradable_assets:
        raise ValidationFailed(
            f"Unknown asset {signal.asset!r}; {KNOWN_ASSETS_NOTE}.", "unknown_asset"
        )
    return signal


def scheduled_ms(signal: SignalIn, max_ahead_s: int) -> int | None:
    """The instant (ms) to fan ``signal`` out at, or ``None`` for now."""
    if signal.at is None:
        return None
    at_ms = int(signal.at.timestamp() * 1000)
    now = keys.now_ms()
    if at_ms < now - AT_PAST_TOLERANCE_MS:
        raise ValidationFailed("at: the instant has passed; send without at to trade now.")
    if at_ms > now + max_ahead_s * 1000:
        raise ValidationFailed(f"at: at most {max_ahead_s} seconds ahead.")
    return at_ms if at_ms > now else None


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Intake:
    def __init__(
        self,
        redis: Redis,
        dispatcher: Dispatcher,
        tradable_assets: set[str],
        schedule_max_ahead_s: int = 24 * 3600,
    ) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self.tradable_assets = tradable_assets
        self.schedule_max_ahead_s = schedule_max_ahead_s
        self._expand = redis.register_script(EXPAND)
        self._spare = redis.register_script(SPARE)
        self._tasks: set[asyncio.Task[None]] = set()  # started after an ack

    async def submit(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Validate and fan out (or schedule) one signal; return the acknowledgement, or raise
        ApiError. Drain jobs are enqueued right after, not before the acknowledgement."""
        signal = parse_signal(payload, self.tradable_assets)
        at_ms = scheduled_ms(signal, self.schedule_max_ahead_s)
        dedupe_key = (
            keys.dedupe(signal.channel_id, sender_id, signal.client_signal_id)
            if signal.client_signal_id
            else ""
        )
        fields = {
            "channel_id": signal.channel_id,
            "sender_id": sender_id,
            "asset": signal.asset,
            "direction": signal.direction,
            "expiry_seconds": str(signal.expiry_seconds),
            "client_signal_id": signal.client_signal_id or "",
        }
        mode = "now" if at_ms is None else "schedule"
        status, ack = await self._run(new_id(), fields, mode, at_ms, dedupe_key)
        if status == "ok" and mode == "now":
            self._dispatch_soon(signal.channel_id, ack)
        if "scheduled_ms" in ack:
            ack["at"] = iso(ack["scheduled_ms"])
        return ack

    async def fire(self, signal_id: str) -> dict[str, Any] | None:
        """Fan out a scheduled signal that is due; ``None`` if it was cancelled, fired by another
        hub, or its sender may no longer send to the channel (then it ends ``rejected``)."""
        fields: dict[str, str] = await self.redis.hgetall(keys.signal(signal_id))  # type: ignore[assignment]
        if fields.get("status") != "scheduled":
            await self.redis.zrem(keys.SCHEDULED, signal_id)
            return None
        at_ms = int(fields["scheduled_ms"])
        try:
            status, ack = await self._run(signal_id, fields, "fire", at_ms, "")
        except ApiError as exc:
            logger.warning("scheduled signal {} not fired: {}", signal_id, exc.code)
            await self._reject(signal_id, fields["channel_id"], exc.code)
            return None
        if status == "gone":
            return None
        self._dispatch_soon(fields["channel_id"], ack)
        return ack

    async def _run(
        self, signal_id: str, fields: dict[str, str], mode: str, at_ms: int | None, dedupe: str
    ) -> tuple[str, dict[str, Any]]:
        status, body = await self._expand(
            keys=[
                keys.channel(fields["channel_id"]),
                keys.directory_brokers(fields["channel_id"]),
                keys.signal(signal_id),
                dedupe,
                keys.RESULTS,
                keys.ACTIVE,
                keys.SCHEDULED,
            ],
            args=[
                signal_id,
                fields["channel_id"],
                fields["sender_id"],
                fields["asset"],
                fields["direction"],
                fields["expiry_seconds"],
                fields.get("client_signal_id", ""),
                keys.SIGNAL_TTL_S,
                keys.PREFIX,
                mode,
                "" if at_ms is None else at_ms,
            ],
        )
        if status == "err":
            error_type, message = _EXPAND_ERRORS[body]
            raise error_type(message, body)
        return status, json.loads(body) if body else {}

    async def _reject(self, signal_id: str, channel_id: str, reason: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.SCHEDULED, signal_id)
            pipe.hset(keys.signal(signal_id), "status", "rejected")
            record = {
                "signal_id": signal_id,
                "channel_id": channel_id,
                "status": "rejected",
                "reason": reason,
            }
            pipe.xadd(keys.RESULTS, {"kind": "signal_status", "data": json.dumps(record)})
            await pipe.execute()

    def _dispatch_soon(self, channel_id: str, ack: dict[str, Any]) -> None:
        if not ack["fanout"]["total"]:
            return
        self._background(
            self.dispatcher.dispatch(ack["signal_id"], ack["fanout"]["by_broker"]),
            "drain jobs not enqueued; the reaper redrives them",
        )
        self._background(
            self.prepare_spares(
                channel_id, ack["signal_id"], list(ack["fanout"]["by_broker"]), ack["deadline_ms"]
            ),
            "spare directory copies not made; the next signal copies the sets itself",
        )

    async def prepare_spares(
        self, channel_id: str, signal_id: str, brokers: list[str], deadline_ms: int
    ) -> None:
        """Copy the channel's directory sets for its next signal once this one's work sets (on
        ``brokers``, those its ack counted) are empty (all claimed) or its deadline has passed: a
        copy made sooner would take Redis from the workers just when they start."""
        work = [keys.work(signal_id, broker) for broker in brokers]
        while keys.now_ms() < deadline_ms:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in work:
                    pipe.scard(key)
                if not any(await pipe.execute()):
                    break
            await asyncio.sleep(SPARE_POLL_S)
        await self._spare(keys=[keys.directory_brokers(channel_id)], args=[keys.PREFIX, channel_id])

    def _background(self, work: Coroutine[Any, Any, None], on_failure: str) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, on_failure))

    def _done(self, on_failure: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error(on_failure)

    async def close(self) -> None:
        """Stop the work started after acks (a drain job not yet enqueued is the reaper's)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

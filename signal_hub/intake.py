"""Signal intake: validate, authorize, stamp the deadline, expand, dispatch.

The whole decision is one Lua script in Redis (:data:`EXPAND`): the resend check, the sender's
right to the channel, the deadline from the channel's delay budget, the copy of each broker's
subscriber set into that signal's work set (``COPY``, server-side, no per-subscriber round trip),
the signal record and the ``signal`` entry on the results stream that the relay persists. Then
drain jobs go to each broker's RQ queue. The acknowledgement counts exactly what was expanded.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import Queue, Worker

from broker_workers.drain import drain_job
from signal_hub import keys
from signal_hub.errors import ApiError, Forbidden, NotFound, ValidationFailed
from signal_hub.store import new_id
from signal_hub.validation import validate

KNOWN_ASSETS_NOTE = "see GET /api/assets"

EXPAND = """
local dedupe_key = KEYS[4]
if dedupe_key ~= '' then
  local previous = redis.call('GET', dedupe_key)
  if previous then return {'dup', previous} end
end
local raw = redis.call('GET', KEYS[1])
if not raw then return {'err', 'channel_not_found'} end
local chan = cjson.decode(raw)
local allowed = false
for _, sender in ipairs(chan.senders) do
  if sender == ARGV[3] then allowed = true end
end
if not allowed then return {'err', 'forbidden'} end
if type(chan.assets) == 'table' and #chan.assets > 0 then
  local listed = false
  for _, asset in ipairs(chan.assets) do
    if asset == ARGV[4] then listed = true end
  end
  if not listed then return {'err', 'asset_not_allowed'} end
end
local signal_id, channel_id, prefix, ttl = ARGV[1], ARGV[2], ARGV[9], tonumber(ARGV[8])
local now = redis.call('TIME')
local created_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local deadline_ms = created_ms + tonumber(chan.max_signal_delay_ms)
local by_broker, brokers, total = {}, {}, 0
for _, broker in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local work = prefix .. 'work:' .. signal_id .. ':' .. broker
  local n = 0
  if redis.call('COPY', prefix .. 'dir:' .. channel_id .. ':' .. broker, work) == 1 then
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
redis.call('HSET', KEYS[3], 'channel_id', channel_id, 'sender_id', ARGV[3], 'asset', ARGV[4],
  'direction', ARGV[5], 'expiry_seconds', ARGV[6], 'created_ms', created_ms,
  'deadline_ms', deadline_ms, 'status', 'active', 'total', total,
  'brokers', table.concat(brokers, ','))
redis.call('EXPIRE', KEYS[3], ttl)
local ack = cjson.encode({ok = true, signal_id = signal_id, deadline_ms = deadline_ms,
  fanout = {total = total, by_broker = by_broker}})
if dedupe_key ~= '' then redis.call('SET', dedupe_key, ack, 'EX', ttl) end
local record = cjson.encode({id = signal_id, channel_id = channel_id, sender_id = ARGV[3],
  asset = ARGV[4], direction = ARGV[5], expiry_seconds = tonumber(ARGV[6]),
  client_signal_id = ARGV[7], created_ms = created_ms, deadline_ms = deadline_ms,
  fanout = {total = total, by_broker = by_broker}, status = 'active'})
redis.call('XADD', KEYS[5], '*', 'kind', 'signal', 'data', record)
return {'ok', ack}
"""

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


def parse_signal(payload: Any, tradable_assets: set[str]) -> SignalIn:
    signal = validate(SignalIn, payload, "{channel_id, asset, direction, expiry_seconds}")
    if signal.asset not in tradable_assets:
        raise ValidationFailed(
            f"Unknown asset {signal.asset!r}; {KNOWN_ASSETS_NOTE}.", "unknown_asset"
        )
    return signal


@dataclass
class Dispatcher:
    """Enqueues drain jobs on the RQ queue of each broker that has work for a signal.

    Several drain jobs per broker let every worker of the pool take part; each job then pops
    subscribers in batches until the work set is empty, so a surplus job costs one empty pop.
    """

    redis_url: str
    batch_size: int
    worker_count_ttl_s: float = 2.0

    def __post_init__(self) -> None:
        self._redis = SyncRedis.from_url(self.redis_url)
        self._queues: dict[str, Queue] = {}
        self._worker_counts: dict[str, tuple[float, int]] = {}

    def _queue(self, broker: str) -> Queue:
        if broker not in self._queues:
            self._queues[broker] = Queue(keys.queue_name(broker), connection=self._redis)
        return self._queues[broker]

    def _workers(self, broker: str) -> int:
        now = time.monotonic()
        cached = self._worker_counts.get(broker)
        if cached and now - cached[0] < self.worker_count_ttl_s:
            return cached[1]
        count = Worker.count(connection=self._redis, queue=self._queue(broker))
        self._worker_counts[broker] = (now, count)
        return count

    def dispatch_sync(self, signal_id: str, by_broker: dict[str, int]) -> None:
        for broker, n in by_broker.items():
            jobs = max(1, min(math.ceil(n / self.batch_size), self._workers(broker)))
            queue = self._queue(broker)
            queue.enqueue_many(
                [
                    Queue.prepare_data(
                        drain_job,
                        args=(signal_id, broker),
                        job_id=f"drain-{signal_id}-{broker}-{i}",
                        result_ttl=0,
                        failure_ttl=24 * 3600,
                        timeout=300,
                        description=f"drain {signal_id} on {broker}",
                    )
                    for i in range(jobs)
                ]
            )

    async def dispatch(self, signal_id: str, by_broker: dict[str, int]) -> None:
        await anyio.to_thread.run_sync(self.dispatch_sync, signal_id, by_broker)

    def close(self) -> None:
        self._redis.close()


class Intake:
    def __init__(
        self,
        redis: Redis,
        dispatcher: Dispatcher,
        tradable_assets: set[str],
    ) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self.tradable_assets = tradable_assets
        self._expand = redis.register_script(EXPAND)

    async def submit(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Validate and fan out one signal; return the acknowledgement (or raise ApiError)."""
        signal = parse_signal(payload, self.tradable_assets)
        signal_id = new_id()
        dedupe_key = (
            keys.dedupe(signal.channel_id, sender_id, signal.client_signal_id)
            if signal.client_signal_id
            else ""
        )
        status, body = await self._expand(
            keys=[
                keys.channel(signal.channel_id),
                keys.directory_brokers(signal.channel_id),
                keys.signal(signal_id),
                dedupe_key,
                keys.RESULTS,
                keys.ACTIVE,
            ],
            args=[
                signal_id,
                signal.channel_id,
                sender_id,
                signal.asset,
                signal.direction,
                signal.expiry_seconds,
                signal.client_signal_id or "",
                keys.SIGNAL_TTL_S,
                keys.PREFIX,
            ],
        )
        if status == "err":
            error_type, message = _EXPAND_ERRORS[body]
            raise error_type(message, body)
        ack: dict[str, Any] = json.loads(body)
        if status == "ok" and ack["fanout"]["total"]:
            await self.dispatcher.dispatch(signal_id, ack["fanout"]["by_broker"])
        return ack

"""Signal intake: validate, authorize, stamp the deadline, expand, dispatch.

The whole decision is one Lua script in Redis (``core/lua/expand.lua``): the resend check, the
sender's right to the channel, the deadline from the channel's delay budget, the copy of each
broker's subscriber set into that signal's work set (server-side, no per-subscriber round trip:
the spare copy made after the previous signal is renamed in O(1), else ``COPY``), the signal
record and the ``signal`` entry on the results stream that the relay persists. Then drain jobs
go to each broker's RQ queue, after the acknowledgement is on its way (a hub that dies in between
leaves the work to the reaper's redrive), and once the work is claimed the next spare copies are
made. The acknowledgement counts exactly what was expanded.

A signal with ``at`` is only recorded (``scheduled``) and put in the ``scheduled`` set; the
scheduler of any hub fires it at that instant (``fire.lua``), which checks the sender's rights
again and expands the channel as it is then. Its deadline counts from ``at``.

With several hot-path shards (:mod:`core.shards`) the same decision takes three steps, each safe
to repeat (:func:`core.scripts.expand_sharded`): the checks and the deadline on the home shard, the
fan-out on every shard at once, the acknowledgement with the sum on the home shard; then each
shard's drain jobs, named by their shard.

The expiry a signal may have is the range its brokers offer together (each broker's
``min_expiry_s``..``max_expiry_s``); a subscriber on a broker that does not offer it is refused by
its worker.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Coroutine
from typing import Any, Literal

from loguru import logger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from core import keys, scripts
from core.brokers import Capabilities
from core.clock import iso, now_ms
from core.dispatch import Dispatcher
from core.shards import Shards, unsharded
from signal_hub import metrics
from signal_hub.errors import ApiError, Forbidden, NotFound, ValidationFailed
from signal_hub.store import new_id
from signal_hub.validation import validate

KNOWN_ASSETS_NOTE = "see GET /api/assets"

SPARE_POLL_S = 0.1

_EXPAND_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "channel_not_found": (NotFound, "No such channel."),
    "forbidden": (Forbidden, "You may not send signals to this channel."),
    "channel_suspended": (
        Forbidden,
        "This channel is suspended by the operators: its signals are refused.",
    ),
    "asset_not_allowed": (ValidationFailed, "This channel does not trade that asset."),
}


class SignalIn(BaseModel):
    """A provider's signal as sent over Socket.IO."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel_id: str = Field(min_length=1, max_length=64)
    asset: str = Field(min_length=1, max_length=32)
    direction: Literal["CALL", "PUT"]
    expiry_seconds: int
    client_signal_id: str | None = Field(default=None, min_length=1, max_length=128)
    at: AwareDatetime | None = None


# An ``at`` this little in the past is "now" (clocks differ); further back it is a mistake.
AT_PAST_TOLERANCE_MS = 1000


def parse_signal(payload: Any, brokers: dict[str, Capabilities]) -> SignalIn:
    """``payload`` as a signal some broker of ``brokers`` can trade, or ValidationFailed."""
    signal = validate(SignalIn, payload, "{channel_id, asset, direction, expiry_seconds, at?}")
    if not any(signal.asset in caps["assets"] for caps in brokers.values()):
        raise ValidationFailed(
            f"Unknown asset {signal.asset!r}; {KNOWN_ASSETS_NOTE}.", "unknown_asset"
        )
    shortest = min(caps["min_expiry_s"] for caps in brokers.values())
    longest = max(caps["max_expiry_s"] for caps in brokers.values())
    if not shortest <= signal.expiry_seconds <= longest:
        raise ValidationFailed(
            f"Invalid input: expiry_seconds: from {shortest} to {longest} seconds."
        )
    return signal


def scheduled_ms(signal: SignalIn, max_ahead_s: int) -> int | None:
    """The instant (ms) to fan ``signal`` out at, or ``None`` for now."""
    if signal.at is None:
        return None
    at_ms = int(signal.at.timestamp() * 1000)
    now = now_ms()
    if at_ms < now - AT_PAST_TOLERANCE_MS:
        raise ValidationFailed("at: the instant has passed; send without at to trade now.")
    if at_ms > now + max_ahead_s * 1000:
        raise ValidationFailed(f"at: at most {max_ahead_s} seconds ahead.")
    return at_ms if at_ms > now else None


class Intake:
    def __init__(
        self,
        redis: Redis,
        dispatcher: Dispatcher,
        brokers: dict[str, Capabilities],
        schedule_max_ahead_s: int,
        shards: Shards | None = None,
    ) -> None:
        self.redis = redis
        self.shards = shards or unsharded(redis)
        self.dispatcher = dispatcher
        self.brokers = brokers  # those this deployment offers (BROKERS)
        self.schedule_max_ahead_s = schedule_max_ahead_s
        self._tasks: set[asyncio.Task[None]] = set()  # started after an ack

    async def submit(self, sender_id: str, payload: Any) -> dict[str, Any]:
        """Validate and fan out (or schedule) one signal; return the acknowledgement, or raise
        ApiError. Drain jobs are enqueued right after, not before the acknowledgement."""
        signal = parse_signal(payload, self.brokers)
        at_ms = scheduled_ms(signal, self.schedule_max_ahead_s)
        new = scripts.NewSignal(
            signal_id=new_id(),
            channel_id=signal.channel_id,
            sender_id=sender_id,
            asset=signal.asset,
            direction=signal.direction,
            expiry_seconds=signal.expiry_seconds,
            client_signal_id=signal.client_signal_id or "",
        )
        home = self.shards.home
        if at_ms is None and self.shards.sharded:
            sharded = await scripts.expand_sharded(self.shards, new, list(self.brokers))
            status, ack = _answer(sharded.answer)
            if status == "ok":
                self._dispatch_soon(signal.channel_id, ack, sharded.by_shard)
        elif at_ms is None:
            status, ack = _answer(await scripts.expand(self.redis, new, list(self.brokers)))
            if status == "ok":
                self._dispatch_soon(signal.channel_id, ack)
        else:
            status, ack = _answer(await scripts.schedule(home, new, at_ms))
        if "scheduled_ms" in ack:
            ack["at"] = iso(ack["scheduled_ms"])
        _taken(status, signal.channel_id, ack, at_ms is not None)
        return ack

    async def fire(self, signal_id: str) -> dict[str, Any] | None:
        """Fan out a scheduled signal that is due; ``None`` if it was cancelled, fired by another
        hub, or its sender may no longer send to the channel (then it ends ``rejected``)."""
        home = self.shards.home
        fields: dict[str, str] = await home.redis.hgetall(home.key(keys.signal(signal_id)))  # type: ignore[assignment]
        if fields.get("status") not in ("scheduled", "expanding"):
            await home.redis.zrem(home.key(keys.SCHEDULED), signal_id)
            return None
        new = scripts.NewSignal(
            signal_id=signal_id,
            channel_id=fields["channel_id"],
            sender_id=fields["sender_id"],
            asset=fields["asset"],
            direction=fields["direction"],
            expiry_seconds=int(fields["expiry_seconds"]),
            client_signal_id=fields.get("client_signal_id", ""),
        )
        by_shard: dict[int, dict[str, int]] | None = None
        if self.shards.sharded:
            sharded = await scripts.expand_sharded(
                self.shards, new, list(self.brokers), int(fields["scheduled_ms"])
            )
            answer, by_shard = sharded.answer, sharded.by_shard
        else:
            answer = await scripts.fire(
                self.redis, new, int(fields["scheduled_ms"]), list(self.brokers)
            )
        try:
            status, ack = _answer(answer)
        except ApiError as exc:
            logger.warning("scheduled signal {} not fired: {}", signal_id, exc.code)
            await self._reject(signal_id, fields["channel_id"], exc.code)
            return None
        if status in ("gone", "dup"):  # cancelled, or another hub's scheduler fired it first
            return None
        self._dispatch_soon(fields["channel_id"], ack, by_shard)
        return ack

    async def _reject(self, signal_id: str, channel_id: str, reason: str) -> None:
        home = self.shards.home
        async with home.redis.pipeline(transaction=not home.cluster) as pipe:
            pipe.zrem(home.key(keys.SCHEDULED), signal_id)
            pipe.hset(home.key(keys.signal(signal_id)), "status", "rejected")
            record = {
                "signal_id": signal_id,
                "channel_id": channel_id,
                "status": "rejected",
                "reason": reason,
            }
            pipe.xadd(home.key(keys.RESULTS), {"kind": "signal_status", "data": json.dumps(record)})
            await pipe.execute()

    def _dispatch_soon(
        self,
        channel_id: str,
        ack: dict[str, Any],
        by_shard: dict[int, dict[str, int]] | None = None,
    ) -> None:
        """Drain jobs and the next spare copies, after the ack; ``by_shard``: each shard's part
        (sharded), else the whole fan-out is the unsharded shard's."""
        if not ack["fanout"]["total"]:
            return
        if by_shard is None:
            by_shard = {0: ack["fanout"]["by_broker"]}
        for index, by_broker in by_shard.items():
            shard = None if not self.shards.sharded else index
            self._background(
                self.dispatcher.dispatch(ack["signal_id"], by_broker, shard=shard),
                "drain jobs not enqueued; the reaper redrives them",
            )
        for index, by_broker in by_shard.items():
            self._background(
                self.prepare_spares(
                    channel_id, ack["signal_id"], list(by_broker), ack["deadline_ms"], index
                ),
                "spare directory copies not made; the next signal copies the sets itself",
            )

    async def prepare_spares(
        self, channel_id: str, signal_id: str, brokers: list[str], deadline_ms: int, shard: int = 0
    ) -> None:
        """Copy the channel's directory sets for its next signal once this one's work sets (on
        ``brokers``, those its ack counted) are empty (all claimed) or its deadline has passed: a
        copy made sooner would take Redis from the workers just when they start."""
        on = self.shards[shard]
        work = [on.key(keys.work(signal_id, broker)) for broker in brokers]
        while now_ms() < deadline_ms:
            async with on.redis.pipeline(transaction=False) as pipe:
                for key in work:
                    pipe.scard(key)
                if not any(await pipe.execute()):
                    break
            await asyncio.sleep(SPARE_POLL_S)
        await scripts.make_spares(on, channel_id, list(self.brokers))

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


def _taken(status: str, channel_id: str, ack: dict[str, Any], scheduled: bool) -> None:
    """Count a signal taken (not a resend, which gets the first answer) and log it."""
    signal_id = ack.get("signal_id")
    fanout = ack.get("fanout") or {}
    with logger.contextualize(signal_id=signal_id):
        if status != "ok":
            logger.info("signal {} sent again: the first answer stands", signal_id)
            return
        metrics.signal_outcome("scheduled" if scheduled else "accepted")
        logger.info(
            "signal {} to channel {} {}: {} subscribers {}",
            signal_id,
            channel_id,
            "scheduled" if scheduled else "fanned out",
            fanout.get("total", 0),
            fanout.get("by_broker", {}),
        )


def _answer(answer: scripts.Answer) -> tuple[str, dict[str, Any]]:
    """An expansion script's answer as (status, acknowledgement), or its refusal raised."""
    status, body = answer
    if status == "err":
        error_type, message = _EXPAND_ERRORS[body]
        raise error_type(message, body)
    return status, json.loads(body) if body else {}

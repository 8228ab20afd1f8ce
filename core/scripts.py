"""The Lua scripts of the hot path, one ``.lua`` file each (``core/lua/``), a typed binding each.

A script is read once, with the helpers its first line names (``-- uses: batched, now_ms`` puts
``lua/lib/batched.lua`` and ``lua/lib/now_ms.lua`` before it), and run by its SHA (``EVALSHA``,
loaded on first use). Each binding takes named parameters, builds every key the script touches
from :mod:`core.keys` and passes it in ``KEYS``: no script builds a key name.

Every script is safe to run twice: redis-py retries a command whose connection broke, and the first
run may have happened (:mod:`core.connections`). A repeated claim leaves the first batch to
:func:`release`, a repeated gate answers ``go`` again without counting twice, a repeated finish
writes nothing.

On Redis Cluster a script may only touch keys of one slot. Every key is declared, and the keys of
one signal share its tag, but most scripts join a signal's keys with its channel's (the expansion,
cancel), a worker's (claim, the gate, finish, release) or the global ``results``, ``active``,
``scheduled`` and ``orphans``. So the hot path is sharded by shard, not by signal
(:mod:`core.shards`): a binding given a :class:`~core.shards.Shard` instead of a Redis runs its
script on that shard with every key under the shard's tag (one slot), and a signal over several
shards is expanded in three steps (:func:`expand_sharded`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from core import keys
from core.records import SignalInfo
from core.shards import Shard, Shards

Target = Redis | Shard  # a script runs on a plain Redis (unsharded) or on one shard

LUA_DIR = Path(__file__).resolve().parent / "lua"
USES = "-- uses:"


class Script:
    """One Lua script file and the helpers it uses, run by SHA."""

    loaded: ClassVar[list[Script]] = []  # every script of this process (the tests run them all)

    def __init__(self, name: str, directory: Path = LUA_DIR) -> None:
        body = (directory / f"{name}.lua").read_text()
        first = body.split("\n", 1)[0]
        uses = first.removeprefix(USES).split(",") if first.startswith(USES) else []
        helpers = "".join((LUA_DIR / "lib" / f"{lib.strip()}.lua").read_text() for lib in uses)
        self.name = name
        self.source = helpers + body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis' own id
        Script.loaded.append(self)

    async def __call__(self, target: Target, keys: Sequence[str], args: Iterable[Any] = ()) -> Any:
        """Run on ``target``; on a shard, each key is that shard's (:func:`core.keys.on_shard`)."""
        redis = target.redis if isinstance(target, Shard) else target
        if isinstance(target, Shard) and target.tag:
            keys = [target.key(k) for k in keys]
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


def _shard(target: Target) -> Shard:
    return target if isinstance(target, Shard) else Shard(target)


# -- a signal comes in (the hub) -------------------------------------------------------------------

_EXPAND = Script("expand")
_SCHEDULE = Script("schedule")
_FIRE = Script("fire")
_SPARE = Script("spare")
_CANCEL = Script("cancel")

Answer = tuple[Literal["ok", "dup", "gone", "err"], str]


@dataclass(frozen=True, slots=True)
class NewSignal:
    """A signal as the expansion scripts take it."""

    signal_id: str
    channel_id: str
    sender_id: str
    asset: str
    direction: str
    expiry_seconds: int
    client_signal_id: str = ""

    def args(self, at_ms: int | None, brokers: Sequence[str]) -> list[Any]:
        return [
            self.signal_id, self.channel_id, self.sender_id, self.asset, self.direction,
            self.expiry_seconds, self.client_signal_id, keys.SIGNAL_TTL_S,
            "" if at_ms is None else at_ms, *brokers,
        ]  # fmt: skip

    def dedupe_key(self) -> list[str]:
        if not self.client_signal_id:
            return []
        return [keys.dedupe(self.channel_id, self.sender_id, self.client_signal_id)]

    def fan_out_keys(self, brokers: Sequence[str]) -> list[str]:
        c, s = self.channel_id, self.signal_id
        return [
            k
            for b in brokers
            for k in (keys.directory(c, b), keys.directory_spare(c, b), keys.work(s, b))
        ]


async def expand(redis: Target, signal: NewSignal, brokers: Sequence[str]) -> Answer:
    """Check and fan ``signal`` out now into each of ``brokers``' work sets: ``('ok', ack)``,
    ``('dup', first ack)`` for a resend, or ``('err', code)``."""
    status, body = await _EXPAND(
        redis,
        [
            keys.channel(signal.channel_id),
            keys.signal(signal.signal_id),
            keys.RESULTS,
            keys.ACTIVE,
            *signal.fan_out_keys(brokers),
            *signal.dedupe_key(),
        ],
        signal.args(None, brokers),
    )
    return status, body


async def schedule(redis: Target, signal: NewSignal, at_ms: int) -> Answer:
    """Check and record ``signal`` to fan out at ``at_ms``."""
    status, body = await _SCHEDULE(
        redis,
        [
            keys.channel(signal.channel_id),
            keys.signal(signal.signal_id),
            keys.RESULTS,
            keys.SCHEDULED,
            *signal.dedupe_key(),
        ],
        signal.args(at_ms, []),
    )
    return status, body


async def fire(redis: Target, signal: NewSignal, at_ms: int, brokers: Sequence[str]) -> Answer:
    """Fan a scheduled signal out, once: ``('gone', '')`` if it was cancelled."""
    status, body = await _FIRE(
        redis,
        [
            keys.channel(signal.channel_id),
            keys.signal(signal.signal_id),
            keys.RESULTS,
            keys.ACTIVE,
            keys.SCHEDULED,
            *signal.fan_out_keys(brokers),
        ],
        signal.args(at_ms, brokers),
    )
    return status, body


_RESERVE = Script("reserve")
_EXPAND_SHARD = Script("expand_shard")
_EXPAND_DONE = Script("expand_done")


@dataclass(frozen=True, slots=True)
class ShardedAnswer:
    """An expansion over K shards: the answer, and each shard's subscribers by broker (for its
    drain jobs; empty when nothing was fanned out by this call)."""

    answer: Answer
    by_shard: dict[int, dict[str, int]]


async def expand_sharded(
    shards: Shards, signal: NewSignal, brokers: Sequence[str], at_ms: int | None = None
) -> ShardedAnswer:
    """:func:`expand` (``at_ms`` None) or :func:`fire` over K shards, in three steps: the checks
    and the deadline on the home shard (``reserve.lua``), each shard's fan-out
    (``expand_shard.lua``, concurrently), the acknowledgement with the sum on the home shard
    (``expand_done.lua``). Each step is safe to repeat, so a resend of a signal whose hub died
    in between completes that signal (its resend key says ``pending:<id>``)."""
    home = shards.home
    reply = await _RESERVE(
        home,
        [keys.channel(signal.channel_id), keys.signal(signal.signal_id), keys.SCHEDULED,
         *signal.dedupe_key()],
        signal.args(at_ms, []),
    )  # fmt: skip
    status, body = str(reply[0]), str(reply[1])
    if status == "dup" and body.startswith("pending:"):
        signal = replace(signal, signal_id=body.removeprefix("pending:"))
        fields: Any = await home.redis.hmget(
            home.key(keys.signal(signal.signal_id)), "created_ms", "deadline_ms"
        )
        if fields[0] is None:  # its keys expired meanwhile: nothing to complete
            return ShardedAnswer(("err", "signal_not_found"), {})
        status, reply = "go", ["go", *fields]
    if status != "go":
        return ShardedAnswer((status, body), {})  # type: ignore[arg-type]
    created, deadline = int(reply[1]), int(reply[2])
    fanouts = await asyncio.gather(
        *(
            _EXPAND_SHARD(
                shard,
                [keys.signal(signal.signal_id), keys.ACTIVE, *signal.fan_out_keys(brokers)],
                signal.args(at_ms, [str(created), str(deadline - created), *brokers]),
            )
            for shard in shards
        )
    )
    by_shard = {i: dict(orjson.loads(f)["by_broker"] or {}) for i, f in enumerate(fanouts)}
    by_broker: dict[str, int] = {}
    for counts in by_shard.values():
        for broker, n in counts.items():
            by_broker[broker] = by_broker.get(broker, 0) + int(n)
    ack = await _EXPAND_DONE(
        home,
        [keys.signal(signal.signal_id), keys.RESULTS, *signal.dedupe_key()],
        [
            signal.signal_id,
            sum(by_broker.values()),
            orjson.dumps(by_broker),
            ",".join(b for b in brokers if by_broker.get(b)),
            keys.SIGNAL_TTL_S,
        ],
    )
    return ShardedAnswer(("ok", str(ack)), {i: c for i, c in by_shard.items() if c})


async def make_spares(redis: Target, channel_id: str, brokers: Sequence[str]) -> None:
    """A spare copy of each of the channel's subscriber sets, for its next expansion."""
    await _SPARE(
        redis,
        [
            k
            for b in brokers
            for k in (keys.directory(channel_id, b), keys.directory_spare(channel_id, b))
        ],
    )


async def cancel(
    redis: Target,
    *,
    signal_id: str,
    channel_id: str,
    sender_id: str,
    brokers: Sequence[str],
    publish: bool = True,
) -> tuple[Literal["ok", "err"], Any]:
    """``('ok', how many purchases that stopped)`` or ``('err', code)``; the same again when
    asked again. ``publish``: the ``cancelled`` status record (the home shard's, once)."""
    status, value = await _CANCEL(
        redis,
        [
            keys.signal(signal_id),
            keys.state(signal_id),
            keys.RESULTS,
            keys.ACTIVE,
            keys.SCHEDULED,
            keys.channel(channel_id),
            keys.subscriptions(channel_id),
            *[k for b in brokers for k in (keys.directory(channel_id, b), keys.work(signal_id, b))],
        ],
        [signal_id, sender_id, "1" if publish else "0", *brokers],
    )
    return status, value


# -- a worker takes it (claim, gate, finish, release) ------------------------------------------

_CLAIM = Script("claim")
_MARK_SENDING = Script("mark_sending")
_FINISH = Script("finish")
_RELEASE = Script("release")
_RENEW_LEASE = Script("renew_lease")


async def renew_lease(redis: Target, *, worker_id: str, token: str, ttl_ms: int) -> bool:
    """Extend the worker's lease by ``ttl_ms`` if it is still the lease ``token`` names (on a
    shard: the copy of the lease beside the worker's claims there)."""
    return bool(await _RENEW_LEASE(redis, [keys.worker_heartbeat(worker_id)], [token, ttl_ms]))


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed subscriber, with its directory entries (``None`` when gone)."""

    subscription_id: str
    subscription: dict[str, Any] | None
    account: dict[str, Any] | None


def _member_prefix(signal_id: str, broker: str) -> str:
    return f"{signal_id}|{broker}|"


def _loads(raw: str) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None


async def claim(
    redis: Target, *, signal_id: str, channel_id: str, broker: str, worker_id: str, count: int
) -> tuple[SignalInfo | None, list[Claimed]]:
    """Up to ``count`` subscribers of the signal's work set on ``broker``, now ``worker_id``'s;
    ``(None, [])`` when the signal is gone."""
    reply = await _CLAIM(
        redis,
        [
            keys.work(signal_id, broker),
            keys.state(signal_id),
            keys.signal(signal_id),
            keys.claims(worker_id),
            keys.subscriptions(channel_id),
            keys.accounts(broker),
        ],
        [count, worker_id, _member_prefix(signal_id, broker), keys.SIGNAL_TTL_S],
    )
    if not reply:
        return None, []
    flat, ids, subs, accounts = reply
    signal = SignalInfo.from_hash(signal_id, dict(zip(flat[::2], flat[1::2], strict=True)))
    claimed = [
        Claimed(sub_id, _loads(sub), _loads(account))
        for sub_id, sub, account in zip(ids, subs, accounts, strict=True)
    ]
    return signal, claimed


@dataclass(frozen=True, slots=True)
class GateItem:
    subscription_id: str
    stake: str
    max_trades_per_day: int = 0  # 0: no limit
    daily_loss_limit: float = 0  # 0: no limit


Verdict = Literal["go", "lost", "cancelled", "expired", "daily_loss_limit", "max_trades_per_day"]


async def mark_sending(
    redis: Target,
    *,
    signal_id: str,
    worker_id: str,
    day: str,
    send_margin_ms: int,
    items: Sequence[GateItem],
    lease_token: str = "",
) -> tuple[list[Verdict], int]:
    """The send gate: per item ``go`` or why not, and Redis' clock (ms). ``lease_token``: the
    worker's lease the batch is marked under (:mod:`broker_workers.fencing`); empty, any live
    lease of the worker will do."""
    args: list[Any] = [worker_id, lease_token, send_margin_ms, keys.DAILY_TTL_S]
    for item in items:
        args += [item.subscription_id, item.max_trades_per_day, item.daily_loss_limit, item.stake]
    verdicts, now_ms = await _MARK_SENDING(
        redis,
        [
            keys.state(signal_id),
            keys.signal(signal_id),
            keys.worker_heartbeat(worker_id),
            *[keys.daily(item.subscription_id, day) for item in items],
        ],
        args,
    )
    return list(verdicts), int(now_ms)


@dataclass(frozen=True, slots=True)
class Terminal:
    """One subscriber's terminal record, with what :func:`finish` must do besides publishing it."""

    subscription_id: str
    record: Mapping[str, Any]
    settle_due_ms: int | None = None
    settle_member: Mapping[str, Any] | None = None  # a placed trade, waiting for settlement
    recorded_account: str | None = None  # remember its contract as recorded for this account
    undo_daily_key: str | None = None  # give the trade counted at the gate back


async def finish(
    redis: Target, *, signal_id: str, broker: str, worker_id: str, terminals: Sequence[Terminal]
) -> int:
    """Publish each terminal record once; returns how many were new."""
    if not terminals:
        return 0
    fixed = [keys.state(signal_id), keys.claims(worker_id), keys.RESULTS, keys.settle_queue(broker)]
    extra: list[str] = []

    def index_of(key: str | None) -> int:
        if key is None:
            return 0
        extra.append(key)
        return len(fixed) + len(extra)

    args: list[Any] = [_member_prefix(signal_id, broker), keys.RECORDED_TTL_S]
    for t in terminals:
        member = t.settle_member
        recorded = keys.recorded_contracts(t.recorded_account) if t.recorded_account else None
        args += [
            t.subscription_id,
            orjson.dumps(t.record),
            t.settle_due_ms or 0,
            orjson.dumps(member) if member else "",
            index_of(recorded),
            member["contract_id"] if member else "",
            index_of(t.undo_daily_key),
        ]
    written: int = await _FINISH(redis, [*fixed, *extra], args)
    return written


async def release(
    redis: Target,
    *,
    worker_id: str,
    only_if_dead: bool,
    send_margin_ms: int,
    reconcile_after_ms: int,
    signal_id: str | None = None,
) -> list[tuple[str, str]]:
    """Give up ``worker_id``'s claims (of ``signal_id`` only, when given); returns the
    (signal, broker) pairs whose work set got subscribers back and needs a drain job.

    ``only_if_dead``: nothing while the worker's heartbeat lives (the reaper's call). One script
    per signal; a claim made meanwhile is released by the next round.
    """
    redrive: list[tuple[str, str]] = []
    while True:
        shard = _shard(redis)
        members: Any = await shard.redis.smembers(shard.key(keys.claims(worker_id)))
        by_signal: dict[str, list[str]] = {}
        for member in members:
            sig = str(member).split("|", 1)[0]
            if signal_id is None or sig == signal_id:
                by_signal.setdefault(sig, []).append(str(member))
        if not by_signal:
            return redrive
        for sig, claimed in by_signal.items():
            if only_if_dead and await shard.redis.exists(
                shard.key(keys.worker_heartbeat(worker_id))
            ):
                return redrive
            redrive += [
                (sig, broker)
                for broker in await _release_signal(
                    redis, worker_id, sig, claimed, only_if_dead, send_margin_ms, reconcile_after_ms
                )
            ]


async def _release_signal(
    redis: Target,
    worker_id: str,
    signal_id: str,
    members: list[str],
    only_if_dead: bool,
    send_margin_ms: int,
    reconcile_after_ms: int,
) -> list[str]:
    shard = _shard(redis)
    channel_id: Any = await shard.redis.hget(shard.key(keys.signal(signal_id)), "channel_id")
    if channel_id is None:  # the signal is gone (its keys expired): nothing left to do for it
        await shard.redis.srem(shard.key(keys.claims(worker_id)), *members)
        return []
    brokers = sorted({m.split("|")[1] for m in members})
    result: list[str] = await _RELEASE(
        redis,
        [
            keys.claims(worker_id),
            keys.worker_heartbeat(worker_id),
            keys.signal(signal_id),
            keys.state(signal_id),
            keys.subscriptions(channel_id),
            keys.RESULTS,
            keys.ORPHANS,
            keys.ACTIVE,
            *[keys.work(signal_id, b) for b in brokers],
        ],
        [
            worker_id,
            "1" if only_if_dead else "0",
            send_margin_ms,
            reconcile_after_ms,
            signal_id,
            len(brokers),
            *brokers,
            *members,
        ],
    )
    return result


# -- the reaper and settlement -------------------------------------------------------------------

_EXPIRE_WORK = Script("expire_work")
_TAKE_DUE = Script("take_due")
_RECORD_SETTLEMENT = Script("record_settlement")


async def expire_work(redis: Target, *, signal_id: str, broker: str) -> int:
    """End the signal's work on ``broker`` ``skipped``/``expired`` if its deadline has passed;
    how many subscribers that ended."""
    member = f"{signal_id}|{broker}"
    shard = _shard(redis)
    channel_id: Any = await shard.redis.hget(shard.key(keys.signal(signal_id)), "channel_id")
    if channel_id is None:  # the signal is gone (its keys expired): only the entry is left
        await shard.redis.zrem(shard.key(keys.ACTIVE), member)
        return 0
    ended: int = await _EXPIRE_WORK(
        redis,
        [
            keys.ACTIVE,
            keys.RESULTS,
            keys.signal(signal_id),
            keys.state(signal_id),
            keys.subscriptions(channel_id),
            keys.work(signal_id, broker),
        ],
        [member, signal_id, broker],
    )
    return ended


async def take_due(redis: Target, *, schedule: str, limit: int, lease_ms: int) -> list[str]:
    """Up to ``limit`` due members of the ZSET ``schedule``, each leased for ``lease_ms``."""
    due: list[str] = await _TAKE_DUE(redis, [schedule], [limit, lease_ms])
    return due


async def record_settlement(
    redis: Target,
    *,
    broker: str,
    member: str,
    signal_id: str,
    subscription_id: str,
    kind: Literal["settlement", "settlement_failed"],
    record: Mapping[str, Any],
    loss: float,
    day: str,
) -> bool:
    """Publish a settlement (or its failure) once per trade; True if this call did."""
    published: int = await _RECORD_SETTLEMENT(
        redis,
        [
            keys.settle_queue(broker),
            keys.settled(signal_id, subscription_id),
            keys.RESULTS,
            keys.daily(subscription_id, day),
        ],
        [member, kind, orjson.dumps(record), loss, keys.SETTLED_TTL_S],
    )
    return bool(published)


# -- presence, kill points -------------------------------------------------------------------------

_PRESENCE_ADJUST = Script("presence_adjust")
_PRESENCE_FORGET = Script("presence_forget")
_FAULT_REACHED = Script("fault_reached")


async def presence_adjust(redis: Target, *, hub_id: str, user_id: str, delta: int) -> int:
    total: int = await _PRESENCE_ADJUST(
        redis, [keys.ONLINE, keys.online_at(hub_id)], [user_id, delta]
    )
    return total


async def presence_forget(redis: Target, *, hub_id: str) -> None:
    await _PRESENCE_FORGET(redis, [keys.ONLINE, keys.online_at(hub_id)])


async def fault_reached(redis: Target, *, point: str) -> bool:
    """True for the passage of ``point`` a test armed (``keys.FAULT_ARMED``)."""
    return bool(await _FAULT_REACHED(redis, [keys.FAULT_ARMED, keys.FAULT_COUNT], [point]))

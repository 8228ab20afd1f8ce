"""The drain job: pop subscribers of one signal in batches, process, gate, send, finish.

One RQ job per (signal, broker, worker) - not per subscriber. Inside it, several lanes each loop
claim -> :func:`process` -> :func:`gate` -> :func:`durable` -> :func:`send` -> finish until the
work set is empty, so broker round trips overlap and a batch costs a handful of Redis calls
whatever its size. Each phase ends some subscribers (a :class:`~broker_workers.process.Refusal`,
or the broker's answer) and hands the rest on.

When the lanes are done the job releases whatever it still holds (a claim whose answer a Redis
hiccup lost, a purchase whose answer the broker lost and cannot find yet, a batch a lane failed
on): unsent claims go back to the work set and are drained again, sent ones go to the reaper. On
SIGTERM the lanes finish the batch in hand and take no new one; the work left is handed to the
next worker with a new drain job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

from loguru import logger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker_workers.adapters.base import (
    Account,
    AmbiguousPurchase,
    BrokerError,
    FatalBrokerError,
    Fill,
    LeaseLost,
    Order,
    RejectedError,
)
from broker_workers.claims import recorded_contracts
from broker_workers.process import (
    GATE_REFUSALS,
    Refusal,
    gate_item,
    needs_balance,
    order_for,
    precheck,
    stake_for,
)
from broker_workers.replication import hold, replicated
from broker_workers.runtime import WorkerRuntime, current, set_current
from broker_workers.settings import get_settings
from core import keys, scripts
from core.clock import now_ms, utc_day
from core.dispatch import Dispatcher
from core.records import SignalInfo
from core.scripts import Claimed, Terminal
from core.shards import Shard

T = TypeVar("T")

# Pauses between asking the broker again about a purchase whose answer was lost (a broker that
# lost the answer is often back within a second or two; after these, the reaper takes over).
RECONCILE_WAITS_S = (0.1, 0.2, 0.4, 0.8, 1.0)
# Pauses before releasing again a drain's leftovers that no replica confirmed (``_release``): long
# enough together for Sentinel to promote a replica and for the new master to get one.
RELEASE_CONFIRM_WAITS_S = (0.25, 0.5, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0)
HELD_PAUSE_S = 0.5  # a lane's pause after a batch it held back (``durable``)


def drain_job(signal_id: str, broker: str, shard: int | None = None) -> int:
    """RQ entry point. Runs on the worker's runtime loop; returns how many records it wrote.
    A stopping worker hands what is left of the signal to the next drain job. ``shard``: the
    hot-path shard whose part of the signal it drains (``None``: unsharded)."""
    runtime = current()
    if runtime is None:  # a plain ``rq worker`` without BrokerWorker: make the runtime now
        runtime = WorkerRuntime(get_settings(), broker, f"adhoc-{broker}-{time.time_ns()}")
        runtime.start()
        set_current(runtime)
    written = runtime.run(drain(runtime, signal_id, shard or 0))
    left = runtime.run(_work_left(runtime, signal_id, shard or 0)) if runtime.stopping else 0
    if left:
        dispatcher = Dispatcher(runtime.settings.redis_url, runtime.settings.drain_batch_size)
        try:
            dispatcher.dispatch_sync(
                signal_id, {broker: left}, "handover", at_front=True, shard=shard
            )
        finally:
            dispatcher.close()
        logger.info("stopping: handed the rest of {} on {} over", signal_id, broker)
    return written


async def _work_left(rt: WorkerRuntime, signal_id: str, shard: int = 0) -> int:
    with rt.on_shard(shard) as book:
        on = _on(book.redis)
        return int(await on.redis.scard(on.key(keys.work(signal_id, rt.broker))))


def _on(target: scripts.Target) -> Shard:
    return target if isinstance(target, Shard) else Shard(target)


async def drain(rt: WorkerRuntime, signal_id: str, shard: int = 0) -> int:
    """Run the lanes until the work set is empty, then release what is left; repeat while
    releasing handed subscribers back (a claim whose answer was lost). Every line logged on the
    way carries the signal's id. ``shard``: the hot-path shard whose part it drains."""
    rt.draining += 1
    try:
        with logger.contextualize(signal_id=signal_id), rt.on_shard(shard):
            written = await _drain(rt, signal_id)
            logger.info("drained {} subscribers of {} on {}", written, signal_id, rt.broker)
            return written
    finally:
        rt.draining -= 1


async def _drain(rt: WorkerRuntime, signal_id: str) -> int:
    on = _on(rt.claims.redis)
    channel_id = await on.redis.hget(on.key(keys.signal(signal_id)), "channel_id")
    if channel_id is None:  # gone (its keys expired): nothing to drain
        return 0
    written = 0
    while True:
        lanes = max(1, rt.settings.drain_concurrency)
        results = await asyncio.gather(
            *(_lane(rt, signal_id, str(channel_id)) for _ in range(lanes)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.opt(exception=result).error("a drain lane of {} failed", signal_id)
            else:
                written += result
        redrive = await _release(rt, signal_id)
        if not redrive or rt.stopping:
            return written
        logger.warning("re-draining {} claims left of {}", len(redrive), signal_id)


async def _release(rt: WorkerRuntime, signal_id: str) -> list[tuple[str, str]]:
    """Release what this drain still holds of the signal. With ``REDIS_WAIT_REPLICAS`` set, until
    a replica has the release too: one acknowledged by a master that then died would leave this
    worker's claims on the promoted replica, held by a live worker that no longer drains them,
    which no reaper takes. Releasing again is safe (the script only touches what is still ours)
    and, after a failover, runs on the new master (:data:`RELEASE_CONFIRM_WAITS_S`)."""

    def release() -> Awaitable[list[tuple[str, str]]]:
        return scripts.release(
            rt.claims.redis,
            worker_id=rt.worker_id,
            only_if_dead=False,
            send_margin_ms=rt.settings.send_margin_ms,
            reconcile_after_ms=rt.settings.reconcile_after_ms,
            signal_id=signal_id,
        )

    redrive = await _with_retries(release)
    on = _on(rt.claims.redis)
    probe = on.key(keys.replication_probe(rt.worker_id))
    replicas, wait_ms = rt.settings.redis_wait_replicas, rt.settings.redis_wait_ms
    for wait_s in RELEASE_CONFIRM_WAITS_S if replicas else ():
        if await replicated(on.redis, probe, replicas, wait_ms):
            break
        await asyncio.sleep(wait_s)
        redrive += await _with_retries(release)
    return redrive


async def _lane(rt: WorkerRuntime, signal_id: str, channel_id: str) -> int:
    """Batches until the work set is empty, the worker stops, or its lease is not surely held
    (a worker cut off claims nothing; what it holds is released, by itself or the reaper)."""
    written = 0
    while not rt.stopping and rt.lease.held():
        signal, claims = await rt.claims.claim(signal_id, channel_id, rt.settings.drain_batch_size)
        if signal is None or not claims:
            return written
        await rt.faults.reached("after_claim")
        written += await handle_batch(rt, signal, claims)
        await rt.faults.reached("after_finish")
    return written


async def _with_retries(
    call: Callable[[], Awaitable[T]], attempts: int = 8, first_wait_s: float = 0.05
) -> T:
    """Retry a Redis call that is safe to repeat through a longer outage than redis-py's own
    retries cover: after a batch was bought, its records must not be dropped for a hiccup."""
    wait = first_wait_s
    for _ in range(attempts - 1):
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.warning("redis unavailable ({}); retrying in {:.2f}s", type(exc).__name__, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 1.0)
    return await call()


@dataclass(frozen=True, slots=True)
class Staked:
    """A subscriber the process phase cleared, with its account and stake."""

    claim: Claimed
    account: Account
    stake: Decimal


async def handle_batch(rt: WorkerRuntime, signal: SignalInfo, claims: list[Claimed]) -> int:
    """One claimed batch through the phases; each subscriber ends in exactly one terminal
    record, except one whose purchase's fate is unknown (the reaper's, after the deadline)."""
    ended: list[Terminal] = []
    staked = await process(rt, signal, claims, ended)
    orders = await gate(rt, signal, staked, ended)
    orders = await durable(rt, signal, orders)
    ended += await send(rt, signal, orders)
    return await _with_retries(lambda: rt.claims.finish(signal.signal_id, ended))


async def process(
    rt: WorkerRuntime, signal: SignalInfo, claims: list[Claimed], ended: list[Terminal]
) -> list[Staked]:
    """Who may be sent, and for how much; the others end in ``ended``."""
    at_ms = now_ms()
    candidates: list[tuple[Claimed, Account]] = []
    for claim in claims:
        refusal = precheck(claim, signal, rt.capabilities)
        account = rt.accounts.open(claim.account) if refusal is None else None
        if refusal is None and account is None:
            refusal = Refusal("failed", "account_unusable")
        if refusal is not None:
            ended.append(rt.claims.refused(signal, claim, refusal, at_ms))
        else:
            assert account is not None
            candidates.append((claim, account))
    wanting = [a for c, a in candidates if needs_balance(c.subscription or {})]
    balances = await _balances_by(rt, wanting, signal.deadline_ms) if wanting else {}
    staked: list[Staked] = []
    for claim, account in candidates:
        stake = stake_for(
            claim.subscription or {}, balances.get(account.account_id), rt.capabilities
        )
        if isinstance(stake, Refusal):
            ended.append(rt.claims.refused(signal, claim, stake, at_ms))
        else:
            staked.append(Staked(claim, account, stake))
    return staked


async def _balances_by(
    rt: WorkerRuntime, accounts: list[Account], deadline_ms: int
) -> dict[str, Decimal]:
    """The balances the broker gives before the signal's deadline, after which nothing may be
    bought anyway: a broker that hangs costs a batch its deadline, not every lookup's timeouts
    (which would also stretch a SIGTERM's hand-over). Percent stakes without one fail
    ``balance_unavailable``."""
    try:
        async with asyncio.timeout(max(0.0, (deadline_ms - now_ms()) / 1000)):
            return await rt.balances(accounts)
    except TimeoutError:
        logger.warning("no balances from {} before the deadline", rt.broker)
        return {}


async def gate(
    rt: WorkerRuntime, signal: SignalInfo, staked: list[Staked], ended: list[Terminal]
) -> list[tuple[Claimed, Order]]:
    """The last check before the broker (cancelled? expired? lease held? daily limits?), atomic
    with marking the subscribers sent; those refused end in ``ended``."""
    if not staked:
        return []
    # The lease the batch is marked under: the gate checks its token, each order carries it,
    # and no adapter sends it once that lease is not surely held (broker_workers/fencing.py).
    fence = rt.lease.ticket()
    if fence is None:  # no lease: nothing is marked; the claims go back with the release
        return []
    verdicts, gate_ms = await rt.claims.mark_sending(
        signal.signal_id,
        [gate_item(s.claim, s.stake) for s in staked],
        utc_day(),
        rt.settings.send_margin_ms,
        fence.token,
    )
    orders: list[tuple[Claimed, Order]] = []
    for s, verdict in zip(staked, verdicts, strict=True):
        if verdict == "go":
            orders.append((s.claim, order_for(signal, s.claim, s.account, s.stake, fence)))
        elif verdict in GATE_REFUSALS:
            ended.append(rt.claims.refused(signal, s.claim, GATE_REFUSALS[verdict], gate_ms))
        # "lost": the claim is no longer ours; whoever holds it records it.
    await rt.faults.reached("after_gate")
    return orders


async def durable(
    rt: WorkerRuntime, signal: SignalInfo, orders: list[tuple[Claimed, Order]]
) -> list[tuple[Claimed, Order]]:
    """The orders whose sending mark replicas confirmed (``REDIS_WAIT_REPLICAS``); none when
    they did not: those stay marked, unsent, for the reaper (:mod:`broker_workers.replication`)."""
    if not orders:
        return orders
    settings = rt.settings
    on = _on(rt.claims.redis)  # the shard the mark was written on
    probe = on.key(keys.replication_probe(rt.worker_id))
    if await replicated(on.redis, probe, settings.redis_wait_replicas, settings.redis_wait_ms):
        return orders
    held = [claim.subscription_id for claim, _ in orders]
    logger.warning(
        "no {} replica(s) confirmed the mark within {} ms: {} orders of {} held back",
        settings.redis_wait_replicas,
        settings.redis_wait_ms,
        len(held),
        signal.signal_id,
    )
    await hold(on.redis, on.key(keys.unreplicated(signal.signal_id)), held)
    # The lane's next claim waits: a master without its replicas (the moments after a failover)
    # would otherwise have the whole signal claimed and held back within a few hundred ms.
    await asyncio.sleep(HELD_PAUSE_S)
    return []


async def send(
    rt: WorkerRuntime, signal: SignalInfo, orders: list[tuple[Claimed, Order]]
) -> list[Terminal]:
    """Buy, in requests no larger than the broker takes; the broker's answers as records."""
    if not orders:
        return []
    size = max(1, rt.capabilities["max_orders_per_request"])
    chunks = [orders[i : i + size] for i in range(0, len(orders), size)]
    answers = await asyncio.gather(*(_buy(rt, [o for _, o in chunk]) for chunk in chunks))
    day = utc_day()
    ended = [
        rt.claims.for_fill(signal, claim, order, fill, day)
        for chunk, fills in zip(chunks, answers, strict=True)
        for (claim, order), fill in zip(chunk, fills, strict=True)
        if fill is not None
    ]
    await rt.faults.reached("after_send")
    return ended


async def _buy(rt: WorkerRuntime, orders: list[Order]) -> list[Fill | None]:
    """The broker's answer per order; ``None`` where it is unknown (sent, no answer, and the
    broker cannot be asked now): that subscriber stays ``sending`` for the reaper."""
    try:
        return list(await rt.adapter.buy(orders))
    except AmbiguousPurchase:
        logger.warning("ambiguous purchase of {} orders: reconciling", len(orders))
        return [await _reconcile(rt, order) for order in orders]
    except LeaseLost:  # not sent (or not all): the claims are the reaper's to reconcile
        logger.warning("lease lost before {} orders were sent: left to the reaper", len(orders))
        return [None] * len(orders)
    except FatalBrokerError as exc:
        logger.error("broker {} cannot work until fixed: {}", rt.broker, exc)
        return [Fill(o.client_order_id, "failed", exc.reason) for o in orders]
    except RejectedError as exc:
        return [Fill(o.client_order_id, "rejected", exc.reason) for o in orders]
    except BrokerError as exc:  # temporary: nothing was bought
        return [Fill(o.client_order_id, "failed", exc.reason) for o in orders]


async def _reconcile(rt: WorkerRuntime, order: Order) -> Fill | None:
    """Found: its purchase; never bought: failed; the broker cannot say, even after a few
    tries (:data:`RECONCILE_WAITS_S`): ``None``, and the reaper asks after the deadline.

    A stopping worker asks no more (``None`` too): each try can wait a lookup's timeouts and the
    orders of a batch are asked one by one, so asking on would stretch a SIGTERM's hand-over past
    any grace period; the reaper's reconciliation is the same, only later."""
    recorded = await recorded_contracts(rt.claims.redis, order.account.account_id)
    for wait_s in (*RECONCILE_WAITS_S, None):
        if rt.stopping:
            logger.info("order {}: stopping, the reaper will ask", order.client_order_id)
            return None
        try:
            found = await rt.adapter.find_purchase(replace(order, recorded_contract_ids=recorded))
        except BrokerError as exc:
            if wait_s is None:
                logger.warning(
                    "order {}: the broker cannot say ({}); the reaper will ask",
                    order.client_order_id,
                    exc,
                )
                return None
            await asyncio.sleep(wait_s)
        else:
            return found or Fill(order.client_order_id, "failed", "broker_unreachable")
    return None

"""The drain job: pop subscribers of one signal in batches, process, send, record.

One RQ job per (signal, broker, worker) - not per subscriber. Inside it, several lanes each loop
claim -> process -> mark sending -> buy -> finish until the work set is empty, so broker round
trips overlap and a batch costs a handful of Redis calls whatever its size.

When the lanes are done the job releases whatever it still holds (a claim whose answer a Redis
hiccup lost, a batch a lane failed on): unsent claims go back to the work set and are drained
again, sent ones go to the reaper. On SIGTERM the lanes finish the batch in hand and take no
new one; the work left is handed to the next worker with a new drain job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

from loguru import logger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker_workers.adapters.base import (
    Account,
    AmbiguousPurchase,
    BrokerError,
    Fill,
    Order,
)
from broker_workers.claims import Claim, SignalInfo, Terminal, recorded_contracts, release
from broker_workers.process import Refusal, max_trades_per_day, needs_balance, precheck, stake_for
from broker_workers.runtime import WorkerRuntime, current, set_current
from signal_hub import keys
from signal_hub.dispatch import Dispatcher
from signal_hub.settings import get_settings

T = TypeVar("T")

# Verdicts of MARK_SENDING that end a subscriber without a purchase.
_GATE_REFUSALS = {
    "cancelled": Refusal("skipped", "cancelled"),
    "expired": Refusal("skipped", "expired"),
    "max_trades_per_day": Refusal("rejected", "max_trades_per_day"),
}


def drain_job(signal_id: str, broker: str) -> int:
    """RQ entry point. Runs on the worker's runtime loop; returns how many records it wrote.
    A stopping worker hands what is left of the signal to the next drain job."""
    runtime = current()
    if runtime is None:  # a plain ``rq worker`` without BrokerWorker: make the runtime now
        runtime = WorkerRuntime(get_settings(), broker, f"adhoc-{broker}-{time.time_ns()}")
        runtime.start()
        set_current(runtime)
    written = runtime.run(drain(runtime, signal_id))
    left = runtime.run(_work_left(runtime, signal_id)) if runtime.stopping else 0
    if left:
        dispatcher = Dispatcher(runtime.settings.redis_url, runtime.settings.drain_batch_size)
        try:
            dispatcher.dispatch_sync(signal_id, {broker: left}, "handover", at_front=True)
        finally:
            dispatcher.close()
        logger.info("stopping: handed the rest of {} on {} over", signal_id, broker)
    return written


async def _work_left(rt: WorkerRuntime, signal_id: str) -> int:
    return int(await rt.redis.scard(keys.work(signal_id, rt.broker)))


async def drain(rt: WorkerRuntime, signal_id: str) -> int:
    """Run the lanes until the work set is empty, then release what is left; repeat while
    releasing handed subscribers back (a claim whose answer was lost)."""
    written = 0
    while True:
        lanes = max(1, rt.settings.drain_concurrency)
        results = await asyncio.gather(
            *(_lane(rt, signal_id) for _ in range(lanes)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.opt(exception=result).error("a drain lane of {} failed", signal_id)
            else:
                written += result
        redrive = await _with_retries(
            lambda: release(
                rt.redis,
                rt.worker_id,
                only_if_dead=False,
                send_margin_ms=rt.settings.send_margin_ms,
                reconcile_after_ms=rt.settings.reconcile_after_ms,
                signal_id=signal_id,
            )
        )
        if not redrive or rt.stopping:
            return written
        logger.warning("re-draining {} claims left of {}", len(redrive), signal_id)


async def _lane(rt: WorkerRuntime, signal_id: str) -> int:
    written = 0
    while not rt.stopping:
        signal, claims = await rt.claims.claim(
            signal_id, rt.settings.drain_batch_size, keys.utc_day()
        )
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


@dataclass
class _Batch:
    """What one batch ends with; filled phase by phase."""

    signal: SignalInfo
    terminals: list[Terminal] = field(default_factory=list)

    def end(self, claim: Claim, status: str, reason: str | None, now_ms: int) -> None:
        self.terminals.append(
            Terminal(
                claim.subscription_id, execution_record(self.signal, claim, status, reason, now_ms)
            )
        )


def execution_record(
    signal: SignalInfo,
    claim: Claim,
    status: str,
    reason: str | None,
    at_ms: int,
    fill: Fill | None = None,
    broker: str | None = None,
) -> dict[str, Any]:
    sub = claim.subscription or {}
    record: dict[str, Any] = {
        "signal_id": signal.signal_id,
        "trade_id": keys.trade_id(signal.signal_id, claim.subscription_id),
        "channel_id": signal.channel_id,
        "subscription_id": claim.subscription_id,
        "subscriber_id": sub.get("user_id"),
        "account_id": sub.get("account_id"),
        "broker": broker or sub.get("broker"),
        "asset": signal.asset,
        "direction": signal.direction,
        "expiry_seconds": signal.expiry_seconds,
        "status": status,
        "reason": reason,
        "signal_created_ms": signal.created_ms,
        "executed_ms": at_ms,
        "latency_ms": max(0, at_ms - signal.created_ms),
    }
    if fill is not None and fill.status == "placed":
        record.update(
            contract_id=fill.contract_id,
            stake=float(fill.stake) if fill.stake is not None else None,
            payout=float(fill.payout) if fill.payout is not None else None,
        )
    return record


async def handle_batch(rt: WorkerRuntime, signal: SignalInfo, claims: list[Claim]) -> int:
    batch = _Batch(signal)
    now_ms = keys.now_ms()
    day = keys.utc_day()

    # Process phase: who may be sent, and for how much.
    candidates: list[tuple[Claim, Account]] = []
    for claim in claims:
        refusal = precheck(claim)
        account = rt.account(claim.account) if claim.account else None
        if refusal is None and account is None:
            refusal = Refusal("failed", "account_unusable")
        if refusal is not None:
            batch.end(claim, refusal.status, refusal.reason, now_ms)
        else:
            assert account is not None
            candidates.append((claim, account))

    wanting_balance = [a for c, a in candidates if needs_balance(c.subscription or {})]
    balances = await rt.balances(wanting_balance) if wanting_balance else {}
    staked: list[tuple[Claim, Account, Decimal]] = []
    for claim, account in candidates:
        sub = claim.subscription or {}
        stake = stake_for(sub, balances.get(account.account_id), rt.adapter.capabilities)
        if isinstance(stake, Refusal):
            batch.end(claim, stake.status, stake.reason, now_ms)
        else:
            staked.append((claim, account, stake))

    # The gate: cancelled, expired, lease lost, trades per day.
    orders: list[tuple[Claim, Order]] = []
    if staked:
        verdicts, gate_ms = await rt.claims.mark_sending(
            signal.signal_id,
            [
                (c.subscription_id, max_trades_per_day(c.subscription or {}), str(stake))
                for c, _, stake in staked
            ],
            day,
            rt.settings.send_margin_ms,
        )
        for (claim, account, stake), verdict in zip(staked, verdicts, strict=True):
            if verdict == "go":
                orders.append((claim, order_for(signal, claim, account, stake)))
            elif verdict in _GATE_REFUSALS:
                refusal = _GATE_REFUSALS[verdict]
                batch.end(claim, refusal.status, refusal.reason, gate_ms)
            # "lost": the claim is no longer ours; whoever holds it records it.
        await rt.faults.reached("after_gate")

    # Send phase.
    if orders:
        fills = await _send(rt, [o for _, o in orders])
        for (claim, order), fill in zip(orders, fills, strict=True):
            batch.terminals.append(terminal_for_fill(rt.broker, signal, claim, order, fill, day))
        await rt.faults.reached("after_send")

    return await _with_retries(lambda: rt.claims.finish(signal.signal_id, batch.terminals))


def order_for(signal: SignalInfo, claim: Claim, account: Account, stake: Decimal) -> Order:
    return Order(
        client_order_id=keys.trade_id(signal.signal_id, claim.subscription_id),
        signal_id=signal.signal_id,
        subscription_id=claim.subscription_id,
        account=account,
        asset=signal.asset,
        direction="CALL" if signal.direction == "CALL" else "PUT",
        expiry_seconds=signal.expiry_seconds,
        stake=stake,
        deadline_ms=signal.deadline_ms,
        signal_created_ms=signal.created_ms,
    )


async def _send(rt: WorkerRuntime, orders: list[Order]) -> list[Fill]:
    """Buy, in requests no larger than the broker takes; an unclear answer is reconciled."""
    size = max(1, rt.settings.drain_batch_size)
    chunks = [orders[i : i + size] for i in range(0, len(orders), size)]
    results = await asyncio.gather(*(_send_chunk(rt, chunk) for chunk in chunks))
    return [fill for chunk in results for fill in chunk]


async def _send_chunk(rt: WorkerRuntime, orders: list[Order]) -> list[Fill]:
    try:
        return await rt.adapter.buy(orders)
    except AmbiguousPurchase:
        logger.warning("ambiguous purchase of {} orders: reconciling", len(orders))
        return [await _reconcile(rt, order) for order in orders]
    except BrokerError as exc:
        return [Fill(o.client_order_id, "failed", exc.reason) for o in orders]


async def _reconcile(rt: WorkerRuntime, order: Order) -> Fill:
    recorded = await recorded_contracts(rt.redis, order.account.account_id)
    found = await rt.adapter.find_purchase(replace(order, recorded_contract_ids=recorded))
    return found or Fill(order.client_order_id, "failed", "broker_unreachable")


def terminal_for_fill(
    broker: str, signal: SignalInfo, claim: Claim, order: Order, fill: Fill, day: str
) -> Terminal:
    """The record of a purchase's answer; a placed one also waits for settlement."""
    at_ms = fill.broker_time_ms or keys.now_ms()
    record = execution_record(signal, claim, fill.status, fill.reason, at_ms, fill, broker)
    if fill.status != "placed":
        counted = max_trades_per_day(claim.subscription or {}) > 0
        return Terminal(
            claim.subscription_id,
            record,
            undo_daily_key=keys.daily(claim.subscription_id, day) if counted else None,
        )
    due_ms = at_ms + signal.expiry_seconds * 1000
    settle_member = {
        "trade_id": record["trade_id"],
        "signal_id": signal.signal_id,
        "channel_id": signal.channel_id,
        "subscription_id": claim.subscription_id,
        "subscriber_id": record["subscriber_id"],
        "account_id": order.account.account_id,
        "contract_id": fill.contract_id,
        "stake": record["stake"],
    }
    return Terminal(claim.subscription_id, record, due_ms, settle_member)

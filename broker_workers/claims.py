"""Claims: how a worker takes subscribers of a signal, marks them sent, and records the outcome.

Each subscriber of a signal moves through ``state:{signal}`` in Redis:

    (unclaimed) -> c|worker (claimed) -> s|worker|stake (sending) -> d (done)

A released claim goes back to ``r`` (unclaimed again); a released sending one waits in
``orphans`` for the reaper, with its state unchanged. Every transition is one Lua script over a
whole batch (:mod:`core.scripts`: claim, mark_sending, finish, release), so the cost per subscriber
is a few in-server operations, and each is atomic and safe to run twice.

This module binds them to one worker of one broker and builds the terminal records
(:func:`refused`, :func:`terminal_for_fill`), for the drain and the reaper alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from broker_workers.adapters.base import Fill, Order
from broker_workers.process import Refusal, max_trades_per_day
from core import keys, scripts
from core.clock import now_ms
from core.records import SignalInfo, execution_record
from core.scripts import Claimed, GateItem, Target, Terminal, Verdict
from core.shards import Shard


class ClaimBook:
    """The claim scripts, bound to one worker of one broker."""

    def __init__(
        self, redis: Target, worker_id: str, broker: str, *, remember_contracts: bool = True
    ) -> None:
        """``redis``: a Redis, or the hot-path shard (:mod:`core.shards`) the book claims on.
        ``remember_contracts``: keep each account's recorded contracts (see
        ``core/lua/finish.lua``), which only a broker whose purchases are found by their
        details needs."""
        self.redis = redis
        self.worker_id = worker_id
        self.broker = broker
        self.remember_contracts = remember_contracts

    async def claim(
        self, signal_id: str, channel_id: str, count: int
    ) -> tuple[SignalInfo | None, list[Claimed]]:
        return await scripts.claim(
            self.redis,
            signal_id=signal_id,
            channel_id=channel_id,
            broker=self.broker,
            worker_id=self.worker_id,
            count=count,
        )

    async def mark_sending(
        self,
        signal_id: str,
        items: Sequence[GateItem],
        day: str,
        send_margin_ms: int,
        lease_token: str = "",
    ) -> tuple[list[Verdict], int]:
        return await scripts.mark_sending(
            self.redis,
            signal_id=signal_id,
            worker_id=self.worker_id,
            day=day,
            send_margin_ms=send_margin_ms,
            items=items,
            lease_token=lease_token,
        )

    async def finish(self, signal_id: str, terminals: Sequence[Terminal]) -> int:
        """Publish each terminal record once; returns how many were new."""
        return await scripts.finish(
            self.redis,
            signal_id=signal_id,
            broker=self.broker,
            worker_id=self.worker_id,
            terminals=terminals,
        )

    def refused(self, signal: SignalInfo, claim: Claimed, refusal: Refusal, at_ms: int) -> Terminal:
        """The record of a subscriber that was not sent to the broker."""
        record = execution_record(
            signal,
            claim.subscription_id,
            claim.subscription,
            self.broker,
            refusal.status,
            refusal.reason,
            at_ms,
        )
        return Terminal(claim.subscription_id, record)

    def unbought(
        self, signal: SignalInfo, claim: Claimed, day: str, reason: str = "expired"
    ) -> Terminal:
        """The record of a subscriber marked sent and never bought, found after its deadline:
        ``skipped``/``expired`` (or ``not_replicated``: the worker held it back because no
        replica confirmed its mark), the trade the gate counted given back."""
        terminal = self.refused(signal, claim, Refusal("skipped", reason), now_ms())
        return replace(terminal, undo_daily_key=self._counted(claim, day))

    def _counted(self, claim: Claimed, day: str) -> str | None:
        """The daily counters the gate counted this subscriber's trade in, if it did."""
        if max_trades_per_day(claim.subscription) > 0:
            return keys.daily(claim.subscription_id, day)
        return None

    def for_fill(
        self, signal: SignalInfo, claim: Claimed, order: Order, fill: Fill, day: str
    ) -> Terminal:
        """The record of a purchase's answer. A placed one also waits for settlement; one not
        bought gives back the trade the gate counted."""
        at_ms = fill.broker_time_ms or now_ms()
        record = execution_record(
            signal,
            claim.subscription_id,
            claim.subscription,
            self.broker,
            fill.status,
            fill.reason,
            at_ms,
            contract_id=fill.contract_id,
            stake=float(fill.stake) if fill.stake is not None else None,
            payout=float(fill.payout) if fill.payout is not None else None,
        )
        if fill.status != "placed":
            return Terminal(claim.subscription_id, record, undo_daily_key=self._counted(claim, day))
        due_ms = at_ms + signal.expiry_seconds * 1000
        settle_member = {
            "trade_id": record["trade_id"],
            "signal_id": signal.signal_id,
            "channel_id": signal.channel_id,
            "subscription_id": claim.subscription_id,
            "subscriber_id": record["subscriber_id"],
            "account_id": order.account.account_id,
            "contract_id": fill.contract_id,
            "stake": record.get("stake"),
            "due_ms": due_ms,
        }
        recorded = order.account.account_id if self.remember_contracts else None
        return Terminal(claim.subscription_id, record, due_ms, settle_member, recorded)


async def recorded_contracts(redis: Target, account_id: str) -> frozenset[str]:
    """Contract ids already recorded for trades of ``account_id`` (see ``core/lua/finish.lua``),
    on the account's shard."""
    shard = redis if isinstance(redis, Shard) else Shard(redis)
    members: Any = await shard.redis.smembers(shard.key(keys.recorded_contracts(account_id)))
    return frozenset(str(m) for m in members)

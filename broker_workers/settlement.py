"""Settlement: ask the broker how each placed contract ended, once it is due, and record it once.

Placed contracts wait in ``settle:{broker}`` scored by their expiry. Any worker of that broker may
take due ones: taking one pushes its score a lease into the future instead of removing it, so a
worker that dies mid-settlement leaves it to be taken again. The record is written once per trade
(``settled:{S}:<subscription>`` guards it), whoever gets there first.

A contract still open after its expiry is asked about again every :data:`RETRY_OPEN_MS`; a lookup
that fails, again after the lease (:data:`LEASE_MS`). Neither goes on for ever: past
:data:`GIVE_UP_AFTER_MS` after its expiry the trade ends ``settlement_failed`` with the last reason
(the trade shows ``settlement_error``), and a trade whose account is gone ends so at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson
from loguru import logger
from redis.asyncio import Redis

from broker_workers.accounts import AccountBook
from broker_workers.adapters.base import BrokerAdapter, BrokerError, Outcome
from core import keys, scripts
from core.clock import now_ms, utc_day
from core.records import SettlementFailure, SettlementRecord
from core.shards import Shard

POLL_S = 0.25
TAKE_LIMIT = 200
LEASE_MS = 30_000  # a taken contract is taken again after this (its lookup failed, or we died)
RETRY_OPEN_MS = 1_000  # a contract the broker still calls open is asked about again after this
GIVE_UP_AFTER_MS = 60 * 60 * 1000  # after its expiry: the trade ends settlement_failed


class Settler:
    """Settles the due contracts of one broker with that broker's adapter."""

    def __init__(
        self,
        redis: Redis | Shard,
        broker: str,
        adapter: BrokerAdapter,
        accounts: AccountBook,
        give_up_after_ms: int = GIVE_UP_AFTER_MS,
    ) -> None:
        self.shard = redis if isinstance(redis, Shard) else Shard(redis)  # its settle queue's
        self.broker = broker
        self.adapter = adapter
        self.accounts = accounts
        self.give_up_after_ms = give_up_after_ms
        self.queue = keys.settle_queue(broker)

    async def run(self) -> None:
        while True:
            try:
                due = await scripts.take_due(
                    self.shard, schedule=self.queue, limit=TAKE_LIMIT, lease_ms=LEASE_MS
                )
                if due:
                    await asyncio.gather(*(self.settle(member) for member in due))
                else:
                    await asyncio.sleep(POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("settlement pass failed")
                await asyncio.sleep(POLL_S)

    async def settle(self, member: str) -> None:
        """Settle one taken contract, or leave it for its next turn, or give up on it."""
        item = orjson.loads(member)
        with logger.contextualize(signal_id=item["signal_id"], trade_id=item["trade_id"]):
            await self._settle(member, item)

    async def _settle(self, member: str, item: dict[str, Any]) -> None:
        trade = item["trade_id"]
        account = await self.accounts.get(item["account_id"])
        if account is None:
            logger.error("trade {} cannot settle: its account is gone", trade)
            await self._record_failure(member, item, "account_gone")
            return
        try:
            outcome = await self.adapter.outcome(account, item["contract_id"])
        except BrokerError as exc:
            logger.warning("trade {}: no outcome from {} yet ({})", trade, self.broker, exc)
            await self._later_or_give_up(member, item, exc.reason, None)
            return
        except Exception:
            logger.exception("trade {}: the outcome lookup failed", trade)
            await self._later_or_give_up(member, item, "broker_error", None)
            return
        if outcome is None:
            await self._later_or_give_up(member, item, "still_open", now_ms() + RETRY_OPEN_MS)
            return
        await self._record(member, item, outcome)

    async def _later_or_give_up(
        self, member: str, item: dict[str, Any], reason: str, retry_at_ms: int | None
    ) -> None:
        """Past the giving-up time, the failure is recorded; before, the contract waits for
        ``retry_at_ms`` (``None``: the end of its lease)."""
        due_ms = int(item.get("due_ms") or now_ms())
        if now_ms() > due_ms + self.give_up_after_ms:
            logger.error("trade {}: giving up on its settlement ({})", item["trade_id"], reason)
            await self._record_failure(member, item, reason)
        elif retry_at_ms is not None:
            await self.shard.redis.zadd(self.shard.key(self.queue), {member: retry_at_ms})

    async def _record(self, member: str, item: dict[str, Any], outcome: Outcome) -> None:
        record = SettlementRecord(
            signal_id=item["signal_id"],
            trade_id=item["trade_id"],
            channel_id=item["channel_id"],
            subscriber_id=item["subscriber_id"],
            broker=self.broker,
            contract_id=item["contract_id"],
            outcome=outcome.outcome,
            profit=float(outcome.profit),
            settled_ms=outcome.settled_at_ms,
        )
        loss = -float(outcome.profit) if outcome.profit < 0 else 0.0
        await self._publish(member, item, "settlement", record, loss, outcome.settled_at_ms)

    async def _record_failure(self, member: str, item: dict[str, Any], reason: str) -> None:
        at_ms = now_ms()
        record = SettlementFailure(
            signal_id=item["signal_id"],
            trade_id=item["trade_id"],
            channel_id=item["channel_id"],
            subscriber_id=item["subscriber_id"],
            contract_id=item["contract_id"],
            reason=reason,
            failed_ms=at_ms,
        )
        await self._publish(member, item, "settlement_failed", record, 0.0, at_ms)

    async def _publish(
        self,
        member: str,
        item: dict[str, Any],
        kind: Literal["settlement", "settlement_failed"],
        record: SettlementRecord | SettlementFailure,
        loss: float,
        at_ms: int,
    ) -> None:
        await scripts.record_settlement(
            self.shard,
            broker=self.broker,
            member=member,
            signal_id=item["signal_id"],
            subscription_id=item["subscription_id"],
            kind=kind,
            record=record,
            loss=loss,
            day=utc_day(at_ms),
        )

"""The records a signal leaves, defined once: their wire form on the results stream, the events
the live feed carries and the documents the store keeps.

Workers (and the scripts that end a subscriber nothing was sent for: ``lua/lib/end_unsent.lua``)
write :class:`ExecutionRecord` and :class:`SettlementRecord` to the results stream; the hub's
relay stores them (:func:`trade_document`, :func:`settlement_document`) and then emits them
(:func:`execution_event`, :func:`settlement_event`); the REST API shows the stored trade
(:func:`trade_view`). Events carry ``trade_id``, so a client drops a repeat (a hub that died
between storing and acknowledging is taken over, and its records are emitted again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from core.clock import datetime_of, iso
from core.keys import trade_id


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """A signal as the workers read it from its hash (``sig:{S}``), which the expansion wrote."""

    signal_id: str
    channel_id: str
    asset: str
    direction: str
    expiry_seconds: int
    created_ms: int
    deadline_ms: int
    status: str

    @classmethod
    def from_hash(cls, signal_id: str, fields: Mapping[str, str]) -> SignalInfo:
        return cls(
            signal_id=signal_id,
            channel_id=fields["channel_id"],
            asset=fields["asset"],
            direction=fields["direction"],
            expiry_seconds=int(fields["expiry_seconds"]),
            created_ms=int(fields["created_ms"]),
            deadline_ms=int(fields["deadline_ms"]),
            status=fields["status"],
        )


class ExecutionRecord(TypedDict):
    """One subscriber's terminal record for one signal: exactly one per counted subscriber."""

    signal_id: str
    trade_id: str
    channel_id: str
    subscription_id: str
    subscriber_id: str | None
    account_id: str | None
    broker: str
    asset: str
    direction: str
    expiry_seconds: int
    status: str  # placed, rejected, skipped, failed
    reason: str | None
    signal_created_ms: int
    executed_ms: int  # the broker's acceptance, or when we gave up
    latency_ms: int
    contract_id: NotRequired[str | None]  # placed only
    stake: NotRequired[float | None]
    payout: NotRequired[float | None]


class SettlementRecord(TypedDict):
    signal_id: str
    trade_id: str
    channel_id: str
    subscriber_id: str | None
    broker: str  # for the hubs' ``ctc_settlements_total``; not a field of the event
    contract_id: str
    outcome: str  # won, lost, refund
    profit: float
    settled_ms: int


class SettlementFailure(TypedDict):
    """A placed trade whose outcome the broker would not tell in time: it stays visible as such."""

    signal_id: str
    trade_id: str
    channel_id: str
    subscriber_id: str | None
    contract_id: str
    reason: str
    failed_ms: int


def execution_record(
    signal: SignalInfo,
    subscription_id: str,
    subscription: Mapping[str, Any] | None,
    broker: str,
    status: str,
    reason: str | None,
    at_ms: int,
    *,
    contract_id: str | None = None,
    stake: float | None = None,
    payout: float | None = None,
) -> ExecutionRecord:
    sub = subscription or {}
    record: ExecutionRecord = {
        "signal_id": signal.signal_id,
        "trade_id": trade_id(signal.signal_id, subscription_id),
        "channel_id": signal.channel_id,
        "subscription_id": subscription_id,
        "subscriber_id": sub.get("user_id"),
        "account_id": sub.get("account_id"),
        "broker": broker,
        "asset": signal.asset,
        "direction": signal.direction,
        "expiry_seconds": signal.expiry_seconds,
        "status": status,
        "reason": reason,
        "signal_created_ms": signal.created_ms,
        "executed_ms": at_ms,
        "latency_ms": max(0, at_ms - signal.created_ms),
    }
    if status == "placed":
        record["contract_id"] = contract_id
        record["stake"] = stake
        record["payout"] = payout
    return record


# What the live feed carries of each record (``execution`` and ``settlement`` events).
EXECUTION_EVENT = (
    "signal_id", "trade_id", "subscriber_id", "broker", "status", "reason", "contract_id",
    "stake", "payout", "latency_ms", "channel_id", "asset", "direction", "expiry_seconds",
)  # fmt: skip
SETTLEMENT_EVENT = ("signal_id", "trade_id", "subscriber_id", "channel_id", "outcome", "profit")


def execution_event(record: Mapping[str, Any]) -> dict[str, Any]:
    return {f: record.get(f) for f in EXECUTION_EVENT}


def settlement_event(record: Mapping[str, Any]) -> dict[str, Any]:
    return {f: record.get(f) for f in SETTLEMENT_EVENT}


def trade_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """The store's trade (``_id`` = trade id) as an execution record sets it."""
    doc = {
        k: v for k, v in record.items() if k not in ("trade_id", "executed_ms", "signal_created_ms")
    }
    doc["created_at"] = datetime_of(record["executed_ms"])
    return doc


def settlement_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a settlement record sets on its trade."""
    return {
        "signal_id": record["signal_id"],
        "channel_id": record["channel_id"],
        "subscriber_id": record["subscriber_id"],
        "outcome": record["outcome"],
        "profit": record["profit"],
        "settled_at": datetime_of(record["settled_ms"]),
    }


def settlement_failure_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a settlement given up on sets on its trade: why, and when."""
    return {
        "signal_id": record["signal_id"],
        "channel_id": record["channel_id"],
        "subscriber_id": record["subscriber_id"],
        "settlement_error": record["reason"],
        "settlement_failed_at": datetime_of(record["failed_ms"]),
    }


TRADE_VIEW = (
    "signal_id", "channel_id", "subscription_id", "subscriber_id", "broker", "asset",
    "direction", "expiry_seconds", "status", "reason", "contract_id", "stake", "payout",
    "latency_ms", "outcome", "profit", "settlement_error", "created_at", "settled_at",
)  # fmt: skip


def trade_view(trade: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trade as the REST API shows it."""
    return {"id": trade["_id"], "trade_id": trade["_id"], **{f: trade.get(f) for f in TRADE_VIEW}}


def signal_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """The store's signal (``_id`` = signal id) as the expansion's ``signal`` record sets it."""

    def at(field: str) -> datetime | None:
        return datetime_of(record[field]) if field in record else None

    return {
        "channel_id": record["channel_id"],
        "sender_id": record["sender_id"],
        "asset": record["asset"],
        "direction": record["direction"],
        "expiry_seconds": record["expiry_seconds"],
        "client_signal_id": record.get("client_signal_id") or None,
        "created_at": datetime_of(record["created_ms"]),
        "deadline_at": at("deadline_ms"),
        "fanout": record["fanout"],
        "status": record.get("status", "active"),
        "scheduled_at": at("scheduled_ms"),
    }


def signal_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``signal`` event of a fanned-out or scheduled signal."""
    return {
        "signal_id": record["id"],
        "status": record.get("status", "active"),
        "fanout": record.get("fanout"),
        "scheduled_at": iso(record.get("scheduled_ms")),
    }

"""The process phase: what to buy for one subscriber, or why not to.

Pure functions over the directory entries a claim brought back and the broker's capabilities, so
the rules of stake sizing can be read (and tested) on their own. The send phase never sees a
subscriber that this phase turned away. The risk limits counted per day (loss, trades) are checked
at the send gate, atomically with counting the trade (``core/lua/mark_sending.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from broker_workers.adapters.base import Account, Fence, Order
from core.brokers import Capabilities
from core.keys import trade_id
from core.records import SignalInfo
from core.scripts import Claimed, GateItem

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a subscriber ends without a purchase: its terminal status and reason."""

    status: str
    reason: str


# The send gate's verdicts (core.scripts.mark_sending) that end a subscriber without a purchase;
# "lost" is not one: the claim is someone else's now, and they record it.
GATE_REFUSALS = {
    "cancelled": Refusal("skipped", "cancelled"),
    "expired": Refusal("skipped", "expired"),
    "daily_loss_limit": Refusal("rejected", "daily_loss_limit"),
    "max_trades_per_day": Refusal("rejected", "max_trades_per_day"),
}


def precheck(claim: Claimed, signal: SignalInfo, capabilities: Capabilities) -> Refusal | None:
    """Refusals that need no balance: gone, paused, or a trade the broker does not offer."""
    sub = claim.subscription
    if sub is None:
        return Refusal("skipped", "unsubscribed")
    if sub.get("paused"):  # before the account: a removed account pauses what used it
        return Refusal("skipped", "paused")
    if claim.account is None:
        return Refusal("failed", "account_missing")
    if signal.asset not in capabilities["assets"]:
        return Refusal("rejected", "asset_not_offered")
    if not capabilities["min_expiry_s"] <= signal.expiry_seconds <= capabilities["max_expiry_s"]:
        return Refusal("rejected", "expiry_not_offered")
    return None


def needs_balance(sub: dict[str, Any]) -> bool:
    return bool(sub["stake"]["mode"] == "percent")


def stake_for(
    sub: dict[str, Any], balance: Decimal | None, capabilities: Capabilities
) -> Decimal | Refusal:
    """The stake from the subscription's mode, capped by ``max_stake``, within the broker's range.

    Percent stakes are cut down to the cent (never rounded up past what the subscriber allowed).
    A stake below the broker's minimum is a rejection, not a silent top-up.
    """
    stake_cfg = sub["stake"]
    if stake_cfg["mode"] == "fixed":
        stake = Decimal(str(stake_cfg["amount"]))
    else:
        if balance is None:
            return Refusal("failed", "balance_unavailable")
        stake = balance * Decimal(str(stake_cfg["percent"])) / 100
    max_stake = (sub.get("limits") or {}).get("max_stake")
    if max_stake is not None:
        stake = min(stake, Decimal(str(max_stake)))
    stake = min(stake, capabilities["max_stake"]).quantize(CENT, rounding=ROUND_DOWN)
    if balance is not None and stake > balance:
        return Refusal("rejected", "insufficient_balance")
    if stake < capabilities["min_stake"]:
        return Refusal("rejected", "stake_below_minimum")
    return stake


def max_trades_per_day(sub: dict[str, Any] | None) -> int:
    value = ((sub or {}).get("limits") or {}).get("max_trades_per_day")
    return int(value) if value is not None else 0


def gate_item(claim: Claimed, stake: Decimal) -> GateItem:
    """What the send gate checks for this subscriber: its daily limits, and the stake it keeps."""
    limits = (claim.subscription or {}).get("limits")
    if not limits:  # most subscribers: nothing to count
        return GateItem(claim.subscription_id, str(stake))
    return GateItem(
        claim.subscription_id,
        str(stake),
        max_trades_per_day=max_trades_per_day(claim.subscription),
        daily_loss_limit=float(limits.get("daily_loss_limit") or 0),
    )


def order_for(
    signal: SignalInfo, claim: Claimed, account: Account, stake: Decimal, fence: Fence | None = None
) -> Order:
    return Order(
        client_order_id=trade_id(signal.signal_id, claim.subscription_id),
        signal_id=signal.signal_id,
        subscription_id=claim.subscription_id,
        account=account,
        asset=signal.asset,
        direction="CALL" if signal.direction == "CALL" else "PUT",
        expiry_seconds=signal.expiry_seconds,
        stake=stake,
        deadline_ms=signal.deadline_ms,
        signal_created_ms=signal.created_ms,
        fence=fence,
    )

"""The process phase: what to buy for one subscriber, or why not to.

Pure functions over the directory entries a claim brought back, so the rules of stake sizing and
risk limits can be read (and tested) on their own. The send phase never sees a subscriber that
this phase turned away.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from broker_workers.adapters.base import Capabilities
from broker_workers.claims import Claim

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Refusal:
    """The subscriber will not be sent to the broker: a terminal ``skipped`` or ``rejected``."""

    status: str
    reason: str


def precheck(claim: Claim) -> Refusal | None:
    """Refusals that need no balance: gone, paused, or a risk limit already reached."""
    sub = claim.subscription
    if sub is None:
        return Refusal("skipped", "unsubscribed")
    if sub.get("paused"):  # before the account: a removed account pauses what used it
        return Refusal("skipped", "paused")
    if claim.account is None:
        return Refusal("failed", "account_missing")
    limits: dict[str, Any] = sub.get("limits") or {}
    loss_limit = limits.get("daily_loss_limit")
    if loss_limit is not None and claim.loss_today >= float(loss_limit):
        return Refusal("rejected", "daily_loss_limit")
    max_trades = limits.get("max_trades_per_day")
    if max_trades is not None and claim.trades_today >= int(max_trades):
        return Refusal("rejected", "max_trades_per_day")
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


def max_trades_per_day(sub: dict[str, Any]) -> int:
    value = (sub.get("limits") or {}).get("max_trades_per_day")
    return int(value) if value is not None else 0

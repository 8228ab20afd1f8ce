"""Stake sizing and risk limits of the process phase."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from broker_workers.adapters.paper import PaperBroker
from broker_workers.claims import Claim
from broker_workers.process import Refusal, precheck, stake_for

CAPS = PaperBroker.capabilities


def sub(stake: dict[str, Any], **limits: Any) -> dict[str, Any]:
    return {"stake": stake, "limits": limits, "paused": False, "user_id": "u", "account_id": "a"}


def test_fixed_stake_capped_by_max_stake() -> None:
    assert stake_for(sub({"mode": "fixed", "amount": 25}), None, CAPS) == Decimal("25.00")
    capped = stake_for(sub({"mode": "fixed", "amount": 25}, max_stake=12.5), None, CAPS)
    assert capped == Decimal("12.50")


def test_percent_stake_is_cut_down_to_the_cent() -> None:
    stake = stake_for(sub({"mode": "percent", "percent": 1.5}), Decimal("1234.56"), CAPS)
    assert stake == Decimal("18.51")  # 18.5184 cut, never rounded up


def test_percent_needs_a_balance_and_minimums_hold() -> None:
    assert stake_for(sub({"mode": "percent", "percent": 1}), None, CAPS) == Refusal(
        "failed", "balance_unavailable"
    )
    assert stake_for(sub({"mode": "percent", "percent": 1}), Decimal("50"), CAPS) == Refusal(
        "rejected", "stake_below_minimum"
    )
    assert stake_for(sub({"mode": "fixed", "amount": 20}), Decimal("10"), CAPS) == Refusal(
        "rejected", "insufficient_balance"
    )


def claim(entry: dict[str, Any] | None, trades: int = 0, loss: float = 0.0) -> Claim:
    return Claim("s1", entry, {"id": "a"}, trades, loss)


def test_precheck_reasons() -> None:
    fixed = {"mode": "fixed", "amount": 5}
    assert precheck(claim(None)) == Refusal("skipped", "unsubscribed")
    assert precheck(claim({**sub(fixed), "paused": True})) == Refusal("skipped", "paused")
    assert precheck(claim(sub(fixed, daily_loss_limit=50), loss=50)) == Refusal(
        "rejected", "daily_loss_limit"
    )
    assert precheck(claim(sub(fixed, daily_loss_limit=50), loss=49.99)) is None
    assert precheck(claim(sub(fixed, max_trades_per_day=3), trades=3)) == Refusal(
        "rejected", "max_trades_per_day"
    )
    assert precheck(Claim("s1", sub(fixed), None, 0, 0)) == Refusal("failed", "account_missing")

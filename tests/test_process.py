"""Stake sizing and risk limits of the process phase."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from broker_workers.process import Refusal, precheck, stake_for
from core.brokers import CATALOGUE, Capabilities
from core.records import SignalInfo
from core.scripts import Claimed

CAPS = CATALOGUE["paper"].capabilities
SIGNAL = SignalInfo("sig", "c1", "EURUSD", "CALL", 60, 0, 2000, "active")


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


def claim(entry: dict[str, Any] | None) -> Claimed:
    return Claimed("s1", entry, {"id": "a"})


def test_precheck_reasons() -> None:
    fixed = {"mode": "fixed", "amount": 5}
    assert precheck(claim(None), SIGNAL, CAPS) == Refusal("skipped", "unsubscribed")
    paused = claim({**sub(fixed), "paused": True})
    assert precheck(paused, SIGNAL, CAPS) == Refusal("skipped", "paused")
    assert precheck(claim(sub(fixed)), SIGNAL, CAPS) is None
    missing = Claimed("s1", sub(fixed), None)
    assert precheck(missing, SIGNAL, CAPS) == Refusal("failed", "account_missing")


def test_what_the_broker_does_not_offer_is_refused_by_its_capabilities() -> None:
    fixed = claim(sub({"mode": "fixed", "amount": 5}))
    short = Capabilities({**CAPS, "min_expiry_s": 120, "assets": {"R_100": "R_100"}})
    assert precheck(fixed, SIGNAL, short) == Refusal("rejected", "asset_not_offered")
    r_100 = SignalInfo("sig", "c1", "R_100", "CALL", 60, 0, 2000, "active")
    assert precheck(fixed, r_100, short) == Refusal("rejected", "expiry_not_offered")
    assert precheck(fixed, r_100, Capabilities({**short, "min_expiry_s": 60})) is None
    big = sub({"mode": "fixed", "amount": 80})
    assert stake_for(big, None, Capabilities({**CAPS, "max_stake": Decimal(50)})) == Decimal(50)

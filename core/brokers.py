"""The broker catalogue, as data: which brokers exist, the adapter that serves each, what each
supports.

The hub reads capabilities from here (the assets it accepts, the expiry and stake ranges it
checks, the credentials an account needs) without importing any adapter; a worker imports only
the adapter named here for its broker. Generic code reads :class:`Capabilities`, never asks which
broker it is. A new broker is one entry here, its adapter (see
``broker_workers/adapters/_template.py``), one ``worker_<name>`` line in the Procfile and the
adapter conformance suite green (``tests/test_adapter_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict


class Capabilities(TypedDict):
    """What a broker supports."""

    min_stake: Decimal  # smaller stakes are refused (the API at subscription, the worker)
    max_stake: Decimal  # larger fixed stakes are refused by the API; others are cut down to it
    min_expiry_s: int  # a signal's expiry outside [min, max] is not offered on this broker
    max_expiry_s: int
    max_orders_per_request: int  # the most orders one ``buy`` call is given
    buys_per_minute: int  # rate budget per connection until the broker says otherwise; 0 = none
    currency: str  # an account's currency when its owner names none
    assets: dict[str, str]  # canonical asset name -> the broker's own symbol
    credential_fields: tuple[str, ...]  # what a subscriber must give to connect an account
    reports_balances: bool  # the adapter's ``balances`` works: percent stakes are possible
    # find_purchase matches a purchase by its details (the broker keeps no id of ours): the
    # contracts already recorded for an account must then be remembered, to be excluded
    finds_purchases_by_details: bool


DEFAULT_CAPABILITIES = Capabilities(
    min_stake=Decimal("1"),
    max_stake=Decimal("50000"),
    min_expiry_s=15,
    max_expiry_s=24 * 3600,
    max_orders_per_request=1,
    buys_per_minute=0,
    currency="USD",
    assets={},
    credential_fields=(),
    reports_balances=False,
    finds_purchases_by_details=False,
)

# The canonical asset names of the API (``GET /api/assets``); each broker maps them to its own.
ASSETS = (
    "EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCAD", "EURJPY",
    "R_10", "R_25", "R_50", "R_75", "R_100",
)  # fmt: skip


@dataclass(frozen=True)
class Broker:
    name: str
    adapter: str  # ``module:Class``, imported by that broker's workers only
    capabilities: Capabilities


CATALOGUE: dict[str, Broker] = {
    "paper": Broker(
        "paper",
        "broker_workers.adapters.paper.broker:PaperBroker",
        Capabilities(
            {
                **DEFAULT_CAPABILITIES,
                "max_orders_per_request": 1000,
                "assets": {asset: asset for asset in ASSETS},
                "reports_balances": True,
            }
        ),
    ),
    "deriv": Broker(
        "deriv",
        "broker_workers.adapters.deriv.broker:DerivBroker",
        Capabilities(
            {
                **DEFAULT_CAPABILITIES,
                "min_stake": Decimal("0.35"),
                "max_orders_per_request": 100,  # tokens of one buy_contract_for_multiple_accounts
                # Our share (90 %) of the 360 requests a minute Deriv documents for buy's group,
                # per connection, until its website_status says otherwise.
                "buys_per_minute": 324,
                "assets": {
                    **{fx: f"frx{fx}" for fx in ASSETS if not fx.startswith("R_")},
                    **{index: index for index in ASSETS if index.startswith("R_")},
                },
                "credential_fields": ("token",),
                "reports_balances": True,
                "finds_purchases_by_details": True,
            }
        ),
    ),
}


class UnknownBroker(LookupError):
    pass


def broker(name: str) -> Broker:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownBroker(f"unknown broker {name!r}; one of {', '.join(CATALOGUE)}") from None


def capabilities_of(names: Iterable[str]) -> dict[str, Capabilities]:
    """The capabilities of the brokers ``names`` (a deployment's ``BROKERS``), by name."""
    return {name: broker(name).capabilities for name in names}

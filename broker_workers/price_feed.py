"""A seeded synthetic price feed, shared by the paper broker and the Deriv simulator.

Prices are a pure function of (seed, asset, second): every process that asks gets the same quote
without sharing state, settlement can be recomputed at any time, and a test run is repeatable.
The path is a sum of slow seeded waves plus per-second noise, rounded to the asset's pip size,
so rises, falls and the occasional unchanged price (a refund) all happen.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct

BASE_PRICES: dict[str, tuple[float, int]] = {
    # canonical asset -> (base price, decimals)
    "EURUSD": (1.0850, 5),
    "GBPUSD": (1.2700, 5),
    "USDJPY": (151.20, 3),
    "AUDUSD": (0.6550, 5),
    "USDCAD": (1.3600, 5),
    "EURJPY": (163.90, 3),
    "R_10": (6000.0, 3),
    "R_25": (2500.0, 3),
    "R_50": (300.0, 4),
    "R_75": (90000.0, 2),
    "R_100": (1200.0, 2),
}


def _unit(seed: int, asset: str, tag: str, n: int) -> float:
    """A deterministic number in [-1, 1) for (seed, asset, tag, n)."""
    digest = hashlib.blake2b(f"{seed}:{asset}:{tag}:{n}".encode(), digest_size=8).digest()
    value: int = struct.unpack(">Q", digest)[0]
    return value / 2**63 - 1.0


def price(asset: str, at_ms: int, seed: int) -> float:
    """The quote of ``asset`` at the instant ``at_ms`` (Unix milliseconds), in whole seconds."""
    return _price_at(asset, at_ms // 1000, seed)


@functools.lru_cache(maxsize=4096)
def _price_at(asset: str, second: int, seed: int) -> float:
    """Cached: a signal's purchases, all in the same second or two, ask for the same quote."""
    base, decimals = BASE_PRICES[asset]
    waves = sum(
        0.0015 * _unit(seed, asset, "amp", k) * math.sin(2 * math.pi * second / period + k)
        for k, period in enumerate((97, 601, 3607))
    )
    noise = 0.0004 * _unit(seed, asset, "tick", second)
    return round(base * (1 + waves + noise), decimals)


def settle(
    direction: str, entry: float, exit_: float, stake: float, payout: float
) -> tuple[str, float]:
    """(outcome, net profit) of a rise/fall contract: equal prices refund the stake."""
    if exit_ == entry:
        return "refund", 0.0
    won = exit_ > entry if direction == "CALL" else exit_ < entry
    return ("won", round(payout - stake, 2)) if won else ("lost", -round(stake, 2))

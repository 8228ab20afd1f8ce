"""The paper broker's settings."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Env


@dataclass(frozen=True)
class PaperSettings:
    latency_ms: float  # stands in for a remote broker's round trip
    payout_rate: float  # a winning contract pays stake * (1 + payout_rate)
    start_balance: float  # an account's balance before its first purchase
    price_seed: int  # the seeded price feed (the Deriv simulator's too)
    redis_url: str | None  # the ledger's own Redis; None = the hot path's REDIS_URL

    @classmethod
    def read(cls, env: Env) -> PaperSettings:
        return cls(
            latency_ms=env("PAPER_LATENCY_MS", cast=float, default=50.0),
            payout_rate=env("PAPER_PAYOUT_RATE", cast=float, default=0.85),
            start_balance=env("PAPER_START_BALANCE", cast=float, default=10_000.0),
            price_seed=env("PRICE_SEED", cast=int, default=7),
            redis_url=env.optional("PAPER_REDIS_URL"),
        )

"""The Deriv simulator's settings (it needs no secret: it stands in for Deriv in development)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from core.settings import CommonSettings, Env, common, or_exit


@dataclass(frozen=True)
class SimSettings(CommonSettings):
    port: int  # DERIV_SIM_PORT
    accounts_file: str | None  # DERIV_SIM_ACCOUNTS: a JSON file of accounts opened at start
    price_seed: int  # PRICE_SEED, as the paper broker's


def load_settings(environ: Mapping[str, str] | None = None) -> SimSettings:
    env = Env(environ)
    return SimSettings(
        **common(env),
        port=env("DERIV_SIM_PORT", cast=int, default=8765),
        accounts_file=env.optional("DERIV_SIM_ACCOUNTS"),
        price_seed=env("PRICE_SEED", cast=int, default=7),
    )


@lru_cache(maxsize=1)
def get_settings() -> SimSettings:
    return or_exit(load_settings)

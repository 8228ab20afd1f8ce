"""The hub's configuration, read once from the environment (the rules: :mod:`core.settings`).

The hub is the only process that talks to the store and signs tokens, so it alone needs
``MONGODB_URL`` (outside development) and ``JWT_SECRET``; it seals broker credentials, so it needs
``BROKER_CREDENTIALS_KEY`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from starlette.datastructures import CommaSeparatedStrings, Secret

from core.settings import (
    DEV_JWT_SECRET,
    CommonSettings,
    Env,
    common,
    jwt_secret_problem,
    or_exit,
)


@dataclass(frozen=True)
class Settings(CommonSettings):
    mongodb_url: str | None
    mongodb_db: str
    embedded_store_path: str | None
    jwt_secret: Secret
    jwt_issuer: str
    jwt_audience: str
    access_token_ttl_s: int
    refresh_token_ttl_s: int
    broker_credentials_key: Secret
    port: int
    cors_origins: list[str]
    frontend_dir: str
    default_max_signal_delay_ms: int
    drain_batch_size: int
    schedule_max_ahead_s: int
    login_rate_limit_per_min: int
    login_ip_rate_limit_per_min: int
    login_account_rate_limit_per_hour: int
    signup_rate_limit_per_min: int
    signal_rate_limit_per_s: int
    control_rate_limit_per_s: int
    max_body_bytes: int
    broker_check_timeout_s: float  # how long an account check waits for its broker's workers
    claim_lease_s: float  # the workers' heartbeat lease (CLAIM_LEASE_S): the console's last beat


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment)."""
    env = Env(environ)
    mongodb_url = env.optional("MONGODB_URL")
    if not env.development and not mongodb_url:
        env.problems.append("MONGODB_URL is not set (the embedded store is for development)")
    jwt_secret = env.secret("JWT_SECRET", DEV_JWT_SECRET, jwt_secret_problem)
    credentials_key = env.credentials_key()
    env.check()
    return Settings(
        **common(env),
        mongodb_url=mongodb_url,
        mongodb_db=env("MONGODB_DB", default="cloud_trade_copier"),
        embedded_store_path=env.optional("EMBEDDED_STORE_PATH"),
        jwt_secret=jwt_secret,
        jwt_issuer=env("JWT_ISSUER", default="cloud-trade-copier"),
        jwt_audience=env("JWT_AUDIENCE", default="cloud-trade-copier-api"),
        access_token_ttl_s=env("ACCESS_TOKEN_TTL_S", cast=int, default=15 * 60),
        refresh_token_ttl_s=env("REFRESH_TOKEN_TTL_S", cast=int, default=30 * 24 * 3600),
        broker_credentials_key=credentials_key,
        port=env("PORT", cast=int, default=8000),
        cors_origins=list(env("CORS_ORIGINS", cast=CommaSeparatedStrings, default="")),
        frontend_dir=env("FRONTEND_DIR", default="frontend/dist"),
        default_max_signal_delay_ms=env("DEFAULT_MAX_SIGNAL_DELAY_MS", cast=int, default=2000),
        # How many drain jobs a signal needs: one per batch of work, at most one per worker.
        drain_batch_size=env("DRAIN_BATCH_SIZE", cast=int, default=100),
        schedule_max_ahead_s=env("SCHEDULE_MAX_AHEAD_S", cast=int, default=24 * 3600),
        # Login attempts: per address and email, per address across emails (a spray over many
        # accounts), per account across addresses (a spray from many addresses).
        login_rate_limit_per_min=env("LOGIN_RATE_LIMIT_PER_MIN", cast=int, default=10),
        login_ip_rate_limit_per_min=env("LOGIN_IP_RATE_LIMIT_PER_MIN", cast=int, default=30),
        login_account_rate_limit_per_hour=env(
            "LOGIN_ACCOUNT_RATE_LIMIT_PER_HOUR", cast=int, default=60
        ),
        signup_rate_limit_per_min=env("SIGNUP_RATE_LIMIT_PER_MIN", cast=int, default=20),
        signal_rate_limit_per_s=env("SIGNAL_RATE_LIMIT_PER_S", cast=int, default=20),
        # Socket.IO join and cancel, per user.
        control_rate_limit_per_s=env("CONTROL_RATE_LIMIT_PER_S", cast=int, default=10),
        max_body_bytes=env("MAX_BODY_BYTES", cast=int, default=1024 * 1024),
        broker_check_timeout_s=env("BROKER_CHECK_TIMEOUT_S", cast=float, default=10.0),
        claim_lease_s=env("CLAIM_LEASE_S", cast=float, default=5.0),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The hub's settings, read on first use; a refused configuration stops the process with
    one line (exit status 2)."""
    return or_exit(load_settings)

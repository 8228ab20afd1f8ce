"""Configuration, read once from the environment.

Every variable has a working default for the demo. In production (``APP_ENV=production``) a missing
secret is a startup error rather than a silent default, so a misconfigured deployment fails loudly.
Secrets are held as :class:`starlette.datastructures.Secret`, whose ``repr`` never shows the value.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings, Secret

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"  # noqa: S105 - demo default
DEV_CREDENTIALS_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"ctc-dev-only-key").digest())


class ConfigurationError(RuntimeError):
    """A required setting is missing or malformed; raised at startup."""


@dataclass(frozen=True)
class Settings:
    app_env: str
    redis_url: str
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
    deriv_ws_url: str
    deriv_sim_port: int
    deriv_app_id: str
    deriv_connections: int
    cors_origins: list[str]
    brokers: list[str]
    log_json: bool
    log_level: str
    frontend_dir: str
    default_max_signal_delay_ms: int
    drain_batch_size: int
    drain_concurrency: int
    send_margin_ms: int
    worker_heartbeat_s: float
    claim_lease_s: float
    reconcile_after_ms: int
    reaper_interval_ms: int
    redrive_stall_ms: int
    schedule_max_ahead_s: int
    fault_injection: bool
    paper_latency_ms: float
    paper_payout_rate: float
    paper_start_balance: float
    price_seed: int
    login_rate_limit_per_min: int
    signup_rate_limit_per_min: int
    signal_rate_limit_per_s: int

    @property
    def production(self) -> bool:
        return self.app_env == "production"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment)."""
    config = Config(environ=dict(os.environ if environ is None else environ))
    app_env = config("APP_ENV", default="development")
    production = app_env == "production"

    def secret(name: str, dev_default: str) -> Secret:
        value = config(name, default=None)
        if value:
            return Secret(value)
        if production:
            raise ConfigurationError(f"{name} must be set when APP_ENV=production")
        return Secret(dev_default)

    mongodb_url = config("MONGODB_URL", default=None) or None
    if production and not mongodb_url:
        raise ConfigurationError("MONGODB_URL must be set when APP_ENV=production")

    return Settings(
        app_env=app_env,
        redis_url=config("REDIS_URL", default="redis://127.0.0.1:6379/0"),
        mongodb_url=mongodb_url,
        mongodb_db=config("MONGODB_DB", default="cloud_trade_copier"),
        embedded_store_path=config("EMBEDDED_STORE_PATH", default=None) or None,
        jwt_secret=secret("JWT_SECRET", DEV_JWT_SECRET),
        jwt_issuer=config("JWT_ISSUER", default="cloud-trade-copier"),
        jwt_audience=config("JWT_AUDIENCE", default="cloud-trade-copier-api"),
        access_token_ttl_s=config("ACCESS_TOKEN_TTL_S", cast=int, default=15 * 60),
        refresh_token_ttl_s=config("REFRESH_TOKEN_TTL_S", cast=int, default=30 * 24 * 3600),
        broker_credentials_key=secret("BROKER_CREDENTIALS_KEY", DEV_CREDENTIALS_KEY.decode()),
        port=config("PORT", cast=int, default=8000),
        deriv_ws_url=config("DERIV_WS_URL", default="ws://127.0.0.1:8765/websockets/v3"),
        deriv_sim_port=config("DERIV_SIM_PORT", cast=int, default=8765),
        deriv_app_id=config("DERIV_APP_ID", default="1089"),
        # Persistent Deriv sessions per worker process, each with its own rate budget.
        deriv_connections=config("DERIV_CONNECTIONS", cast=int, default=2),
        cors_origins=list(config("CORS_ORIGINS", cast=CommaSeparatedStrings, default="")),
        brokers=list(config("BROKERS", cast=CommaSeparatedStrings, default="paper,deriv")),
        log_json=config("LOG_JSON", cast=bool, default=False),
        log_level=config("LOG_LEVEL", default="INFO"),
        frontend_dir=config("FRONTEND_DIR", default="frontend/public"),
        default_max_signal_delay_ms=config("DEFAULT_MAX_SIGNAL_DELAY_MS", cast=int, default=2000),
        drain_batch_size=config("DRAIN_BATCH_SIZE", cast=int, default=100),
        drain_concurrency=config("DRAIN_CONCURRENCY", cast=int, default=8),
        send_margin_ms=config("SEND_MARGIN_MS", cast=int, default=150),
        worker_heartbeat_s=config("WORKER_HEARTBEAT_S", cast=float, default=1.0),
        claim_lease_s=config("CLAIM_LEASE_S", cast=float, default=5.0),
        reconcile_after_ms=config("RECONCILE_AFTER_MS", cast=int, default=2000),
        reaper_interval_ms=config("REAPER_INTERVAL_MS", cast=int, default=250),
        redrive_stall_ms=config("REDRIVE_STALL_MS", cast=int, default=1000),
        schedule_max_ahead_s=config("SCHEDULE_MAX_AHEAD_S", cast=int, default=24 * 3600),
        # The fault suite's kill points (broker_workers/faults.py); never set in production.
        fault_injection=config("FAULT_INJECTION", cast=bool, default=False),
        paper_latency_ms=config("PAPER_LATENCY_MS", cast=float, default=50.0),
        paper_payout_rate=config("PAPER_PAYOUT_RATE", cast=float, default=0.85),
        paper_start_balance=config("PAPER_START_BALANCE", cast=float, default=10_000.0),
        price_seed=config("PRICE_SEED", cast=int, default=7),
        login_rate_limit_per_min=config("LOGIN_RATE_LIMIT_PER_MIN", cast=int, default=10),
        signup_rate_limit_per_min=config("SIGNUP_RATE_LIMIT_PER_MIN", cast=int, default=20),
        signal_rate_limit_per_s=config("SIGNAL_RATE_LIMIT_PER_S", cast=int, default=20),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return load_settings()

"""Configuration, read once from the environment.

Development is an explicit choice: ``APP_ENV=development`` (which the demo and the tests set) lets
the published development secrets stand in for missing ones. Anywhere else (``production``,
``Production``, ``prod``, unset, anything) a missing secret, one shorter than 32 bytes or a
published default is a startup error rather than a silent default, so a misconfigured deployment
fails loudly instead of signing tokens with a key everyone knows. Secrets are held as
:class:`starlette.datastructures.Secret`, whose ``repr`` never shows the value.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings, Secret

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"  # noqa: S105 - demo default
DEV_CREDENTIALS_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"ctc-dev-only-key").digest())
DEVELOPMENT = "development"
MIN_SECRET_BYTES = 32


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
    deriv_sim_accounts: str | None
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
    login_ip_rate_limit_per_min: int
    login_account_rate_limit_per_hour: int
    signup_rate_limit_per_min: int
    signal_rate_limit_per_s: int
    control_rate_limit_per_s: int
    max_body_bytes: int
    broker_check_timeout_s: float

    @property
    def development(self) -> bool:
        """True only for the explicit ``APP_ENV=development`` of the demo and the tests."""
        return self.app_env == DEVELOPMENT

    def describe(self) -> str:
        """One start-up line saying which rules the secrets were held to (never their values)."""
        if self.development:
            return (
                "APP_ENV=development: development defaults stand in for missing secrets; "
                "never expose this process"
            )
        return f"APP_ENV={self.app_env}: secrets checked (set, at least {MIN_SECRET_BYTES} bytes, "
        "not a published default)"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment)."""
    config = Config(environ=dict(os.environ if environ is None else environ))
    app_env = config("APP_ENV", default="") or "unset"
    development = app_env == DEVELOPMENT

    problems: list[str] = []

    def secret(name: str, dev_default: str, check: Callable[[str], str | None]) -> Secret:
        value = config(name, default=None)
        if not value and development:
            return Secret(dev_default)
        problem = check(value) if value else "is not set"
        if problem or not value:
            problems.append(f"{name} {problem}")
            return Secret("")
        return Secret(value)

    mongodb_url = config("MONGODB_URL", default=None) or None
    if not development and not mongodb_url:
        problems.append("MONGODB_URL is not set (the embedded store is for development)")
    jwt_secret = secret("JWT_SECRET", DEV_JWT_SECRET, _jwt_secret_problem)
    credentials_key = secret(
        "BROKER_CREDENTIALS_KEY", DEV_CREDENTIALS_KEY.decode(), _credentials_key_problem
    )
    sim_port = config("DERIV_SIM_PORT", cast=int, default=8765)
    if problems:
        raise ConfigurationError(
            "; ".join(problems) + f" (APP_ENV={app_env}; only APP_ENV=development runs on "
            "development defaults)"
        )

    return Settings(
        app_env=app_env,
        redis_url=config("REDIS_URL", default="redis://127.0.0.1:6379/0"),
        mongodb_url=mongodb_url,
        mongodb_db=config("MONGODB_DB", default="cloud_trade_copier"),
        embedded_store_path=config("EMBEDDED_STORE_PATH", default=None) or None,
        jwt_secret=jwt_secret,
        jwt_issuer=config("JWT_ISSUER", default="cloud-trade-copier"),
        jwt_audience=config("JWT_AUDIENCE", default="cloud-trade-copier-api"),
        access_token_ttl_s=config("ACCESS_TOKEN_TTL_S", cast=int, default=15 * 60),
        refresh_token_ttl_s=config("REFRESH_TOKEN_TTL_S", cast=int, default=30 * 24 * 3600),
        broker_credentials_key=credentials_key,
        port=config("PORT", cast=int, default=8000),
        # Unset: the local simulator (DERIV_SIM_PORT), as in the demo.
        deriv_ws_url=config("DERIV_WS_URL", default=None)
        or f"ws://127.0.0.1:{sim_port}/websockets/v3",
        deriv_sim_port=sim_port,
        # A JSON file of accounts the simulator opens at start (the demo's Deriv subscribers).
        deriv_sim_accounts=config("DERIV_SIM_ACCOUNTS", default=None) or None,
        deriv_app_id=config("DERIV_APP_ID", default="1089"),
        # Persistent Deriv sessions per worker process, each with its own rate budget.
        deriv_connections=config("DERIV_CONNECTIONS", cast=int, default=2),
        cors_origins=list(config("CORS_ORIGINS", cast=CommaSeparatedStrings, default="")),
        brokers=list(config("BROKERS", cast=CommaSeparatedStrings, default="paper,deriv")),
        log_json=config("LOG_JSON", cast=bool, default=False),
        log_level=config("LOG_LEVEL", default="INFO"),
        frontend_dir=config("FRONTEND_DIR", default="frontend/dist"),
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
        # Login attempts: per address and email, per address across emails (a spray over many
        # accounts), per account across addresses (a spray from many addresses).
        login_rate_limit_per_min=config("LOGIN_RATE_LIMIT_PER_MIN", cast=int, default=10),
        login_ip_rate_limit_per_min=config("LOGIN_IP_RATE_LIMIT_PER_MIN", cast=int, default=30),
        login_account_rate_limit_per_hour=config(
            "LOGIN_ACCOUNT_RATE_LIMIT_PER_HOUR", cast=int, default=60
        ),
        signup_rate_limit_per_min=config("SIGNUP_RATE_LIMIT_PER_MIN", cast=int, default=20),
        signal_rate_limit_per_s=config("SIGNAL_RATE_LIMIT_PER_S", cast=int, default=20),
        # Socket.IO join and cancel, per user.
        control_rate_limit_per_s=config("CONTROL_RATE_LIMIT_PER_S", cast=int, default=10),
        max_body_bytes=config("MAX_BODY_BYTES", cast=int, default=1024 * 1024),
        # How long the hub waits for a broker's worker to check a new account's token.
        broker_check_timeout_s=config("BROKER_CHECK_TIMEOUT_S", cast=float, default=10.0),
    )


def _jwt_secret_problem(value: str) -> str | None:
    if value == DEV_JWT_SECRET:
        return "is the published development default"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


def _credentials_key_problem(value: str) -> str | None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        return "is empty"
    if DEV_CREDENTIALS_KEY.decode() in keys:
        return "contains the published development key"
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except ValueError:
            return "is not url-safe base64 Fernet keys"
        if len(raw) != MIN_SECRET_BYTES:
            return f"must be Fernet keys ({MIN_SECRET_BYTES} bytes each, url-safe base64)"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use. A process whose configuration is refused
    stops here with one line saying why (exit status 2), not a traceback."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        sys.stderr.write(f"configuration refused: {exc}\n")
        raise SystemExit(2) from None

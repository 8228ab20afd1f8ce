"""A broker worker's (and the reaper's) configuration, read once from the environment (the rules:
:mod:`core.settings`).

Workers never talk to the store and sign no tokens: they need neither ``MONGODB_URL`` nor
``JWT_SECRET``. They open broker credentials, so ``BROKER_CREDENTIALS_KEY`` is checked as
strictly as in the hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from starlette.datastructures import Secret

from broker_workers.adapters.deriv.settings import DerivSettings
from broker_workers.adapters.paper.settings import PaperSettings
from core.settings import CommonSettings, Env, common, or_exit


@dataclass(frozen=True)
class WorkerSettings(CommonSettings):
    broker_credentials_key: Secret
    drain_batch_size: int  # subscribers per claim
    drain_concurrency: int  # lanes per drain job
    send_margin_ms: int  # the last moment to send before a deadline
    worker_heartbeat_s: float
    claim_lease_s: float  # a worker is dead after its lease without a heartbeat
    lease_margin_ms: int  # a lease is surely valid until its renewal was sent + TTL - this
    reconcile_after_ms: int  # an orphan is reconciled this long after its signal's deadline
    reaper_interval_ms: int
    redrive_stall_ms: int  # a work set that did not shrink this long gets a new drain job
    fault_injection: bool  # the fault suite's kill points (broker_workers/faults.py)
    redis_wait_replicas: int  # replicas that must confirm the sending mark (0 = no WAIT)
    redis_wait_ms: int  # how long WAIT waits for them
    metrics_port: int  # this process's /metrics (the next free port up to +63); 0 = none
    metrics_host: str
    health_refresh_s: float  # each account of the broker is checked about this often
    health_batch: int  # accounts a worker takes for checking at once
    health_checks_per_min: int  # a worker's budget for account checks
    paper: PaperSettings
    deriv: DerivSettings


def load_settings(environ: Mapping[str, str] | None = None) -> WorkerSettings:
    """Build :class:`WorkerSettings` from ``environ`` (default: the process environment)."""
    env = Env(environ)
    credentials_key = env.credentials_key()
    heartbeat_s = env("WORKER_HEARTBEAT_S", cast=float, default=1.0)
    lease_s = env("CLAIM_LEASE_S", cast=float, default=5.0)
    margin_ms = env("LEASE_MARGIN_MS", cast=int, default=250)
    if margin_ms < 0 or margin_ms + heartbeat_s * 1000 >= lease_s * 1000:
        env.problems.append(
            "LEASE_MARGIN_MS plus WORKER_HEARTBEAT_S must stay below CLAIM_LEASE_S "
            "(a lease must outlive a renewal's interval and its margin)"
        )
    wait_replicas = max(0, env("REDIS_WAIT_REPLICAS", cast=int, default=0))
    if wait_replicas and env.optional("REDIS_CLUSTER"):
        env.problems.append(
            "REDIS_WAIT_REPLICAS cannot be used with REDIS_CLUSTER (a cluster client does not "
            "route WAIT to the shard's master; give REDIS_SHARDS one Sentinel URL per shard)"
        )
    env.check()
    return WorkerSettings(
        **common(env),
        broker_credentials_key=credentials_key,
        drain_batch_size=env("DRAIN_BATCH_SIZE", cast=int, default=100),
        drain_concurrency=env("DRAIN_CONCURRENCY", cast=int, default=8),
        send_margin_ms=env("SEND_MARGIN_MS", cast=int, default=150),
        worker_heartbeat_s=heartbeat_s,
        claim_lease_s=lease_s,
        lease_margin_ms=margin_ms,
        reconcile_after_ms=env("RECONCILE_AFTER_MS", cast=int, default=2000),
        reaper_interval_ms=env("REAPER_INTERVAL_MS", cast=int, default=250),
        redrive_stall_ms=env("REDRIVE_STALL_MS", cast=int, default=1000),
        fault_injection=env("FAULT_INJECTION", cast=bool, default=False),
        redis_wait_replicas=wait_replicas,
        redis_wait_ms=max(1, env("REDIS_WAIT_MS", cast=int, default=100)),
        metrics_port=env("METRICS_PORT", cast=int, default=9100),
        metrics_host=env("METRICS_HOST", default="0.0.0.0"),  # noqa: S104 - scraped by pod
        health_refresh_s=env("HEALTH_REFRESH_S", cast=float, default=60.0),
        health_batch=max(1, env("HEALTH_BATCH", cast=int, default=20)),
        health_checks_per_min=max(1, env("HEALTH_CHECKS_PER_MIN", cast=int, default=600)),
        paper=PaperSettings.read(env),
        deriv=DerivSettings.read(env),
    )


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    """The worker's settings, read on first use; a refused configuration stops the process with
    one line (exit status 2)."""
    return or_exit(load_settings)

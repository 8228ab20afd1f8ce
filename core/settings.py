"""Configuration: the rules every process holds its settings to, and the settings all of them read.

Each process reads only what it uses: the hub (:mod:`signal_hub.settings`), a broker worker or the
reaper (:mod:`broker_workers.settings`), the Deriv simulator. What they share is here:

- Development is an explicit choice: ``APP_ENV=development`` (which the demo and the tests set)
  lets the published development secrets stand in for missing ones. Anywhere else
  (``production``, ``Production``, ``prod``, unset, anything) a missing secret, one shorter than
  32 bytes or a published default is a start-up error rather than a silent default. Secrets are
  held as :class:`starlette.datastructures.Secret`, whose ``repr`` never shows the value.
- A refused configuration stops the process with one line naming every problem, exit status 2
  (:func:`or_exit`), not a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings, Secret

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"  # noqa: S105 - demo default
DEV_CREDENTIALS_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"ctc-dev-only-key").digest())
DEVELOPMENT = "development"
MIN_SECRET_BYTES = 32

T = TypeVar("T")


class ConfigurationError(RuntimeError):
    """A required setting is missing or malformed; raised at startup."""


class Env:
    """The environment of one process, read once: typed values, and the problems found so far."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._config = Config(environ=dict(os.environ if environ is None else environ))
        self.app_env = self._config("APP_ENV", default="") or "unset"
        self.development = self.app_env == DEVELOPMENT
        self.problems: list[str] = []

    def __call__(
        self, name: str, cast: Callable[[Any], Any] | None = None, default: Any = None
    ) -> Any:
        return self._config(name, cast=cast, default=default)  # type: ignore[arg-type]

    def optional(self, name: str) -> str | None:
        """A setting whose absence means something (an empty value counts as absent)."""
        value: str | None = self._config(name, default=None)
        return value or None

    def secret(self, name: str, dev_default: str, check: Callable[[str], str | None]) -> Secret:
        """A secret: refused when missing or weak, unless development supplies its default."""
        value = self.optional(name)
        if value is None and self.development:
            return Secret(dev_default)
        problem = check(value) if value else "is not set"
        if problem or not value:
            self.problems.append(f"{name} {problem}")
            return Secret("")
        return Secret(value)

    def credentials_key(self) -> Secret:
        """``BROKER_CREDENTIALS_KEY``: Fernet keys, comma-separated; the first encrypts."""
        return self.secret(
            "BROKER_CREDENTIALS_KEY", DEV_CREDENTIALS_KEY.decode(), _credentials_key_problem
        )

    def check(self) -> None:
        if self.problems:
            raise ConfigurationError(
                "; ".join(self.problems) + f" (APP_ENV={self.app_env}; only APP_ENV=development "
                "runs on development defaults)"
            )


@dataclass(frozen=True)
class CommonSettings:
    """What every process reads."""

    app_env: str
    redis_url: str
    brokers: list[str]
    log_json: bool
    log_level: str
    redis_shards: list[str]  # the hot path's shards (core.shards); empty: REDIS_URL alone
    redis_cluster: str  # a node of a Redis Cluster holding the hot path's shards; "" = none
    redis_cluster_shards: int  # shards over that cluster; 0 = one per master

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


def common(env: Env) -> dict[str, Any]:
    """The fields of :class:`CommonSettings`, for the settings classes built on it."""
    return {
        "app_env": env.app_env,
        "redis_url": env("REDIS_URL", default="redis://127.0.0.1:6379/0"),
        "brokers": list(env("BROKERS", cast=CommaSeparatedStrings, default="paper,deriv")),
        "log_json": env("LOG_JSON", cast=bool, default=False),
        "log_level": env("LOG_LEVEL", default="INFO"),
        "redis_shards": list(env("REDIS_SHARDS", cast=CommaSeparatedStrings, default="")),
        "redis_cluster": env("REDIS_CLUSTER", default=""),
        "redis_cluster_shards": env("REDIS_CLUSTER_SHARDS", cast=int, default=0),
    }


def load_common(environ: Mapping[str, str] | None = None) -> CommonSettings:
    return CommonSettings(**common(Env(environ)))


def or_exit(load: Callable[[], T]) -> T:
    """``load()``, or the process stops here with one line saying why (exit status 2)."""
    try:
        return load()
    except ConfigurationError as exc:
        sys.stderr.write(f"configuration refused: {exc}\n")
        raise SystemExit(2) from None


def jwt_secret_problem(value: str) -> str | None:
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

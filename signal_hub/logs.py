"""Logging through loguru: human-readable by default, JSON lines with ``LOG_JSON=1``.

Every record passes through :func:`redact` first, so a JWT, an API token or a value logged under
a secret-looking key never reaches a log sink, whoever wrote the log line. The sink redacts the
rendered text once more, traceback included, and tracebacks never show local variables
(``diagnose=False``): a failure inside a login must not print the password it was holding.

Errors that any client can cause at will (a malformed Socket.IO packet on a bare connection) are
logged as one line each, at most a few a second, so that noise cannot be used to fill the disk or
drown the lines that matter.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from loguru import logger

from signal_hub.settings import Settings

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|credential|authorization|api_key", re.I)
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_KEY_VALUE = re.compile(
    r"""(?P<key>["']?(?:password|secret|token|credentials?|authorization|api_key)["']?\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,})]+)""",
    re.I,
)
REDACTED = "[redacted]"
# Loggers of the Socket.IO stack whose errors a client can provoke with a malformed packet.
_CLIENT_NOISE = ("engineio.server", "socketio.server")
NOISE_LINES_PER_S = 2.0


def redact_text(text: str) -> str:
    """Mask JWTs and ``key=value`` / ``"key": "value"`` pairs whose key names a secret."""
    text = _JWT.sub(REDACTED, text)
    return _KEY_VALUE.sub(lambda m: m.group("key") + REDACTED, text)


def redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact(record: Any) -> None:
    """loguru patcher: scrub the message and the bound extras of one record."""
    record["message"] = redact_text(record["message"])
    record["extra"] = {k: redact_value(k, v) for k, v in record["extra"].items()}


def _redacting_sink(message: Any) -> None:
    """Write one rendered record (text or JSON, traceback included) with secrets masked."""
    sys.stderr.write(redact_text(str(message)))
    sys.stderr.flush()


class _TokenBucket:
    """At most ``rate`` events a second on average (bursts of ``rate``); counts what it drops."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()
        self.dropped = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False


class _InterceptHandler(logging.Handler):
    """Route stdlib logging (uvicorn, rq, socketio) into loguru, and so through the redactor."""

    def __init__(self) -> None:
        super().__init__()
        self._noise = _TokenBucket(NOISE_LINES_PER_S)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in _CLIENT_NOISE and record.exc_info:
            self._emit_client_noise(record)
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info, depth=6).log(level, record.getMessage())

    def _emit_client_noise(self, record: logging.LogRecord) -> None:
        if not self._noise.take():
            return
        dropped, self._noise.dropped = self._noise.dropped, 0
        exc = record.exc_info[1] if record.exc_info else None
        suffix = f" ({dropped} similar lines dropped)" if dropped else ""
        logger.log(
            "WARNING",
            "refused a Socket.IO packet: {}: {}{}",
            record.getMessage(),
            type(exc).__name__ if exc else "error",
            suffix,
        )


def configure_logging(settings: Settings, component: str) -> None:
    """Install the one sink of this process; call once at process start."""
    logger.remove()
    logger.configure(patcher=redact, extra={"component": component})
    fmt = "{time:HH:mm:ss.SSS} {level: <7} {extra[component]}: {message}"
    logger.add(
        _redacting_sink,
        level=settings.log_level,
        serialize=settings.log_json,
        format=fmt,
        diagnose=False,
        backtrace=False,
        colorize=False,
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for noisy in ("httpx",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _CLIENT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)
    logger.info(settings.describe())

"""Logging through loguru: human-readable by default, JSON lines with ``LOG_JSON=1``.

Every record passes through :func:`redact` first, so a JWT, an API token or a value logged under
a secret-looking key never reaches a log sink, whoever wrote the log line.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from loguru import logger

from signal_hub.settings import Settings

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|credential|authorization|api_key", re.I)
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_KEY_VALUE = re.compile(
    r"""(?P<key>["']?(?:password|secret|token|credentials?|authorization|api_key)["']?\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,}]+)""",
    re.I,
)
REDACTED = "[redacted]"


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


class _InterceptHandler(logging.Handler):
    """Route stdlib logging (uvicorn, rq, socketio) into loguru, and so through the redactor."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info, depth=6).log(level, record.getMessage())


def configure_logging(settings: Settings, component: str) -> None:
    """Install the one sink of this process; call once at process start."""
    logger.remove()
    logger.configure(patcher=redact, extra={"component": component})
    fmt = "{time:HH:mm:ss.SSS} {level: <7} {extra[component]}: {message}"
    logger.add(sys.stderr, level=settings.log_level, serialize=settings.log_json, format=fmt)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for noisy in ("engineio.server", "socketio.server", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

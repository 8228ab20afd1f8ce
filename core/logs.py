"""Logging through loguru: human-readable by default, JSON lines with ``LOG_JSON=1``.

Every record passes through :func:`redact` first, so a JWT, an API token or a value logged under
a secret-looking key never reaches a log sink, whoever wrote the log line. The sink redacts the
rendered text once more, traceback included, and tracebacks never show local variables
(``diagnose=False``): a failure inside a login must not print the password it was holding.

Errors that any client can cause at will (a malformed Socket.IO packet on a bare connection) are
logged as one line each, at most a few a second, so that noise cannot be used to fill the disk or
drown the lines that matter.

Each line carries the ids it concerns, as loguru extras: ``request_id`` (the hub's HTTP requests),
``signal_id``, ``trade_id``, ``broker``, ``worker`` (bound with ``logger.contextualize`` or
``logger.bind``; a process's own are bound once, :func:`configure_logging`'s ``context``). With
``LOG_JSON=1`` a line is one JSON object::

    {"time": "2026-11-29T10:00:00.123Z", "level": "INFO", "component": "worker.deriv",
     "message": "drained 50 subscribers", "broker": "deriv", "worker": "3d7f...",
     "signal_id": "6b0b..."}

and every logger of the process (uvicorn's, RQ's, its worker pool's) writes through the same sink,
so that a collector never meets a line of another shape.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from datetime import UTC
from typing import Any

import orjson
from loguru import logger

from core.settings import CommonSettings

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|credential|authoriz(ation|e)|api_key", re.I)
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
# ``authorize`` and ``tokens``: Deriv's login call and its extra tokens, should a request be logged.
_KEY_VALUE = re.compile(
    r"""(?P<key>["']?(?:password|secret|tokens?|credentials?|authorization|authorize|api_key)"""
    r"""["']?\s*[:=]\s*)(?P<value>"[^"]*"|'[^']*'|\[[^\]]*\]|[^\s,})]+)""",
    re.I,
)
REDACTED = "[redacted]"
# The password of a URL's user part (``redis+sentinel://user:password@host:port,...``).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)", re.I)
# The ids a line may carry, in the order the text format shows them.
CONTEXT_IDS = ("request_id", "signal_id", "trade_id", "broker", "worker")
# Loggers of the Socket.IO stack whose errors a client can provoke with a malformed packet.
_CLIENT_NOISE = ("engineio.server", "socketio.server")
NOISE_LINES_PER_S = 2.0


def _masked(match: re.Match[str]) -> str:
    """The pair with its value masked, quoted as it was (a JSON line stays JSON)."""
    value = match.group("value")
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group('key')}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Mask JWTs, URLs' passwords and ``key=value`` / ``"key": "value"`` pairs whose key names
    a secret."""
    text = _JWT.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", text)
    return _KEY_VALUE.sub(_masked, text)


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
    """Write one rendered text record (traceback included) with secrets masked."""
    sys.stderr.write(redact_text(str(message)))
    sys.stderr.flush()


def _json_sink(message: Any) -> None:
    """Write one record as a JSON object on one line: the time (UTC), level, message, the
    process's component and every id bound to the record, and the traceback as text. The
    message and the extras were redacted by :func:`redact` already; the traceback is here."""
    record = message.record
    line: dict[str, Any] = {
        "time": record["time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "level": record["level"].name,
        "message": record["message"],
    }
    line.update(record["extra"])
    line.setdefault("logger", record["name"])
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        text = "".join(
            traceback.format_exception(exception.type, exception.value, exception.traceback)
        )
        line["exception"] = redact_text(text)
    sys.stderr.write(orjson.dumps(line, default=str).decode() + "\n")
    sys.stderr.flush()


def _text_format(record: Any) -> str:
    """The text line: time, level, component, message, then the ids the record carries."""
    extra = record["extra"]
    ids = " ".join(f"{k}={extra[k]}" for k in CONTEXT_IDS if extra.get(k))
    suffix = f" [{ids}]".replace("{", "{{").replace("}", "}}") if ids else ""
    return (
        "{time:HH:mm:ss.SSS} {level: <7} {extra[component]}: {message}" + suffix + "\n{exception}"
    )


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
        logger.bind(logger=record.name).opt(exception=record.exc_info, depth=6).log(
            level, record.getMessage()
        )

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


def configure_logging(settings: CommonSettings, component: str, **context: str) -> None:
    """Install the one sink of this process; call once at process start. ``context``: ids every
    line of this process carries (a worker's ``broker`` and ``worker``)."""
    logger.remove()
    logger.configure(patcher=redact, extra={"component": component, **context})
    if settings.log_json:
        logger.add(_json_sink, level=settings.log_level, format="{message}", colorize=False)
    else:
        logger.add(
            _redacting_sink,
            level=settings.log_level,
            format=_text_format,
            diagnose=False,
            backtrace=False,
            colorize=False,
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    _through_root()
    for noisy in ("httpx",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _CLIENT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)
    logger.info(settings.describe())


def _through_root() -> None:
    """Loggers that brought handlers of their own (uvicorn's, RQ's worker and pool) write
    through the root logger, and so through this sink, instead: one format per process."""
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger) and existing.handlers:
            existing.handlers.clear()
            existing.propagate = True

"""Secrets never reach a log line, whoever wrote it."""

from __future__ import annotations

import io
import logging
import sys
import uuid
from collections.abc import Iterator

import pytest
from loguru import logger

from signal_hub.logs import configure_logging, redact
from signal_hub.settings import load_settings


def capture(message: str, **extra: object) -> str:
    sink = io.StringIO()
    logger.remove()
    logger.configure(patcher=redact)
    handler = logger.add(sink, format="{message} | {extra}")
    try:
        logger.bind(**extra).info(message)
    finally:
        logger.remove(handler)
    return sink.getvalue()


def test_tokens_passwords_and_credentials_are_masked() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    line = capture(
        f"login with password=hunter22 token: abc123 header {jwt} "
        '{"credentials": "deriv-secret", "asset": "EURUSD"}',
        api_token="tok-999",
        payload={"password": "pw-1", "asset": "R_100"},
    )
    for secret in ("hunter22", "abc123", jwt, "deriv-secret", "tok-999", "pw-1"):
        assert secret not in line
    assert "EURUSD" in line and "R_100" in line


@pytest.fixture
def configured(capfd: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The process logging of a real component, undone after the test (loguru's and the
    standard library's global state both)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(load_settings({"APP_ENV": "development"}), "test")
    try:
        yield capfd
    finally:
        logger.remove()
        logger.configure(patcher=lambda record: None, extra={})
        logger.add(sys.stderr)
        root.handlers[:], root.level = handlers, level


def test_a_traceback_shows_no_local_values_and_is_redacted(
    configured: pytest.CaptureFixture[str],
) -> None:
    """A failure in a frame holding a password prints the traceback, not the password (loguru's
    ``diagnose`` would show the values of the variables on each line)."""
    password = f"pw-{uuid.uuid4().hex}"

    def login(typed: str) -> None:
        raise ConnectionError(f"Redis went away after {len(typed)} characters")

    try:
        login(password)
    except ConnectionError:
        logger.exception("login failed")
    logger.info("retrying with token={}", "abc.def-secret")
    err = configured.readouterr().err
    assert "Traceback" in err and "login failed" in err and "Redis went away" in err
    assert password not in err
    assert "abc.def-secret" not in err and "token=[redacted]" in err


def test_client_provoked_socket_errors_are_one_line_each_and_rate_limited(
    configured: pytest.CaptureFixture[str],
) -> None:
    noisy = logging.getLogger("engineio.server")
    for _ in range(50):
        try:
            raise ValueError("bad packet")
        except ValueError:
            noisy.exception("message async handler error")
    err = configured.readouterr().err
    lines = [line for line in err.splitlines() if "refused a Socket.IO packet" in line]
    assert 1 <= len(lines) <= 3, err
    assert "Traceback" not in err

"""Secrets never reach a log line, whoever wrote it."""

from __future__ import annotations

import io

from loguru import logger

from signal_hub.logs import redact


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

"""Secrets never reach a log line, whoever wrote it."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loguru import logger

from core.logs import configure_logging, redact
from core.settings import load_common as load_settings
from tests.chaos import signal_to
from tests.client import Api, live
from tests.conftest import UNIT_DB
from tests.procs import Proc, running_system, wait_until


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """Each test may reconfigure the process's logging (loguru's and the standard library's
    global state); the next test finds it as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logger.remove()
    logger.configure(patcher=lambda record: None, extra={})
    logger.add(sys.stderr)
    root.handlers[:], root.level = handlers, level


def capture(message: str, **extra: object) -> str:
    sink = io.StringIO()
    logger.remove()
    logger.configure(patcher=redact)
    logger.add(sink, format="{message} | {extra}")
    logger.bind(**extra).info(message)
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
def configured(capfd: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    """The process logging of a real component (undone by ``restored_logging``)."""
    configure_logging(load_settings({"APP_ENV": "development"}), "test")
    return capfd


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


# --- every process, for real: JSON lines with their ids, and no secret -----------------------

LOGS_DB = UNIT_DB + 3


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object (failing on any other)."""
    lines = []
    for number, line in enumerate(proc.log.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"{proc.name}.log:{number} is not JSON: {line!r}")
        assert isinstance(parsed, dict), (proc.name, number, line)
        assert {"time", "level", "message", "component"} <= set(parsed), (proc.name, line)
        lines.append(parsed)
    return lines


async def test_a_fan_out_logs_json_with_its_ids_and_no_secret(tmp_path: Path) -> None:
    """A signal to a Deriv and a paper subscriber, account checks, requests with a JWT, a wrong
    password: every process writes one JSON object per line, the ids each line concerns are on
    it, and the Deriv token, the JWTs and the password appear nowhere."""
    with running_system(LOGS_DB, tmp_path, LOG_JSON="1") as system:
        system.env["LOG_LEVEL"] = "DEBUG"  # the hub's relay logs each record at DEBUG
        system.start_hub()
        system.env["LOG_LEVEL"] = "INFO"
        system.start_deriv_sim()
        system.start_pool("paper", workers=1)
        system.start_pool("deriv", workers=1)
        system.start_reaper()
        token = f"deriv-secret-{uuid.uuid4().hex}"
        account = {"token": token, "balance": 1000, "currency": "USD"}
        httpx.post(f"{system.sim_url}/_sim/accounts", json=account).raise_for_status()
        with httpx.Client(base_url=system.base_url, timeout=20) as http:
            api = Api(http)
            provider = api.signup("provider")
            channel_id = api.channel(provider)["id"]
            subscriber, deriv_account, deriv_sub = api.subscriber(
                channel_id, {"mode": "fixed", "amount": 1}, "deriv", {"token": token}
            )
            _, _, paper_sub = api.subscriber(channel_id, {"mode": "fixed", "amount": 1})
            api.ok("POST", f"/api/broker-accounts/{deriv_account['id']}/check", subscriber)
            asked = api.call("GET", "/api/me", provider, headers={"X-Request-ID": "req-obs-0001"})
            assert asked.headers["X-Request-ID"] == "req-obs-0001"
            odd = api.call("GET", "/api/me", provider, headers={"X-Request-ID": "no good"})
            assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])
            wrong = {"email": provider.email, "password": "wrong " + api.password}
            assert api.call("POST", "/api/auth/login", json=wrong).status_code == 401
            watcher = await live(system.base_url, "/provider", provider)
            try:
                ack = await watcher.emit("signal", signal_to(channel_id))
                assert ack["ok"] is True, ack
                await watcher.wait_for("both copies", lambda: len(watcher.executions) == 2)
            finally:
                await watcher.close()
            # the relay's DEBUG line of a record comes just after the feed has it
            wait_until(
                lambda: deriv_sub["id"] in system.procs[0].log.read_text(), what="relay lines"
            )
        procs = list(system.procs)
        system.stop()  # every line written and flushed
        signal_id = ack["signal_id"]
        secrets = (token, provider.access_token, provider.refresh_token, subscriber.access_token,
                   subscriber.refresh_token, api.password)  # fmt: skip
        by_name = {proc.name: json_lines(proc) for proc in procs}
        assert set(by_name) == {"hub", "deriv_sim", "worker_paper", "worker_deriv", "reaper"}
        for name, lines in by_name.items():
            text = (tmp_path / f"{name}.log").read_text()
            for secret in secrets:
                assert secret not in text, f"a secret in {name}.log"
            assert lines, name

        hub = by_name["hub"]
        assert any(line.get("request_id") == "req-obs-0001" for line in hub)
        assert any(line.get("signal_id") == signal_id for line in hub)
        trades = {line.get("trade_id") for line in hub if line.get("signal_id") == signal_id}
        assert {f"{signal_id}-{deriv_sub['id']}", f"{signal_id}-{paper_sub['id']}"} <= trades
        for broker in ("paper", "deriv"):
            lines = by_name[f"worker_{broker}"]
            mine = [line for line in lines if line.get("signal_id") == signal_id]
            assert mine, broker
            assert all(line["broker"] == broker and line["worker"] for line in mine)

"""The README's first command, as a newcomer runs it: a clean clone, a fresh virtual environment,
no ``PORT`` set. It must come up, take the signal command it prints, and leave no process behind
when it is sent SIGTERM (as a closed terminal or a process manager would)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import UNIT_DB
from tests.procs import REDIS_HOST, REDIS_PORT, ROOT, free_port

DEMO_DB = UNIT_DB + 4
DEMO_PORT = 8000  # the documented default, with PORT unset


def processes_under(directory: Path) -> list[str]:
    """Live processes whose working directory or command line lies in ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_demo(clone: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``./scripts/demo`` until it prints its banner; the process and what it printed."""
    started = time.monotonic()
    with log.open("wb") as out:
        demo = subprocess.Popen(
            ["./scripts/demo"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    while "Send a signal from another terminal" not in log.read_text(errors="replace"):
        if demo.poll() is not None or time.monotonic() - started > 600:
            stop(demo)
            raise AssertionError(log.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    time.sleep(2)  # the workers' first warm-up, whose warnings would show here
    print(f"\ndemo up in {time.monotonic() - started:.1f} s")
    return demo, log.read_text(errors="replace")


def stop(demo: subprocess.Popen[bytes]) -> None:
    demo.send_signal(signal.SIGTERM)
    try:
        demo.wait(60)
    except subprocess.TimeoutExpired:
        demo.kill()


def assert_nothing_left(clone: Path) -> None:
    deadline = time.monotonic() + 15
    while processes_under(clone) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_under(clone) == []
    assert port_is_free(DEMO_PORT)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_demo_from_a_clean_clone(tmp_path: Path) -> None:
    assert port_is_free(DEMO_PORT), f"port {DEMO_PORT} is taken: stop what listens there"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "APP_ENV", "VIRTUAL_ENV")}
    env.update(
        REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{DEMO_DB}",
        DERIV_SIM_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()

    demo, text = start_demo(clone, env, tmp_path / "first.log")
    try:
        assert f"http://127.0.0.1:{DEMO_PORT}/" in text
        command = re.search(r"^\s+(\.venv/bin/python -m infra\.demo signal .*)$", text, re.M)
        assert command, text
        sent = subprocess.run(
            shlex.split(command.group(1)), cwd=clone, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        ack_line = next(line for line in sent.stdout.splitlines() if line.startswith("ack: "))
        ack = json.loads(ack_line.removeprefix("ack: "))
        assert ack["ok"] is True and ack["fanout"]["total"] == 25, ack
        executions = [line for line in sent.stdout.splitlines() if "latency=" in line]
        assert len(executions) == 25, sent.stdout
        assert sum(" placed " in line for line in executions) >= 20, sent.stdout
    finally:
        stop(demo)
    assert_nothing_left(clone)

    # A restart keeps the seeded users, and the workers find the simulator's accounts at once.
    demo, text = start_demo(clone, env, tmp_path / "second.log")
    stop(demo)
    assert "invalid" not in text.lower() and "Traceback" not in text, text
    assert_nothing_left(clone)

"""Run the simulator as a child process on a free port, for tests and benchmarks.

A real uvicorn process rather than an in-process app: the adapter then meets real sockets,
real disconnects and a server that lives on its own event loop, as it would in production.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RunningSimulator:
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websockets/v3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/_sim/faults")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def running_simulator(
    env: dict[str, str] | None = None, startup_timeout_s: float = 30.0
) -> Iterator[RunningSimulator]:
    """Start ``uvicorn broker_workers.deriv_sim.app:app`` and stop it (its whole group) after."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "broker_workers.deriv_sim.app:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Deriv simulator did not start on port {port}")
            time.sleep(0.05)
        yield RunningSimulator(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

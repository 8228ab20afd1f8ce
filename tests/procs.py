"""Starting the real processes of the system for tests and benchmarks: hub, worker pools, sim."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core import keys
from core.connections import sync_redis_client

ROOT = Path(__file__).resolve().parent.parent
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
SIM_SEED = 5  # the Deriv simulator's price seed in the tests that start their own


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what or predicate}")


def children(pid: int, recursive: bool = False) -> list[int]:
    """The live children of ``pid`` (every descendant if ``recursive``), found through the
    parent field of ``/proc/<pid>/stat``: an ``rq worker-pool``'s workers, say."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":  # a killed process its parent has not reaped yet
            parents.setdefault(int(ppid), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            if recursive:
                todo.append(child)
    return found


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class HubProc:
    """One of several hubs: its process and port."""

    proc: Proc
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def consumer(self) -> str:
        """Its name in the results stream's consumer group (``presence.hub_instance_id``)."""
        return f"{socket.gethostname()}-{self.proc.popen.pid}"


def _wait_ready(proc: Proc, base_url: str, timeout: float) -> None:
    wait_until(
        lambda: httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200,
        timeout=timeout,
        what=f"{proc.name} at {base_url}: {proc.tail()}",
    )


@dataclass
class System:
    """A running set of processes sharing one Redis database."""

    db: int
    env: dict[str, str]
    log_dir: Path
    procs: list[Proc] = field(default_factory=list)
    port: int = 0
    sim_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Proc:
        log = self.log_dir / f"{name}.log"
        out = log.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_hub(self, timeout: float = 30) -> Proc:
        self.port = self.port or free_port()
        proc = self._spawn_hub("hub", self.port)
        _wait_ready(proc, self.base_url, timeout)
        return proc

    def _spawn_hub(self, name: str, port: int, extra_env: dict[str, str] | None = None) -> Proc:
        return self.spawn(
            name,
            [sys.executable, "-m", "uvicorn", "signal_hub.app:app", "--port", str(port),
             "--no-access-log", "--forwarded-allow-ips", self.env.get("FORWARDED_ALLOW_IPS", "")],
            extra_env,
        )  # fmt: skip

    def start_hubs(self, names: list[str], timeout: float = 45) -> list[HubProc]:
        """Several hubs on one Redis, started together, each on its own port. Without
        ``MONGODB_URL`` each has an embedded store of its own (its own journal): the store is not
        shared, only Redis is (rooms, the results stream, the directory, the schedule)."""
        hubs = []
        for name in names:
            port = free_port()
            extra = {}
            if "EMBEDDED_STORE_PATH" in self.env:
                extra["EMBEDDED_STORE_PATH"] = str(
                    self.log_dir / f"store-{REDIS_PORT}-{name}.jsonl"
                )
                Path(extra["EMBEDDED_STORE_PATH"]).unlink(missing_ok=True)
            hubs.append(HubProc(self._spawn_hub(name, port, extra), port))
        for hub in hubs:
            _wait_ready(hub.proc, hub.base_url, timeout)
        self.port = self.port or hubs[0].port
        return hubs

    def start_deriv_sim(self) -> Proc:
        """The loopback Deriv simulator; pools started after it trade against it."""
        self.sim_port = free_port()
        proc = self.spawn(
            "deriv_sim",
            [sys.executable, "-m", "broker_workers.deriv_sim", "--port", str(self.sim_port)],
        )
        wait_until(
            lambda: httpx.get(f"{self.sim_url}/_sim/faults", timeout=1).status_code == 200,
            timeout=30,
            what=f"deriv simulator: {proc.tail()}",
        )
        self.env["DERIV_WS_URL"] = f"ws://127.0.0.1:{self.sim_port}/websockets/v3"
        return proc

    @property
    def redis_url(self) -> str:
        """The processes' ``REDIS_URL``: database ``db`` of the test's server unless a test gave
        its own (a Sentinel URL, say)."""
        return self.env["REDIS_URL"]

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def start_pool(
        self,
        broker: str,
        workers: int = 2,
        timeout: float = 30,
        extra_env: dict[str, str] | None = None,
    ) -> Proc:
        proc = self.spawn(
            f"worker_{broker}",
            [sys.executable, "-m", "rq.cli", "worker-pool", f"broker.{broker}", "-n", str(workers),
             "-w", "broker_workers.worker.BrokerWorker",
             "--connection-class", "core.connections.RQRedis", "-u", self.redis_url],
            extra_env,
        )  # fmt: skip
        r = sync_redis_client(self.redis_url, decode_responses=True)

        def alive() -> bool:
            ids = [str(w) for w in r.smembers(keys.workers(broker))]
            return sum(int(r.exists(keys.worker_heartbeat(w))) for w in ids) >= workers

        wait_until(
            alive,
            timeout=timeout,
            what=f"{workers} {broker} workers: {proc.tail()}",
        )
        return proc

    def start_reaper(self, extra_env: dict[str, str] | None = None) -> Proc:
        """The reaper process; it serves every broker in ``BROKERS``."""
        return self.spawn("reaper", [sys.executable, "-m", "broker_workers.reaper"], extra_env)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


@contextmanager
def running_system(db: int, log_dir: Path, **env: str) -> Iterator[System]:
    """Flush ``db`` (of ``REDIS_URL`` if ``env`` names a server of the test's own) and give a
    :class:`System` bound to it; every process is stopped after."""
    sync_redis_client(env.get("REDIS_URL") or redis_url(db)).flushdb()
    base_env = {
        **os.environ,
        "APP_ENV": "development",
        "REDIS_URL": redis_url(db),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
        "PAPER_LATENCY_MS": "20",
        "SIGNUP_RATE_LIMIT_PER_MIN": "100000",
        "LOGIN_IP_RATE_LIMIT_PER_MIN": "100000",  # every test logs in from 127.0.0.1
        "FRONTEND_DIR": str(ROOT / "frontend" / "dist"),
        # Workers and reapers serve no /metrics unless a test asks (METRICS_PORT=<free port>):
        # many run at once on this host, and other runs may share it.
        "METRICS_PORT": "0",
        **env,
    }
    if os.environ.get("MONGODB_URL"):  # the same tests, against a real MongoDB
        base_env["MONGODB_DB"] = f"ctc_test_{db}"
        import pymongo

        pymongo.MongoClient(os.environ["MONGODB_URL"]).drop_database(base_env["MONGODB_DB"])
    elif "EMBEDDED_STORE_PATH" not in env:  # journaled: a hub restarted in a test keeps its data
        # named by Redis server and database: runs on other Redis servers may share log_dir
        store_path = log_dir / f"store-{REDIS_PORT}-{db}.jsonl"
        store_path.unlink(missing_ok=True)
        base_env["EMBEDDED_STORE_PATH"] = str(store_path)
    log_dir.mkdir(parents=True, exist_ok=True)
    system = System(db=db, env=base_env, log_dir=log_dir)
    try:
        yield system
    finally:
        system.stop()


def redis_server_argv(port: int, workdir: Path, *extra: str, bind: str = "127.0.0.1") -> list[str]:
    """A throw-away ``redis-server`` of a test's own: on ``port``, bound to ``bind`` (loopback),
    keeping nothing on disk but what it writes in ``workdir``; ``extra`` options after."""
    return ["redis-server", "--port", str(port), "--bind", bind, "--save", "",
            "--appendonly", "no", "--dir", str(workdir), *extra]  # fmt: skip


@contextmanager
def redis_servers(ports: list[int], workdir: Path, *extra: str) -> Iterator[list[int]]:
    """``redis-server`` on each of ``ports`` (loopback, nothing saved), stopped after; yields
    their process ids (the benchmark reads their CPU time)."""
    shutil.rmtree(workdir, ignore_errors=True)
    procs = []
    try:
        for port in ports:
            home = workdir / str(port)
            home.mkdir(parents=True)
            argv = redis_server_argv(port, home, *extra)
            with (home / "log").open("w") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        for port in ports:
            client = sync_redis_client(f"redis://127.0.0.1:{port}/0")
            wait_until(lambda c=client: c.ping(), timeout=10, what=f"redis on {port}")
            client.close()
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)

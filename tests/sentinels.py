"""A Redis master, its replicas and their sentinels on loopback, for the failover test and
``bench.failover``.

The nodes use the failover helper's port range: Redis from ``TEST_FAILOVER_PORT`` (6400), the
sentinels from ``TEST_SENTINEL_PORT`` (26400); CI, where nothing else runs, can keep the
defaults. Nothing is persisted (no RDB, no AOF): a killed master loses whatever it had not yet
sent to a replica, which is the point. Sentinel's timers are short (``down-after-milliseconds``
1000, ``failover-timeout`` 2000) so that a failover takes two or three seconds; 400 ms made a
loaded machine's sentinels take the new master for dead and fail over a second time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.procs import redis_server_argv, wait_until

REDIS_BASE_PORT = int(os.environ.get("TEST_FAILOVER_PORT", "6400"))
SENTINEL_BASE_PORT = int(os.environ.get("TEST_SENTINEL_PORT", "26400"))
HOST = "127.0.0.1"
SERVICE = "ctc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000


@dataclass
class Node:
    port: int
    popen: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, decode_responses=True, socket_timeout=2)


def _redis_argv(port: int, workdir: Path) -> list[str]:
    return redis_server_argv(
        port, workdir, "--logfile", str(workdir / f"redis-{port}.log"),
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        "--repl-diskless-load", "on-empty-db", bind=HOST,
    )  # fmt: skip


def start_redis(port: int, workdir: Path, replica_of: int | None = None) -> Node:
    """A redis-server on ``port`` (a replica of ``replica_of`` if given), answering."""
    argv = _redis_argv(port, workdir)
    if replica_of is not None:
        argv += ["--replicaof", HOST, str(replica_of)]
    node = Node(port, subprocess.Popen(argv, start_new_session=True))
    wait_until(lambda: node.client().ping(), timeout=10, what=f"redis-server on {port}")
    return node


@dataclass
class SentinelGroup:
    """One master group (``ctc``) of a master, ``replicas`` replicas and ``sentinels``
    sentinels (quorum: a majority of them)."""

    workdir: Path
    replicas: int = 1
    sentinels: int = 3
    nodes: dict[int, Node] = field(default_factory=dict)
    watchers: list[Node] = field(default_factory=list)

    @property
    def redis_ports(self) -> list[int]:
        return [REDIS_BASE_PORT + i for i in range(1 + self.replicas)]

    @property
    def sentinel_ports(self) -> list[int]:
        return [SENTINEL_BASE_PORT + i for i in range(self.sentinels)]

    def url(self, db: int, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{auth}{hosts}/{db}/{SERVICE}"

    def start(self) -> SentinelGroup:
        shutil.rmtree(self.workdir, ignore_errors=True)  # no RDB of an earlier run to load
        self.workdir.mkdir(parents=True)
        master, *replicas = self.redis_ports
        self.nodes[master] = start_redis(master, self.workdir)
        for port in replicas:
            self.nodes[port] = start_redis(port, self.workdir, replica_of=master)
        self.wait_replicated(master)
        quorum = self.sentinels // 2 + 1
        for port in self.sentinel_ports:
            conf = self.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {self.workdir}\n"
                f"logfile {self.workdir}/sentinel-{port}.log\n"
                f"sentinel monitor {SERVICE} {HOST} {master} {quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            popen = subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"], start_new_session=True
            )
            self.watchers.append(Node(port, popen))
        for watcher in self.watchers:
            wait_until(
                lambda w=watcher: self._sees(w, master),
                timeout=15,
                what=f"sentinel {watcher.port} watching {master} and its replicas",
            )
        return self

    def _sees(self, watcher: Node, master: int) -> bool:
        client = watcher.client()
        state: Any = client.sentinel_master(SERVICE)
        replicas: Any = client.sentinel_slaves(SERVICE)
        return (
            int(state["port"]) == master
            and int(state["num-other-sentinels"]) == self.sentinels - 1
            and len([r for r in replicas if not r["is_sdown"]]) == self.replicas
        )

    def master_port(self) -> int:
        """The master every sentinel agrees on (raises while they do not)."""
        states: list[Any] = [w.client().sentinel_master(SERVICE) for w in self.watchers]
        ports = {int(state["port"]) for state in states}
        if len(ports) != 1:
            raise RuntimeError(f"sentinels disagree on the master: {ports}")
        return ports.pop()

    def wait_replicated(self, master: int, timeout: float = 20) -> None:
        """Until every replica of ``master`` is online (its first full sync done)."""

        def caught_up() -> bool:
            info = self.nodes[master].client().info("replication")
            if info.get("role") != "master" or info.get("connected_slaves", 0) < self.replicas:
                return False
            lines = [info[f"slave{i}"] for i in range(self.replicas)]
            return all(r["state"] == "online" for r in lines)  # the full sync is done

        wait_until(caught_up, timeout=timeout, what=f"replicas of {master} online")

    def cut_replicas(self) -> None:
        """Stop every replica (SIGSTOP) and drop its link on the master: the master's writes
        from now on reach none of them. (Stopped alone, a replica would still find them in its
        socket's buffer when it runs again.)"""
        master = self.master_port()
        for port, node in self.nodes.items():
            if port != master:
                os.kill(node.popen.pid, signal.SIGSTOP)
        self.nodes[master].client().client_kill_filter(_type="replica")

    def resume_replicas(self) -> None:
        for node in self.nodes.values():
            if node.popen.poll() is None:
                os.kill(node.popen.pid, signal.SIGCONT)

    def kill_master(self) -> int:
        """SIGKILL the master; its port."""
        port = self.master_port()
        node = self.nodes[port]
        node.popen.kill()
        node.popen.wait(5)
        return port

    def wait_failover(self, old: int, timeout: float = 30) -> int:
        """Until the sentinels agree on a new master that answers as one; its port."""
        found: list[int] = []

        def promoted() -> bool:
            port = self.master_port()
            if port == old or self.nodes[port].client().info("replication")["role"] != "master":
                return False
            found.append(port)
            return True

        wait_until(promoted, timeout=timeout, interval=0.1, what=f"a master other than {old}")
        return found[-1]

    def restart_as_replica(self, port: int, master: int) -> None:
        """Bring a killed node back, empty, as a replica of ``master``; wait until in sync."""
        self.nodes[port] = start_redis(port, self.workdir, replica_of=master)
        self.wait_replicated(master)
        wait_until(
            lambda: all(self._sees(w, master) for w in self.watchers),
            timeout=20,
            what=f"sentinels seeing {port} as a replica of {master}",
        )

    def stop(self) -> None:
        for node in [*self.watchers, *self.nodes.values()]:
            if node.popen.poll() is None:
                os.kill(node.popen.pid, signal.SIGCONT)  # a paused replica dies too
                node.popen.kill()
                node.popen.wait(5)
        self.watchers.clear()
        self.nodes.clear()


def start_ledger(workdir: Path) -> Node:
    """The paper broker's own Redis (the port after the group's): a broker's books do not fail
    over with the hot path's Redis, so a purchase the failover would lose is still counted."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return start_redis(REDIS_BASE_PORT + 9, workdir)

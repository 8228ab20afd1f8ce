"""The one way this project opens Redis: with retries and a health check, at a plain URL or
through Sentinel.

A Redis restart, failover or ``CLIENT KILL`` leaves pooled connections dead while they sit idle.
The health check pings a connection that was idle for a while before using it, and a command
that still meets a broken connection is retried on a fresh one, with a short backoff. Every
script and command the hot path repeats this way is safe to run twice (see
:mod:`core.scripts`), because a retried command may have run the first time.

``REDIS_URL`` also takes python-socketio's Sentinel form,
``redis+sentinel://[user:password@]host:port[,host:port]/db/service_name``: the client then asks
the sentinels for the master of ``service_name`` on every new connection, so after a failover
(the old master gone, or answering ``READONLY`` as a replica) the retried command reaches the
promoted replica. The same URL serves the asyncio clients (:func:`redis_client`), the blocking
ones of RQ and the hub's threads (:func:`sync_redis_client`, :class:`RQRedis` for
``rq worker-pool --connection-class``) and python-socketio's manager, which parses it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError, DataError, TimeoutError
from redis.sentinel import Sentinel as SyncSentinel
from redis.sentinel import SentinelConnectionPool as SyncSentinelConnectionPool
from redis.sentinel import SentinelManagedConnection as SyncSentinelManagedConnection

HEALTH_CHECK_S = 2
CONNECT_TIMEOUT_S = 2.0
RETRIES = 5
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_TIMEOUT_S = 0.5  # a sentinel that does not answer this fast is skipped for the next one


class InvalidRedisURL(ValueError):
    """A ``REDIS_URL`` this project cannot open (its message never holds the password)."""


@dataclass(frozen=True)
class SentinelURL:
    """The parts of ``redis+sentinel://[user:password@]host:port[,host:port]/db/service_name``."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise InvalidRedisURL(f"not a {SENTINEL_SCHEME}:// URL: {redact(url)}")
        hosts = parts.netloc.rpartition("@")[2]
        sentinels: list[tuple[str, int]] = []
        for host_port in hosts.split(","):
            host, _, port = host_port.rpartition(":")
            if not host or not port.isdigit():
                raise InvalidRedisURL(f"a sentinel is not host:port in {redact(url)}")
            sentinels.append((host.strip("[]"), int(port)))
        path = [p for p in parts.path.split("/") if p]
        if len(path) != 2 or not path[0].isdigit():
            raise InvalidRedisURL(
                f"expected /<db>/<service_name> after the sentinels: {redact(url)}"
            )
        return cls(
            sentinels,
            path[1],
            int(path[0]),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )

    def connection_kwargs(self) -> dict[str, Any]:
        """What every connection to the master gets (the sentinels themselves get no password,
        as in python-socketio's manager)."""
        kwargs: dict[str, Any] = {"db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL_SCHEME


def database(url: str) -> int:
    """The database number a plain or Sentinel URL names."""
    if is_sentinel(url):
        return SentinelURL.parse(url).db
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``: the only form of a URL that is logged."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _HiredisPacking:
    """Packs commands with hiredis, in C, through redis-py's own ``HiredisRespSerializer``:
    redis-py uses it on its blocking connections but packs in Python on asyncio ones, and the hot
    path's scripts carry hundreds of arguments a batch (a 100-subscriber ``FINISH`` packs in
    0.14 ms instead of 1.2 ms)."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        try:
            packed: list[bytes] = self._packer.pack(*args)
        except DataError:  # a type hiredis does not take: redis-py's own packing (and message)
            return super().pack_command(*args)  # type: ignore[misc, no-any-return]
        return packed


class HiredisPackedConnection(_HiredisPacking, Connection):
    """A plain TCP connection that packs with hiredis."""


class HiredisSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    """A connection to the master Sentinel names, packing with hiredis."""


def _retrying() -> dict[str, Any]:
    return {
        # A connection attempt made while the network is cut gives up (and is retried) instead
        # of waiting on the kernel's SYN retries, up to minutes: a worker cut off is back at work
        # within seconds of the link's return.
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_S,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), RETRIES),
        "retry_on_error": [ConnectionError, TimeoutError],
    }


def redis_client(url: str) -> Redis:
    """The asyncio client of every process: strings decoded, retried, health-checked."""
    if is_sentinel(url):
        where = SentinelURL.parse(url)
        sentinel = Sentinel(
            where.sentinels,
            sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S},
            **where.connection_kwargs(),
        )
        master: Redis = sentinel.master_for(
            where.service,
            connection_class=HiredisSentinelConnection,
            decode_responses=True,
            **_retrying(),
        )
        return master
    plain_tcp = urlsplit(url).scheme == "redis"  # rediss:// and unix:// keep their own classes
    extra: dict[str, Any] = {"connection_class": HiredisPackedConnection} if plain_tcp else {}
    return Redis.from_url(url, decode_responses=True, **_retrying(), **extra)


def sync_redis_client(
    url: str, redis_class: type[SyncRedis] = SyncRedis, **kwargs: Any
) -> SyncRedis:
    """A blocking client (RQ, the hub's threads, tools) at a plain or Sentinel URL; ``kwargs``
    as ``Redis.from_url`` takes them (``decode_responses``, say). A plain URL opens exactly as
    ``Redis.from_url`` would, with redis-py's default retries."""
    if not is_sentinel(url):
        client: SyncRedis = redis_class.from_url(url, **kwargs)
        return client
    where = SentinelURL.parse(url)
    sentinel = SyncSentinel(
        where.sentinels,
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S},
        **where.connection_kwargs(),
    )
    master: SyncRedis = sentinel.master_for(
        where.service, redis_class=redis_class, connection_class=SyncSentinelConnection, **kwargs
    )
    return master


_UNSET = object()  # ``timeout`` not given: redis-py's own default


class SyncSentinelConnection(SyncSentinelManagedConnection):
    """redis-py's blocking Sentinel connection, except that a read interrupted by an exception
    drops the connection, as a plain connection's does. redis-py's keeps it by default, with the
    reply still to come: RQ's SIGTERM handler interrupts a worker's blocking dequeue, and the
    worker's last bookkeeping then waited behind that ``BLMOVE`` on the same connection until
    the pod was killed (or read its reply as its own)."""

    def read_response(
        self,
        disable_decoding: Any = False,
        *,
        timeout: float | object = _UNSET,
        disconnect_on_error: bool | None = True,
        push_request: bool | None = False,
    ) -> Any:
        kwargs: dict[str, Any] = {"disconnect_on_error": disconnect_on_error}
        if timeout is not _UNSET:
            kwargs["timeout"] = timeout
        return super().read_response(disable_decoding, push_request=push_request, **kwargs)


class RQRedis(SyncRedis):
    """RQ's connection class for every ``rq`` command of this project
    (``--connection-class core.connections.RQRedis``): ``-u`` then takes a Sentinel URL too.
    ``rq worker-pool`` forks its workers with this class and the parent's pool arguments, which
    for a Sentinel master carry the parent's sentinel lookup, so each worker still finds the
    current master on every new connection."""

    def __init__(self, *args: Any, connection_pool: Any = None, **kwargs: Any) -> None:
        if (
            connection_pool is not None
            and not isinstance(connection_pool, SyncSentinelConnectionPool)
            and issubclass(connection_pool.connection_class, SyncSentinelManagedConnection)
        ):  # a worker forked by ``rq worker-pool``: a Sentinel pool of its own again
            pool_kwargs = dict(connection_pool.connection_kwargs)
            parent = pool_kwargs.pop("connection_pool")
            connection_pool = SyncSentinelConnectionPool(
                parent.service_name,
                parent.sentinel_manager,
                connection_class=connection_pool.connection_class,
                **pool_kwargs,
            )
        kwargs["connection_pool"] = connection_pool
        super().__init__(*args, **kwargs)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RQRedis:
        if not is_sentinel(url):
            plain = super().from_url(url, **kwargs)
            assert isinstance(plain, RQRedis)
            return plain
        client = sync_redis_client(url, cls, **kwargs)
        assert isinstance(client, RQRedis)
        return client

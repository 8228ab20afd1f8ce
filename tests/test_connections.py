"""``REDIS_URL`` in both forms: a plain URL, and python-socketio's Sentinel form, parsed the same
way by every client of the project; a URL's password never reaches a log line."""

from __future__ import annotations

import pytest
from redis import Redis as SyncRedis
from redis.asyncio.sentinel import SentinelConnectionPool

from broker_workers.settings import load_settings as load_worker_settings
from core.connections import (
    HiredisPackedConnection,
    HiredisSentinelConnection,
    InvalidRedisURL,
    RQRedis,
    SentinelURL,
    SyncSentinelConnection,
    database,
    redact,
    redis_client,
    sync_redis_client,
)
from core.logs import redact_text
from core.settings import ConfigurationError

URL = "redis+sentinel://ctc:s3cr%40t@redis-0.redis:26379,redis-1.redis:26380/2/ctc"


def test_a_sentinel_url_is_parsed_as_python_socketio_does() -> None:
    where = SentinelURL.parse(URL)
    assert where.sentinels == [("redis-0.redis", 26379), ("redis-1.redis", 26380)]
    assert (where.service, where.db, where.username, where.password) == ("ctc", 2, "ctc", "s3cr@t")
    assert database(URL) == 2
    assert database("redis://127.0.0.1:6379/5") == 5
    assert database("redis://127.0.0.1:6379") == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:pw@h1:26379/0",  # no service name
        "redis+sentinel://:pw@h1/0/ctc",  # no port
        "redis+sentinel://:pw@h1:26379/x/ctc",  # no database number
    ],
)
def test_a_malformed_sentinel_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(InvalidRedisURL) as refused:
        SentinelURL.parse(url)
    assert "pw" not in str(refused.value)


async def test_clients_of_both_forms_keep_hiredis_packing_and_retries() -> None:
    sentinel = redis_client(URL)
    plain = redis_client("redis://127.0.0.1:6379/0")
    try:
        for client, connection in ((sentinel, HiredisSentinelConnection),
                                   (plain, HiredisPackedConnection)):  # fmt: skip
            assert client.connection_pool.connection_class is connection
            retry = client.get_retry()
            assert retry is not None and retry.get_retries() == 5
        assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
        assert sentinel.connection_pool.service_name == "ctc"
        assert sentinel.connection_pool.connection_kwargs["db"] == 2
    finally:
        await sentinel.aclose()
        await plain.aclose()


def test_rq_opens_either_form_through_its_connection_class() -> None:
    assert isinstance(RQRedis.from_url("redis://127.0.0.1:6379/3"), RQRedis)
    master = RQRedis.from_url(URL)
    assert isinstance(master, RQRedis)
    assert master.connection_pool.connection_kwargs["password"] == "s3cr@t"
    # a read RQ's SIGTERM interrupts drops the connection, reply pending, as a plain one does
    assert master.connection_pool.connection_class is SyncSentinelConnection
    assert type(sync_redis_client("redis://127.0.0.1:6379/3")) is SyncRedis


def test_a_urls_password_is_never_logged() -> None:
    assert redact(URL) == "redis+sentinel://ctc:***@redis-0.redis:26379,redis-1.redis:26380/2/ctc"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    line = redact_text(f"connecting to {URL} and redis://:hunter2@10.0.0.1:6379/0")
    assert "s3cr" not in line and "hunter2" not in line
    assert "redis-0.redis:26379" in line


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"REDIS_CLUSTER": "redis://127.0.0.1:7000"}, "REDIS_WAIT_REPLICAS cannot be used"),
        ({"LEASE_MARGIN_MS": "4500"}, "LEASE_MARGIN_MS plus WORKER_HEARTBEAT_S"),
    ],
)
def test_a_worker_refuses_settings_that_would_hold_every_batch_or_outrun_its_lease(
    extra: dict[str, str], problem: str
) -> None:
    """WAIT through a cluster client would never be confirmed (every batch held back), and a
    margin that leaves a lease no time between renewals would fence the worker for ever: both
    are refused at start-up, in one line."""
    environ = {"APP_ENV": "development", "REDIS_WAIT_REPLICAS": "1", **extra}
    with pytest.raises(ConfigurationError, match=problem):
        load_worker_settings(environ)
    assert load_worker_settings({"APP_ENV": "development", "REDIS_WAIT_REPLICAS": "1"})

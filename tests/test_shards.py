"""The hot path over K Redis shards (``core/shards.py``), with real processes: three plain Redis
servers (``REDIS_SHARDS``) and a real three-master Redis Cluster (``REDIS_CLUSTER``), each
started here on loopback ports of ``TEST_SHARD_PORT`` on (``TEST_SHARD_PORT`` .. +2 for the
plain servers, +3 .. +5 and their bus ports +10000 for the cluster) and stopped after.

On each: a signal whose subscribers are on every shard reaches each of them exactly once (the
brokers' books agree), a cancel reaches the work waiting on every shard, and a worker killed with
claims on the last shard has them recovered by the reaper.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.cluster import RedisCluster

from core import keys, scripts
from core.scripts import NewSignal
from core.shards import Shard, Shards, cluster_tags, shard_index
from tests.chaos import CHAOS_ENV, Chaos, signal_to
from tests.client import Api, User
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import System, children, redis_servers, running_system, wait_until

SHARDS = 3
SHARD_DB = UNIT_DB + 4  # module by module, as test_admin and test_demo do
BASE_PORT = int(os.environ.get("TEST_SHARD_PORT", "6441"))

pytestmark = pytest.mark.timeout(180)


@contextmanager
def plain_shards() -> Iterator[dict[str, str]]:
    ports = [BASE_PORT + i for i in range(SHARDS)]
    with redis_servers(ports, LOG_DIR / "shards" / "plain"):
        yield {"REDIS_SHARDS": ",".join(f"redis://127.0.0.1:{p}/0" for p in ports)}


@contextmanager
def cluster_shards() -> Iterator[dict[str, str]]:
    ports = [BASE_PORT + SHARDS + i for i in range(SHARDS)]
    with redis_servers(
        ports, LOG_DIR / "shards" / "cluster", "--cluster-enabled", "yes",
        "--cluster-node-timeout", "2000",
    ):  # fmt: skip
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        client = sync_redis.Redis(port=ports[0], decode_responses=True)
        wait_until(
            lambda: client.execute_command("CLUSTER INFO").get("cluster_state") == "ok",
            timeout=20, what="the cluster's slots served",
        )  # fmt: skip
        client.close()
        yield {"REDIS_CLUSTER": f"redis://127.0.0.1:{ports[0]}"}


@pytest.fixture(scope="module", params=["plain", "cluster"])
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, str]]]:
    servers = plain_shards if request.param == "plain" else cluster_shards
    with servers() as env:
        yield request.param, env


@pytest.fixture(scope="module")
def system(deployment: tuple[str, dict[str, str]]) -> Iterator[System]:
    """Hub, paper pool, reaper and the Deriv simulator (whose book :meth:`Chaos.purchases`
    reads) over the shards."""
    kind, env = deployment
    env = {**CHAOS_ENV, **env, "BROKERS": "paper,deriv"}
    with running_system(SHARD_DB, LOG_DIR / "shards" / kind, **env) as system:
        system.start_hub()
        system.start_deriv_sim()
        system.start_pool("paper", 2)
        system.start_reaper()
        yield system


@pytest.fixture(scope="module")
def api(system: System) -> Iterator[Api]:
    import httpx

    with httpx.Client(base_url=system.base_url, timeout=20) as http:
        yield Api(http)


@pytest.fixture(scope="module")
def pool(system: System) -> dict[str, Any]:
    return {"paper": next(p for p in system.procs if p.name == "worker_paper")}


def subscribers_on(api: Api, channel_id: str, shards: list[int]) -> list[User]:
    """A subscriber on each shard of ``shards`` (their accounts' shard, as the hub maps it)."""
    users = []
    for wanted in shards:
        user = api.signup("subscriber")
        account = api.account(user)
        while shard_index(account["id"], SHARDS) != wanted:
            account = api.account(user)
        body = {"broker_account_id": account["id"], "stake": {"mode": "fixed", "amount": 1}}
        api.ok("POST", f"/api/channels/{channel_id}/subscribe", user, 201, json=body)
        users.append(user)
    return users


def harness(system: System, api: Api, shards: list[int], pools: dict[str, Any]) -> Chaos:
    provider = api.signup("provider")
    channel_id = str(api.channel(provider, max_signal_delay_ms=20_000)["id"])
    subscribers_on(api, channel_id, shards)
    return Chaos(system, api, provider, channel_id, len(shards), 0, pools=pools)


def work_left(deployment: tuple[str, dict[str, str]], signal_id: str) -> list[int]:
    """Subscribers waiting in the signal's paper work set, per shard."""
    kind, env = deployment
    if kind == "plain":
        clients = [sync_redis.Redis.from_url(url) for url in env["REDIS_SHARDS"].split(",")]
        tags = [f"s{i}" for i in range(SHARDS)]
        return [
            int(c.scard(keys.on_shard(t, keys.work(signal_id, "paper"))))
            for c, t in zip(clients, tags, strict=True)
        ]
    cluster = RedisCluster.from_url(env["REDIS_CLUSTER"])
    tags = cluster_tags(env["REDIS_CLUSTER"])
    return [int(cluster.scard(keys.on_shard(t, keys.work(signal_id, "paper")))) for t in tags]


async def test_a_signal_reaches_every_subscriber_on_every_shard_once(
    system: System, api: Api, pool: dict[str, Any], deployment: tuple[str, dict[str, str]]
) -> None:
    chaos = harness(system, api, [0, 1, 2] * 3, pool)
    watcher = await chaos.watcher()
    try:
        ack = await chaos.send(watcher)
        resent = await watcher.emit("signal", {**signal_to(chaos.channel_id)})
        verdict = chaos.verify(ack["signal_id"], 9, watcher)
    finally:
        await watcher.close()
    assert ack["fanout"] == {"total": 9, "by_broker": {"paper": 9}}
    assert resent["ok"] and resent["signal_id"] != ack["signal_id"]
    assert verdict.ok and verdict.records == 9, verdict
    assert verdict.statuses == {"placed": 9}
    assert len(chaos.purchases(ack["signal_id"])) == 9
    assert work_left(deployment, ack["signal_id"]) == [0, 0, 0]
    signal = api.ok("GET", f"/api/signals/{ack['signal_id']}", chaos.provider)
    assert signal["counts"]["placed"] == 9
    ready = api.ok("GET", "/readyz")
    assert {ready["checks"][f"redis_shard_{i}"] for i in range(SHARDS)} == {"ok"}
    gauges = api.call("GET", "/metrics").text  # read over every shard
    assert 'ctc_pending_work{broker="paper"} 0.0' in gauges


async def test_a_resend_gets_the_first_answer(
    system: System, api: Api, pool: dict[str, Any]
) -> None:
    chaos = harness(system, api, [1, 2], pool)
    watcher = await chaos.watcher()
    try:
        payload = {**signal_to(chaos.channel_id), "client_signal_id": "once"}
        first = await watcher.emit("signal", payload)
        second = await watcher.emit("signal", payload)
        verdict = chaos.verify(first["signal_id"], 2, watcher)
    finally:
        await watcher.close()
    assert second == first and first["fanout"]["total"] == 2
    assert verdict.ok and verdict.records == 2, verdict


async def test_a_killed_workers_claims_on_the_last_shard_are_recovered(
    system: System, api: Api, pool: dict[str, Any]
) -> None:
    """The first batch claimed (every subscriber is on shard 2) kills its worker; the reaper
    releases its claims there, redrives them, and every subscriber ends once."""
    chaos = harness(system, api, [2] * 6, pool)
    main = sync_redis.Redis.from_url(chaos.system.env["REDIS_URL"], decode_responses=True)
    main.delete(keys.REAPER_ACTIONS)
    watcher = await chaos.watcher()
    try:
        chaos.arm("after_claim", 1)
        ack = await chaos.send(watcher)
        verdict = chaos.verify(ack["signal_id"], 6, watcher)
    finally:
        chaos.disarm()
        await watcher.close()
    assert verdict.ok and verdict.records == 6, verdict
    actions = [orjson.loads(a) for a in main.lrange(keys.REAPER_ACTIONS, 0, -1)]
    assert any(a["kind"] == "recovered" and a["signal_id"] == ack["signal_id"] for a in actions), (
        actions
    )
    chaos.wait_for_workers("paper")


async def test_a_cancel_reaches_every_shard(
    system: System, api: Api, pool: dict[str, Any], deployment: tuple[str, dict[str, str]]
) -> None:
    """The paper pool is stopped (SIGSTOP; last in the module: the reaper forgets its workers
    meanwhile): the work waits on every shard until the cancel ends all of it."""
    chaos = harness(system, api, [0, 1, 2, 0, 1, 2], pool)
    stopped = [pool["paper"].popen.pid, *children(pool["paper"].popen.pid)]
    watcher = await chaos.watcher()
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        ack = await chaos.send(watcher)
        assert ack["fanout"] == {"total": 6, "by_broker": {"paper": 6}}
        assert work_left(deployment, ack["signal_id"]) == [2, 2, 2]
        cancelled = await watcher.emit("cancel", {"signal_id": ack["signal_id"]})
        assert cancelled == {"ok": True, "signal_id": ack["signal_id"], "cancellable": 6}
        assert work_left(deployment, ack["signal_id"]) == [0, 0, 0]
        verdict = chaos.verify(ack["signal_id"], 6, watcher)
        again = await watcher.emit("cancel", {"signal_id": ack["signal_id"]})
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        await watcher.close()
    assert verdict.ok and verdict.records == 6, verdict
    assert verdict.statuses == {"skipped/cancelled": 6}
    assert again["cancellable"] == 6


async def test_a_resend_completes_an_expansion_whose_hub_died(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over two shards (here one server, apart by their tags): the hub dies after the shards
    fanned out, before the ack. The signal stays ``expanding`` (the reaper redrives none of it);
    a resend with the same client id completes that signal, not a second one, and then gets the
    first answer."""
    shards = Shards((Shard(redis, "s0", 0), Shard(redis, "s1", 1)))
    channel = {"id": "c1", "senders": ["prov"], "max_signal_delay_ms": 2000, "assets": None}
    for shard in shards:
        await redis.set(shard.key(keys.channel("c1")), orjson.dumps(channel))
        await redis.sadd(
            shard.key(keys.directory("c1", "paper")), *[f"{shard.index}-{i}" for i in range(3)]
        )
    new = NewSignal("sig1", "c1", "prov", "EURUSD", "CALL", 60, "client-1")

    async def died(*args: Any) -> Any:
        raise ConnectionError("the hub died")

    with monkeypatch.context() as patch:
        patch.setattr(scripts, "_EXPAND_DONE", died)
        with pytest.raises(ConnectionError):
            await scripts.expand_sharded(shards, new, ["paper"])
    home = shards.home
    assert await redis.hget(home.key(keys.signal("sig1")), "status") == "expanding"
    assert [await redis.scard(s.key(keys.work("sig1", "paper"))) for s in shards] == [3, 3]

    resent = await scripts.expand_sharded(shards, replace(new, signal_id="sig2"), ["paper"])
    status, body = resent.answer
    assert status == "ok" and orjson.loads(body)["signal_id"] == "sig1"
    assert orjson.loads(body)["fanout"] == {"total": 6, "by_broker": {"paper": 6}}
    assert resent.by_shard == {0: {"paper": 3}, 1: {"paper": 3}}
    assert await redis.hget(home.key(keys.signal("sig1")), "status") == "active"
    assert not await redis.exists(home.key(keys.signal("sig2")))
    again = await scripts.expand_sharded(shards, replace(new, signal_id="sig3"), ["paper"])
    assert again.answer == ("dup", body)
    assert await redis.xlen(home.key(keys.RESULTS)) == 1  # the signal's record, once

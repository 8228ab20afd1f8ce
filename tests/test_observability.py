"""Operating it (issue 15), on real processes: the hub's and the workers' ``/metrics`` after a
signal, the reaper's actions after a worker is killed mid-batch, and the account health the
workers keep current by themselves.

The hub's ``/metrics`` is parsed with prometheus-client's own parser; every family it serves must
be one of issue 15's metrics (``tests/test_monitoring.METRICS``) with exactly its labels, or one of
prometheus-client's default process figures.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis as sync_redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.asyncio import Redis

from broker_workers.checks import Refresher
from broker_workers.runtime import WorkerRuntime
from broker_workers.settings import load_settings
from core import keys
from core.crypto import CredentialsBox
from tests.chaos import CHAOS_ENV, Chaos, new_channel, signal_to
from tests.client import Api, live
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import System, free_port, redis_url, running_system, wait_until
from tests.test_monitoring import CLIENT_DEFAULTS, METRICS

OBS_DB = UNIT_DB + 2
REAPER_DB = UNIT_DB + 3  # beside OBS_DB's system, which lives as long as the module
BROKERS = ("paper", "deriv")
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def scrape(url: str) -> dict[str, list[Sample]]:
    """``/metrics`` at ``url``, parsed: samples by metric family."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return {f.name: list(f.samples) for f in text_string_to_metric_families(r.text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    """The sum of ``sample``'s values over the series whose labels include ``labels``."""
    family = next(
        (name for name in families if sample == name or sample.startswith(name + "_")), sample
    )
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def assert_only_issue_15(families: dict[str, list[Sample]]) -> None:
    """Every family is issue 15's (its type, exactly its labels) or a process default."""
    defaults = {name.removesuffix("_total") for name in CLIENT_DEFAULTS}
    for name, samples in families.items():
        if name in defaults:
            continue
        metric = name if name in METRICS else f"{name}_total"
        assert metric in METRICS, f"{name} is not one of issue 15's metrics"
        kind, labels = METRICS[metric]
        for s in samples:
            assert set(s.labels) - {"le"} == labels, (s.name, s.labels)
            if kind == "histogram":
                assert s.name[len(name) :] in HISTOGRAM_PARTS, s.name


def worker_ports(system: System, broker: str) -> list[int]:
    """The /metrics ports the live workers of ``broker`` recorded with their heartbeat."""
    r = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    try:
        ids = [str(w) for w in r.smembers(keys.workers(broker))]
        infos = [r.hgetall(keys.worker_info(w)) for w in ids if r.exists(keys.worker_heartbeat(w))]
        return sorted(int(i["metrics_port"]) for i in infos if int(i.get("metrics_port") or 0))
    finally:
        r.close()


def logged_port(system: System, name: str) -> int:
    """The /metrics port a process logged at its (latest) start: logs are appended to."""
    found: list[int] = []

    def logged() -> bool:
        text = next(p for p in system.procs if p.name == name).log.read_text(errors="replace")
        found[:] = [int(m) for m in re.findall(r"metrics on http://[^:]+:(\d+)/metrics", text)]
        return bool(found)

    wait_until(logged, what=f"{name}'s metrics port")
    return found[-1]


@dataclass
class Observed:
    system: System
    api: Api
    metrics_port: int


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    """Hub, both brokers' pools and the reaper, each worker and the reaper serving /metrics
    from ``metrics_port`` on; one subscriber per claim (so one buy call each); account health
    refreshed every second."""
    port = free_port()
    env = {"METRICS_PORT": str(port), "DRAIN_BATCH_SIZE": "1", "HEALTH_REFRESH_S": "1"}
    with running_system(OBS_DB, LOG_DIR / "observability", **env) as system:
        system.start_hub()
        system.start_deriv_sim()
        system.start_pool("paper", workers=2)
        system.start_pool("deriv", workers=1)
        system.start_reaper()
        with httpx.Client(base_url=system.base_url, timeout=20) as http:
            yield Observed(system, Api(http), port)


async def test_the_hub_counts_every_copy_of_a_signal(observed: Observed) -> None:
    system, api = observed.system, observed.api
    hub_metrics = f"{system.base_url}/metrics"
    r = httpx.get(hub_metrics)
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    before = scrape(hub_metrics)
    paper, deriv = 5, 3
    provider, channel_id = new_channel(system, api, paper, deriv)
    watcher = await live(system.base_url, "/provider", provider)
    try:
        ack = await watcher.emit("signal", signal_to(channel_id))
        assert ack["ok"] is True and ack["fanout"]["total"] == paper + deriv
        await watcher.wait_for("every copy", lambda: len(watcher.executions) == paper + deriv)
    finally:
        await watcher.close()
    assert {e["status"] for e in watcher.executions} == {"placed"}

    def grew(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
        return value(families, sample, **labels) - value(before, sample, **labels)

    # The relay counts a slice once it is acknowledged, just after the live feed has it.
    after: dict[str, list[Sample]] = {}

    def counted() -> bool:
        after.update(scrape(hub_metrics))
        return grew(after, "ctc_executions_total") == paper + deriv

    wait_until(counted, timeout=10, what="the copies in /metrics")
    for broker, n in (("paper", paper), ("deriv", deriv)):
        assert grew(after, "ctc_copy_latency_seconds_count", broker=broker) == n
        assert grew(after, "ctc_executions_total", broker=broker, status="placed", reason="") == n
        within_10s = grew(after, "ctc_copy_latency_seconds_bucket", broker=broker, le="10.0")
        assert within_10s == n
    assert grew(after, "ctc_signals_total", outcome="accepted", reason="") == 1
    assert grew(after, "ctc_signal_ack_seconds_count") == 1
    for gauge in ("ctc_pending_work", "ctc_rq_queue_length", "ctc_workers_live", "ctc_subscribers"):
        assert {s.labels["broker"] for s in after[gauge]} == set(BROKERS), gauge
    assert value(after, "ctc_workers_live", broker="paper") == 2
    assert value(after, "ctc_workers_live", broker="deriv") == 1
    assert value(after, "ctc_subscribers", broker="paper") >= paper
    assert value(after, "ctc_results_lag_entries") >= 0
    assert value(after, "ctc_results_lag_seconds") >= 0
    assert "process_resident_memory_bytes" in after
    assert_only_issue_15(after)
    # Public-safe: no id of ours in any label or value of the page.
    text = httpx.get(hub_metrics).text
    for secret in (ack["signal_id"], channel_id, provider.id, provider.access_token):
        assert secret not in text

    # A refused signal is counted by its reason, and timed too.
    watcher = await live(system.base_url, "/provider", provider)
    try:
        refused = await watcher.emit("signal", {**signal_to(channel_id), "asset": "NOPE"})
    finally:
        await watcher.close()
    assert refused["ok"] is False
    again = scrape(hub_metrics)
    reason = refused["error"]["code"]
    assert grew(again, "ctc_signals_total", outcome="refused", reason=reason) == 1
    assert grew(again, "ctc_signal_ack_seconds_count") == 2

    # Each worker serves its own /metrics; the pool's two took two ports from METRICS_PORT on.
    ports = {b: worker_ports(system, b) for b in BROKERS}
    assert len(ports["paper"]) == 2 and len(ports["deriv"]) == 1
    first = observed.metrics_port
    assert all(first <= p <= first + 63 for b in BROKERS for p in ports[b])
    for broker, n in (("paper", paper), ("deriv", deriv)):
        pages = [scrape(f"http://127.0.0.1:{p}/metrics") for p in ports[broker]]
        for page in pages:
            assert_only_issue_15(page)
            assert value(page, "ctc_rate_limit_waits_total", broker=broker) >= 0
            assert value(page, "ctc_broker_reconnects_total", broker=broker) == 0
            assert "ctc_broker_reconnects" in page  # at 0 from the start
        buys = sum(value(p, "ctc_broker_calls_total", broker=broker, call="buy") for p in pages)
        timed = sum(
            value(p, "ctc_broker_call_seconds_count", broker=broker, call="buy") for p in pages
        )
        ok = sum(
            value(p, "ctc_broker_calls_total", broker=broker, call="buy", outcome="ok")
            for p in pages
        )
        assert buys == timed == ok == n, (broker, buys, timed, ok)


async def test_health_follows_the_broker_within_the_period(observed: Observed) -> None:
    """A Deriv account's balance changes at the broker (the simulator's control API) and a paper
    account's by a purchase: the health the hub shows follows within the period (1 s here), and
    the pool checks each account about once a period, not once per worker."""
    system, api = observed.system, observed.api
    token = f"health-{time.time_ns()}"
    account = {"token": token, "balance": 1000, "currency": "USD"}
    httpx.post(f"{system.sim_url}/_sim/accounts", json=account).raise_for_status()
    subscriber = api.signup("subscriber")
    created = api.account(subscriber, "deriv", {"token": token})
    assert created["balance"] == 1000

    def balance_is(amount: float) -> bool:
        (listed,) = api.ok("GET", "/api/broker-accounts", subscriber)["items"]
        return bool(listed["balance"] == amount and listed["health"]["status"] == "ok")

    httpx.post(f"{system.sim_url}/_sim/accounts", json={**account, "balance": 432.5})
    started = time.monotonic()
    wait_until(lambda: balance_is(432.5), timeout=5, what="the new Deriv balance")
    assert time.monotonic() - started < 4

    provider, channel_id = new_channel(system, api, 0, 0)
    user, paper_account, _ = api.subscriber(channel_id, {"mode": "fixed", "amount": 25})
    start = paper_account["balance"]
    assert start is not None

    watcher = await live(system.base_url, "/provider", provider)
    try:
        assert (await watcher.emit("signal", signal_to(channel_id)))["ok"] is True
        await watcher.wait_for("the copy", lambda: len(watcher.executions) == 1)
    finally:
        await watcher.close()
    assert watcher.executions[0]["status"] == "placed"

    def paper_follows() -> bool:
        (listed,) = api.ok("GET", "/api/broker-accounts", user)["items"]
        return bool(listed["balance"] == start - 25)

    wait_until(paper_follows, timeout=5, what="the paper balance after the purchase")

    # Two paper workers, one schedule: the account is checked about once a second, not twice.
    r = sync_redis.Redis.from_url(redis_url(system.db), decode_responses=True)
    checks: set[str] = set()
    until = time.monotonic() + 4
    while time.monotonic() < until:
        checks.add(str(r.hget(keys.account_health(paper_account["id"]), "checked_ms")))
        await asyncio.sleep(0.05)
    r.close()
    assert 2 <= len(checks) <= 6, checks  # about 4 in 4 s; each worker on its own: about 8


def test_overview_shows_each_worker_with_its_sessions(observed: Observed) -> None:
    """What the workers record with their heartbeat reaches the admin console's overview (the
    endpoint's authorization is tested in tests/test_admin.py; here, its figures)."""
    r = sync_redis.Redis.from_url(redis_url(observed.system.db), decode_responses=True)
    try:
        workers = [str(w) for w in r.smembers(keys.workers("deriv"))]
        (deriv_worker,) = [w for w in workers if r.exists(keys.worker_heartbeat(w))]
        wait_until(lambda: r.hget(keys.worker_info(deriv_worker), "sessions_connected") == "2")
        info: Any = r.hgetall(keys.worker_info(deriv_worker))
    finally:
        r.close()
    assert info["broker"] == "deriv" and int(info["pid"]) > 0
    assert int(info["sessions_total"]) == 2
    assert 0 < int(info["budget_available"]) <= int(info["budget_per_minute"])
    assert int(info["metrics_port"]) >= observed.metrics_port


async def test_the_reaper_counts_and_lists_what_it_recovered() -> None:
    """A worker SIGKILLed with a batch claimed: every copy still ends once, and the reaper's
    /metrics and its list of recent actions say it recovered the claims."""
    port = free_port()
    with running_system(REAPER_DB, LOG_DIR / "observability-reaper", **CHAOS_ENV) as system:
        system.env["METRICS_PORT"] = str(port)
        chaos = Chaos.start(system, paper=8, deriv=4)
        reaper_metrics = f"http://127.0.0.1:{logged_port(system, 'reaper')}/metrics"
        before = scrape(reaper_metrics)
        assert_only_issue_15(before)
        assert value(before, "ctc_reaper_actions_total", kind="recovered") == 0
        chaos.arm("after_claim", 2)
        watcher = await chaos.watcher()
        try:
            ack = await chaos.send(watcher)
            verdict = chaos.verify(ack["signal_id"], ack["fanout"]["total"], watcher)
        finally:
            await watcher.close()
            chaos.disarm()
        assert verdict.ok, verdict
        after = scrape(reaper_metrics)
        assert value(after, "ctc_reaper_actions_total", kind="recovered") >= 1
        actions = [a for a in chaos.redis.lrange(keys.REAPER_ACTIONS, 0, -1)]
        assert any(
            '"kind":"recovered"' in a and ack["signal_id"] in a and '"worker":' in a
            for a in actions
        ), actions


async def test_the_refresh_shares_one_schedule_and_waits_while_draining(
    redis: Redis, unit_redis_url: str
) -> None:
    """Two workers' refreshers take due accounts from one schedule: each account is checked once
    and then not again for a period, whatever the number of workers; an account removed since
    leaves the schedule; a worker draining a signal checks nothing."""
    settings = load_settings(
        {"APP_ENV": "development", "REDIS_URL": unit_redis_url, "BROKERS": "paper",
         "HEALTH_REFRESH_S": "30", "HEALTH_BATCH": "3", "HEALTH_CHECKS_PER_MIN": "6000"}
    )  # fmt: skip
    sealed = CredentialsBox(settings.broker_credentials_key).seal({})
    ids = [f"a{i}" for i in range(5)]
    for account_id in ids:
        entry = {"id": account_id, "credentials": sealed, "currency": "USD"}
        await redis.hset(keys.accounts("paper"), account_id, json.dumps(entry))
    await redis.zadd(keys.health_due("paper"), {**dict.fromkeys(ids, 0), "removed": 0})
    runtimes = [WorkerRuntime(settings, "paper", f"w{i}") for i in range(2)]
    for rt in runtimes:
        await rt._open()
    try:
        first, second = (Refresher(rt) for rt in runtimes)
        runtimes[0].draining = 1
        assert await first.refresh() == 0
        assert await redis.zscore(keys.health_due("paper"), "a0") == 0  # nothing taken
        runtimes[0].draining = 0
        checked = 0
        for _ in range(4):
            checked += await first.refresh() + await second.refresh()
        assert checked == len(ids)
        assert 0 < first.rt.health_checked <= 3 and 0 < second.rt.health_checked <= 3
        for account_id in ids:
            health: Any = await redis.hgetall(keys.account_health(account_id))
            assert health["status"] == "ok" and Decimal(health["balance"]) == 10_000
        scored: Any = await redis.zrange(keys.health_due("paper"), 0, -1, withscores=True)
        due = dict(scored)
        assert set(due) == set(ids)  # "removed" has no account: it left the schedule
        soon = (time.time() + 25) * 1000
        assert all(score > soon for score in due.values())  # a period ahead
        assert await first.refresh() + await second.refresh() == 0
    finally:
        for rt in runtimes:
            await rt._close()

"""The operators' console: made only by the operator's command, closed to everyone else, and
every action it takes (suspending channels and users, requeueing jobs) has its effect at once on
real processes and lands in the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis as sync_redis
import socketio
from rq import Queue

from core import keys
from tests.client import Api, User, assert_error, live
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import ROOT, System, redis_url, running_system, wait_until

ADMIN_DB = UNIT_DB + 4
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "a-long-operator-password"


def create_admin(
    env: dict[str, str], email: str, password: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signal_hub.admin", "create-admin", email],
        cwd=ROOT, env={**env, "ADMIN_PASSWORD": password}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@dataclass
class Ops:
    system: System
    api: Api
    admin: User


@pytest.fixture(scope="module")
def ops() -> Iterator[Ops]:
    with running_system(ADMIN_DB, LOG_DIR / "admin") as system:
        made = create_admin(system.env, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert made.returncode == 0, made.stderr
        assert f"admin {ADMIN_EMAIL} created" in made.stdout
        system.start_hub()
        system.start_pool("paper", workers=2)
        system.start_deriv_sim()
        system.start_pool("deriv", workers=1)
        with httpx.Client(base_url=system.base_url, timeout=10) as http:
            api = Api(http)
            r = http.post(
                "/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["user"]["role"] == "admin"
            admin = User(body["user"]["id"], ADMIN_EMAIL, "admin", body["access_token"],
                         body["refresh_token"])  # fmt: skip
            yield Ops(system, api, admin)


def test_the_command_refuses_what_it_should(ops: Ops) -> None:
    short = create_admin(ops.system.env, "other@example.com", "short")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    bad = create_admin(ops.system.env, "not an email", ADMIN_PASSWORD)
    assert bad.returncode == 1 and "is not an email address" in bad.stderr
    # The hub holds the embedded store: writing beside it would be lost; say so.
    busy = create_admin(ops.system.env, "other@example.com", ADMIN_PASSWORD)
    assert busy.returncode == 1 and "stop the hub" in busy.stderr
    env = {k: v for k, v in ops.system.env.items() if k != "ADMIN_PASSWORD"}
    no_password = subprocess.run(
        [sys.executable, "-m", "signal_hub.admin", "create-admin", "x@example.com"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    assert no_password.returncode == 1 and "ADMIN_PASSWORD" in no_password.stderr
    for result in (short, bad, busy, no_password):
        assert "Traceback" not in result.stderr


def test_signup_never_makes_an_admin(ops: Ops) -> None:
    r = ops.api.http.post(
        "/api/auth/signup",
        json={"email": "sneaky@example.com", "password": "long enough pw", "role": "admin"},
    )
    assert_error(r, 422, "validation_error")


ADMIN_ROUTES = [
    ("GET", "/api/admin/overview", None),
    ("GET", "/api/admin/failures", None),
    ("GET", "/api/admin/reaper", None),
    ("GET", "/api/admin/jobs/failed", None),
    ("POST", "/api/admin/jobs/some-job/requeue", None),
    ("GET", "/api/admin/users?q=a", None),
    ("POST", "/api/admin/users/{user}/suspend", {"reason": "x"}),
    ("POST", "/api/admin/users/{user}/unsuspend", None),
    ("GET", "/api/admin/channels", None),
    ("POST", "/api/admin/channels/{channel}/suspend", {"reason": "x"}),
    ("POST", "/api/admin/channels/{channel}/unsuspend", None),
    ("GET", "/api/admin/audit", None),
]


def test_every_admin_endpoint_refuses_everyone_else(ops: Ops) -> None:
    api = ops.api
    provider = api.signup("provider")
    subscriber = api.signup("subscriber")
    channel = api.channel(provider)
    for method, template, body in ADMIN_ROUTES:
        path = template.format(user=subscriber.id, channel=channel["id"])
        kw: dict[str, Any] = {"json": body} if body is not None else {}
        assert_error(api.call(method, path, None, **kw), 401, "missing_token")
        for who in (provider, subscriber):
            assert_error(api.call(method, path, who, **kw), 403, "wrong_role")
    assert api.ok("GET", "/api/admin/audit", ops.admin)["items"][-1]["action"] == "create_admin"
    paths = api.ok("GET", "/openapi.json")["paths"]
    assert {
        "/api/admin/overview",
        "/api/admin/reaper",
        "/api/admin/users/{user_id}/suspend",
    } <= set(paths)
    # None of the refused calls did anything.
    assert api.ok("GET", f"/api/channels/{channel['id']}")["id"] == channel["id"]
    assert api.call("GET", "/api/me", subscriber).status_code == 200


async def test_a_suspended_channel_sends_nothing_until_restored(ops: Ops) -> None:
    api = ops.api
    provider = api.signup("provider")
    channel = api.channel(provider)
    api.subscriber(channel["id"])
    socket = await live(ops.system.base_url, "/provider", provider)
    try:
        body = {"reason": "Reported as a scam."}
        path = f"/api/admin/channels/{channel['id']}/suspend"
        suspended = api.ok("POST", path, ops.admin, json=body)
        assert suspended["suspended"]["reason"] == "Reported as a scam."
        ready = api.ok("GET", f"/api/channels/{channel['id']}/readiness", provider)
        assert ready["channel_suspended"] is True
        payload = {"channel_id": channel["id"], "asset": "EURUSD", "direction": "CALL",
                   "expiry_seconds": 60}  # fmt: skip
        refused = await socket.emit("signal", payload)
        assert refused["ok"] is False and refused["error"]["code"] == "channel_suspended"
        listed = api.ok("GET", "/api/public/channels")["items"]
        assert channel["id"] not in {c["id"] for c in listed}
        newcomer = api.signup("subscriber")
        account = api.account(newcomer)
        r = api.call("POST", f"/api/channels/{channel['id']}/subscribe", newcomer,
                     json={"broker_account_id": account["id"],
                           "stake": {"mode": "fixed", "amount": 5}})  # fmt: skip
        assert_error(r, 409, "channel_suspended")

        api.ok("POST", f"/api/admin/channels/{channel['id']}/unsuspend", ops.admin)
        ack = await socket.emit("signal", payload)
        assert ack["ok"] is True and ack["fanout"]["total"] == 1
    finally:
        await socket.close()
    actions = [
        (e["action"], e["actor_email"])
        for e in api.ok("GET", "/api/admin/audit", ops.admin)["items"]
        if e["target_id"] == channel["id"]
    ]
    assert actions == [("unsuspend_channel", ADMIN_EMAIL), ("suspend_channel", ADMIN_EMAIL)]


async def test_a_suspended_user_loses_every_session_at_once(ops: Ops) -> None:
    api = ops.api
    provider = api.signup("provider")
    socket = await live(ops.system.base_url, "/provider", provider)
    try:
        api.ok("POST", f"/api/admin/users/{provider.id}/suspend", ops.admin, json={})
        await socket.wait_for("the server to disconnect", lambda: not socket.sio.connected, 5)
    finally:
        await socket.close()
    assert_error(api.call("GET", "/api/me", provider), 403, "account_suspended")
    login = {"email": provider.email, "password": api.password}
    assert_error(api.http.post("/api/auth/login", json=login), 403, "account_suspended")
    wrong = {"email": provider.email, "password": "not the password"}
    assert_error(api.http.post("/api/auth/login", json=wrong), 401, "invalid_credentials")
    refresh = {"refresh_token": provider.refresh_token}
    assert_error(api.http.post("/api/auth/refresh", json=refresh), 403, "account_suspended")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await live(ops.system.base_url, "/provider", provider)
    assert_error(
        api.call("POST", f"/api/admin/users/{ops.admin.id}/suspend", ops.admin, json={}),
        409,
        "cannot_suspend_self",
    )
    (found,) = api.ok("GET", f"/api/admin/users?q={provider.email}", ops.admin)["items"]
    assert found["suspended"]["by"] == ADMIN_EMAIL

    api.ok("POST", f"/api/admin/users/{provider.id}/unsuspend", ops.admin)
    assert api.http.post("/api/auth/login", json=login).status_code == 200


async def test_overview_and_failures_show_the_pools(ops: Ops) -> None:
    api = ops.api
    provider = api.signup("provider")
    channel = api.channel(provider)
    subs = [api.subscriber(channel["id"]) for _ in range(3)]
    # One subscriber's account entry is gone from the directory: its copy fails.
    client = sync_redis.Redis.from_url(redis_url(ADMIN_DB))
    client.hdel(keys.accounts("paper"), subs[0][1]["id"])
    client.close()
    watcher = await live(ops.system.base_url, "/provider", provider)
    try:
        payload = {"channel_id": channel["id"], "asset": "EURUSD", "direction": "PUT",
                   "expiry_seconds": 60}  # fmt: skip
        ack = await watcher.emit("signal", payload)
        await watcher.wait_for("3 records", lambda: len(watcher.executions) == 3)
    finally:
        await watcher.close()

    def counted() -> bool:
        paper = next(
            b for b in api.ok("GET", "/api/admin/overview", ops.admin)["brokers"]
            if b["broker"] == "paper"
        )  # fmt: skip
        return bool(paper["copies"]["last_minute"]["placed"] >= 2)

    wait_until(counted, what="the copies in the overview")
    overview = api.ok("GET", "/api/admin/overview", ops.admin)
    paper = next(b for b in overview["brokers"] if b["broker"] == "paper")
    assert paper["live_workers"] == 2 and len(paper["workers"]) == 2
    assert all(0 <= w["last_heartbeat_ms_ago"] < 5000 for w in paper["workers"])
    for worker in paper["workers"]:  # what each recorded with its heartbeat
        assert worker["host"] and worker["pid"] > 0 and worker["metrics_port"] is None
        assert worker["sessions"] is None and worker["rate_budget"] is None  # paper has none
    (deriv,) = next(b for b in overview["brokers"] if b["broker"] == "deriv")["workers"]
    assert deriv["sessions"] == {"connected": 2, "total": 2}
    budget = deriv["rate_budget"]
    assert 0 < budget["available"] <= budget["per_minute"] and budget["waits"] == 0
    assert deriv["reconnects"] == 0
    assert paper["copies"]["last_hour"]["failed"] >= 1
    assert paper["latency_ms"]["samples"] >= 2
    failed = api.ok("GET", "/api/admin/failures", ops.admin)["items"]
    mine = [f for f in failed if f["signal_id"] == ack["signal_id"]]
    assert [(f["status"], f["reason"]) for f in mine] == [("failed", "account_missing")]
    assert all(f["status"] == "failed" or f["reason"] == "expired" for f in failed)


def test_failed_jobs_are_listed_and_requeued_on_record(ops: Ops) -> None:
    connection = sync_redis.Redis.from_url(redis_url(ADMIN_DB))
    queue = Queue(keys.queue_name("paper"), connection=connection)
    job = queue.enqueue("broker_workers.checks.check_accounts_job", "paper", None, "nowhere")
    wait_until(lambda: job.get_status(refresh=True) == "failed", what="the job to fail")
    listed = ops.api.ok("GET", "/api/admin/jobs/failed", ops.admin)["items"]
    (entry,) = [j for j in listed if j["id"] == job.id]
    assert entry["broker"] == "paper" and entry["error"]
    requeued = ops.api.ok("POST", f"/api/admin/jobs/{job.id}/requeue", ops.admin)
    assert requeued == {"id": job.id, "broker": "paper", "status": "requeued"}
    audit = ops.api.ok("GET", "/api/admin/audit", ops.admin)["items"]
    assert (audit[0]["action"], audit[0]["target_id"]) == ("requeue_job", job.id)
    assert_error(
        ops.api.call("POST", "/api/admin/jobs/no-such-job/requeue", ops.admin), 404, "job_not_found"
    )
    connection.close()


def test_the_reaper_s_recent_actions_newest_first(ops: Ops) -> None:
    """What the reaper records (tests/test_observability.py makes it act for real) is listed
    newest first, as recorded, within the limit asked."""
    client = sync_redis.Redis.from_url(redis_url(ADMIN_DB))
    client.delete(keys.REAPER_ACTIONS)
    at = 1_795_900_000_000
    actions = [
        {"kind": "recovered", "signal_id": "s1", "broker": "paper", "subscribers": 4,
         "at_ms": at, "worker": "w-dead"},
        {"kind": "reconciled", "signal_id": "s1", "broker": "deriv", "subscribers": 1,
         "at_ms": at + 500},
        {"kind": "expired", "signal_id": "s2", "broker": "paper", "subscribers": 7,
         "at_ms": at + 1000},
    ]  # fmt: skip
    for action in actions:
        client.lpush(keys.REAPER_ACTIONS, json.dumps(action))
    client.close()
    items = ops.api.ok("GET", "/api/admin/reaper", ops.admin)["items"]
    assert [(i["kind"], i["signal_id"], i["broker"], i["subscribers"]) for i in items] == [
        ("expired", "s2", "paper", 7),
        ("reconciled", "s1", "deriv", 1),
        ("recovered", "s1", "paper", 4),
    ]
    assert items[2]["worker"] == "w-dead" and items[0]["worker"] is None
    assert items[2]["at"] == "2026-11-28T21:06:40Z"
    assert len(ops.api.ok("GET", "/api/admin/reaper?limit=1", ops.admin)["items"]) == 1
    assert_error(ops.api.call("GET", "/api/admin/reaper?limit=0", ops.admin), 400, "invalid_limit")

"""The operators' console: the state of every broker pool (with each worker's sessions and rate
budget), the reaper's recent actions, recent failures, RQ's failed jobs, and users and channels to
find, suspend and restore. Admins only (403 for everyone else); every action is recorded in the
audit log with who did it.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ConfigDict
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import keys
from core.clock import iso
from core.connections import sync_redis_client
from signal_hub import audit
from signal_hub.api.channels import load_channel
from signal_hub.api.common import body, caller, hub_of, ok, query_limit
from signal_hub.auth import Principal
from signal_hub.errors import BadRequest, Conflict, NotFound
from signal_hub.hub import Hub
from signal_hub.metrics import shard_figures
from signal_hub.stats import STATUSES, percentile
from signal_hub.store import utcnow
from signal_hub.validation import Prose

PAGE = (50, 500)
LATENCY_WINDOW = timedelta(hours=1)
LATENCY_SAMPLES = 5000


class SuspendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Prose = ""


async def _admin(request: Request) -> tuple[Hub, dict[str, Any]]:
    """The hub and the acting admin (its id and email, for the audit log)."""
    principal: Principal = await caller(request, "admin")
    hub = hub_of(request)
    user = await hub.store.users.find_one({"_id": principal.user_id}, {"email": 1})
    return hub, {"id": principal.user_id, "email": user["email"] if user else "?"}


# --- pools -----------------------------------------------------------------------------------


async def overview(request: Request) -> JSONResponse:
    """Per broker: pending work, queued drain jobs, workers with their last heartbeat, sessions
    and rate budget, copies in the last minute and hour by status, and the copy latency's p50 and
    p99 over the hour."""
    hub, _ = await _admin(request)
    now = utcnow()
    brokers = sorted(hub.brokers)
    active: list[str] = await hub.redis.zrange(keys.ACTIVE, 0, -1)  # type: ignore[assignment]
    lease_ms = int(hub.settings.claim_lease_s * 1000)
    async with hub.redis.pipeline(transaction=False) as pipe:
        for member in active:
            signal_id, _, broker = member.partition("|")
            pipe.scard(keys.work(signal_id, broker))
        for broker in brokers:
            pipe.llen(Queue.redis_queue_namespace_prefix + keys.queue_name(broker))
            pipe.smembers(keys.workers(broker))
        replies = await pipe.execute()
    pending = dict.fromkeys(brokers, 0)
    for member, size in zip(active, replies[: len(active)], strict=True):
        broker = member.partition("|")[2]
        pending[broker] = pending.get(broker, 0) + int(size)
    if hub.shards.sharded:
        pending = (await shard_figures(hub.shards, brokers))[0]
    rest = replies[len(active) :]
    queued = {b: int(rest[2 * i]) for i, b in enumerate(brokers)}
    registered = {b: sorted(rest[2 * i + 1]) for i, b in enumerate(brokers)}
    async with hub.redis.pipeline(transaction=False) as pipe:
        for broker in brokers:
            for worker in registered[broker]:
                pipe.pttl(keys.worker_heartbeat(worker))
                pipe.hgetall(keys.worker_info(worker))
        ttls = iter(await pipe.execute())
    copies = await _copies(hub, now)
    latency = await _latency(hub, now)
    items = []
    for broker in brokers:
        workers = []
        for worker in registered[broker]:
            ttl, info = int(next(ttls)), next(ttls)
            if ttl > 0:  # a live heartbeat: last beat = now - (lease - time left)
                workers.append(
                    {
                        "id": worker,
                        "last_heartbeat_ms_ago": max(0, lease_ms - ttl),
                        **_worker_figures(info),
                    }
                )
        items.append(
            {
                "broker": broker,
                "pending_work": pending.get(broker, 0),
                "queued_jobs": queued[broker],
                "live_workers": len(workers),
                "workers": workers,
                "copies": copies.get(broker, _empty_copies()),
                "latency_ms": latency.get(broker, {"p50": None, "p99": None, "samples": 0}),
            }
        )
    return ok({"brokers": items, "active_fanouts": len(active), "at": now})


def _worker_figures(info: dict[str, str]) -> dict[str, Any]:
    """What a worker recorded with its heartbeat (``keys.worker_info``): where it runs, its
    ``/metrics`` port, and, for a broker with sessions, how many are connected and the purchases
    their rate budgets allow now (``None`` where the worker has no such thing)."""

    def number(field: str) -> int | None:
        value = info.get(field)
        return int(value) if value not in (None, "") else None

    sessions = rate_budget = None
    if number("sessions_total") is not None:
        sessions = {"connected": number("sessions_connected"), "total": number("sessions_total")}
    if number("budget_per_minute") is not None:
        rate_budget = {
            "available": number("budget_available"),
            "per_minute": number("budget_per_minute"),
            "waits": number("rate_limit_waits") or 0,
        }
    return {
        "host": info.get("host"),
        "pid": number("pid"),
        "metrics_port": number("metrics_port") or None,
        "draining": number("draining") or 0,
        "health_checked": number("health_checked") or 0,
        "sessions": sessions,
        "rate_budget": rate_budget,
        "reconnects": number("reconnects"),
    }


def _empty_copies() -> dict[str, dict[str, int]]:
    return {"last_minute": dict.fromkeys(STATUSES, 0), "last_hour": dict.fromkeys(STATUSES, 0)}


async def _copies(hub: Hub, now: Any) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = {}
    for window, since in (("last_hour", now - timedelta(hours=1)),
                          ("last_minute", now - timedelta(minutes=1))):  # fmt: skip
        cursor = await hub.store.trades.aggregate(
            [
                {"$match": {"created_at": {"$gte": since}}},
                {"$group": {"_id": {"b": "$broker", "s": "$status"}, "n": {"$sum": 1}}},
            ]
        )
        for row in await cursor.to_list():
            counts = out.setdefault(row["_id"]["b"], _empty_copies())[window]
            counts[row["_id"]["s"]] = counts.get(row["_id"]["s"], 0) + row["n"]
    return out


async def _latency(hub: Hub, now: Any) -> dict[str, dict[str, Any]]:
    trades = (
        await hub.store.trades.find(
            {"created_at": {"$gte": now - LATENCY_WINDOW}, "status": "placed"},
            {"broker": 1, "latency_ms": 1},
        )
        .sort("created_at", -1)
        .limit(LATENCY_SAMPLES)
        .to_list()
    )
    by_broker: dict[str, list[float]] = {}
    for trade in trades:
        if trade.get("latency_ms") is not None:
            by_broker.setdefault(trade["broker"], []).append(float(trade["latency_ms"]))
    return {
        broker: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "samples": len(v)}
        for broker, v in by_broker.items()
    }


async def failures(request: Request) -> JSONResponse:
    """The newest failed or expired copies, with their reasons."""
    hub, _ = await _admin(request)
    trades = (
        await hub.store.trades.find({"$or": [{"status": "failed"}, {"reason": "expired"}]})
        .sort("created_at", -1)
        .limit(query_limit(request, PAGE))
        .to_list()
    )
    fields = ("signal_id", "channel_id", "subscriber_id", "broker", "status", "reason",
              "latency_ms", "created_at")  # fmt: skip
    return ok({"items": [{"trade_id": t["_id"], **{f: t.get(f) for f in fields}} for t in trades]})


# --- the reaper ------------------------------------------------------------------------------

REAPER_PAGE = (50, keys.REAPER_ACTIONS_KEPT)


async def reaper(request: Request) -> JSONResponse:
    """The reaper's recent actions, newest first: claims recovered from dead workers, orphaned
    purchases reconciled, work expired, stalled work redriven."""
    hub, _ = await _admin(request)
    limit = query_limit(request, REAPER_PAGE)
    raw: Any = await hub.redis.lrange(keys.REAPER_ACTIONS, 0, limit - 1)
    items = []
    for entry in raw:
        action = json.loads(entry)
        items.append(
            {
                "kind": action["kind"],
                "signal_id": action["signal_id"],
                "broker": action["broker"],
                "subscribers": action["subscribers"],
                "worker": action.get("worker"),
                "at": iso(action["at_ms"]),
            }
        )
    return ok({"items": items})


# --- RQ's failed jobs ------------------------------------------------------------------------


def _failed_jobs(redis_url: str, brokers: list[str]) -> list[dict[str, Any]]:
    connection = sync_redis_client(redis_url)
    try:
        items = []
        for broker in brokers:
            registry = FailedJobRegistry(keys.queue_name(broker), connection=connection)
            jobs = Job.fetch_many(registry.get_job_ids(), connection=connection)
            for job in jobs:
                if job is None:
                    continue
                error = (job.exc_info or "").strip().splitlines()
                items.append(
                    {
                        "id": job.id,
                        "broker": broker,
                        "description": job.description,
                        "error": error[-1] if error else None,
                        "ended_at": job.ended_at,
                    }
                )
        return items
    finally:
        connection.close()


def _requeue(redis_url: str, brokers: list[str], job_id: str) -> str | None:
    """Requeue ``job_id`` from its broker's failed registry; the broker, or None if not there."""
    connection = sync_redis_client(redis_url)
    try:
        for broker in brokers:
            registry = FailedJobRegistry(keys.queue_name(broker), connection=connection)
            if job_id in registry.get_job_ids():
                try:
                    registry.requeue(job_id)
                except NoSuchJobError:
                    return None
                return broker
        return None
    finally:
        connection.close()


async def failed_jobs(request: Request) -> JSONResponse:
    """RQ's failed jobs of every broker pool."""
    hub, _ = await _admin(request)
    items = await anyio.to_thread.run_sync(
        _failed_jobs, hub.settings.redis_url, sorted(hub.brokers)
    )
    return ok({"items": items})


async def requeue_job(request: Request) -> JSONResponse:
    """Put a failed job back on its queue (recorded in the audit log)."""
    hub, actor = await _admin(request)
    job_id = request.path_params["job_id"]
    broker = await anyio.to_thread.run_sync(
        _requeue, hub.settings.redis_url, sorted(hub.brokers), job_id
    )
    if broker is None:
        raise NotFound("No failed job has that id.", "job_not_found")
    await audit.record(hub.store, actor, "requeue_job", "job", job_id, {"broker": broker})
    return ok({"id": job_id, "broker": broker, "status": "requeued"})


# --- users and channels ----------------------------------------------------------------------


def _search(request: Request, *fields: str) -> dict[str, Any]:
    q = request.query_params.get("q", "").strip()
    if len(q) > 100:
        raise BadRequest("q is at most 100 characters.", "invalid_query")
    if not q:
        return {}
    pattern = {"$regex": re.escape(q), "$options": "i"}
    return {"$or": [{field: pattern} for field in fields]}


def _admin_user(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["_id"],
        "email": user["email"],
        "role": user["role"],
        "display_name": user.get("display_name"),
        "created_at": user["created_at"],
        "suspended": user.get("suspended"),
    }


async def users(request: Request) -> JSONResponse:
    """Users found by email or name, newest first."""
    hub, _ = await _admin(request)
    found = (
        await hub.store.users.find(_search(request, "email", "display_name"))
        .sort("created_at", -1)
        .limit(query_limit(request, PAGE))
        .to_list()
    )
    return ok({"items": [_admin_user(u) for u in found]})


async def _user(hub: Hub, user_id: str) -> dict[str, Any]:
    user: dict[str, Any] | None = await hub.store.users.find_one({"_id": user_id})
    if user is None:
        raise NotFound("No such user.", "user_not_found")
    return user


async def suspend_user(request: Request) -> JSONResponse:
    """Suspend a user: every session ends now (tokens refused, sockets dropped), login refused."""
    hub, actor = await _admin(request)
    user = await _user(hub, request.path_params["user_id"])
    if user["_id"] == actor["id"]:
        raise Conflict("You cannot suspend yourself.", "cannot_suspend_self")
    data = await body(request, SuspendIn)
    mark = {"at": utcnow(), "by": actor["email"], "reason": data.reason}
    updated = await hub.store.users.find_one_and_update(
        {"_id": user["_id"]}, {"$set": {"suspended": mark}}, return_document=True
    )
    await hub.redis.set(keys.suspended_user(user["_id"]), data.reason or "suspended")
    await hub.tokens.revoke_user(user["_id"])
    await hub.sessions.end_user(user["_id"])
    await audit.record(hub.store, actor, "suspend_user", "user", user["_id"],
                       {"email": user["email"], "reason": data.reason})  # fmt: skip
    return ok(_admin_user(updated or user))


async def unsuspend_user(request: Request) -> JSONResponse:
    """Lift a user's suspension (recorded in the audit log)."""
    hub, actor = await _admin(request)
    user = await _user(hub, request.path_params["user_id"])
    updated = await hub.store.users.find_one_and_update(
        {"_id": user["_id"]}, {"$unset": {"suspended": ""}}, return_document=True
    )
    await hub.redis.delete(keys.suspended_user(user["_id"]))
    await audit.record(hub.store, actor, "unsuspend_user", "user", user["_id"],
                       {"email": user["email"]})  # fmt: skip
    return ok(_admin_user(updated or user))


def _admin_channel(channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": channel["_id"],
        "name": channel["name"],
        "provider_id": channel["provider_id"],
        "created_at": channel["created_at"],
        "suspended": channel.get("suspended"),
    }


async def channels(request: Request) -> JSONResponse:
    """Channels found by name or id, newest first."""
    hub, _ = await _admin(request)
    found = (
        await hub.store.channels.find(_search(request, "name", "_id"))
        .sort("created_at", -1)
        .limit(query_limit(request, PAGE))
        .to_list()
    )
    return ok({"items": [_admin_channel(c) for c in found]})


async def _set_channel_suspension(request: Request, suspend: bool) -> JSONResponse:
    hub, actor = await _admin(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    detail: dict[str, Any] = {"name": channel["name"]}
    if suspend:
        data = await body(request, SuspendIn)
        mark = {"at": utcnow(), "by": actor["email"], "reason": data.reason}
        change: dict[str, Any] = {"$set": {"suspended": mark}}
        detail["reason"] = data.reason
    else:
        change = {"$unset": {"suspended": ""}}
    updated = await hub.store.channels.find_one_and_update(
        {"_id": channel["_id"]}, change, return_document=True
    )
    await hub.directory.put_channel(updated or channel)
    action = "suspend_channel" if suspend else "unsuspend_channel"
    await audit.record(hub.store, actor, action, "channel", channel["_id"], detail)
    return ok(_admin_channel(updated or channel))


async def suspend_channel(request: Request) -> JSONResponse:
    """Suspend a channel: its signals are refused (``channel_suspended``) until restored."""
    return await _set_channel_suspension(request, suspend=True)


async def unsuspend_channel(request: Request) -> JSONResponse:
    """Lift a channel's suspension (recorded in the audit log)."""
    return await _set_channel_suspension(request, suspend=False)


async def audit_log(request: Request) -> JSONResponse:
    """Every operator action, newest first."""
    hub, _ = await _admin(request)
    entries = (
        await hub.store.audit.find({}).sort("at", -1).limit(query_limit(request, PAGE)).to_list()
    )
    return ok({"items": entries})


routes = [
    Route("/api/admin/overview", overview, methods=["GET"]),
    Route("/api/admin/failures", failures, methods=["GET"]),
    Route("/api/admin/reaper", reaper, methods=["GET"]),
    Route("/api/admin/jobs/failed", failed_jobs, methods=["GET"]),
    Route("/api/admin/jobs/{job_id}/requeue", requeue_job, methods=["POST"]),
    Route("/api/admin/users", users, methods=["GET"]),
    Route("/api/admin/users/{user_id}/suspend", suspend_user, methods=["POST"]),
    Route("/api/admin/users/{user_id}/unsuspend", unsuspend_user, methods=["POST"]),
    Route("/api/admin/channels", channels, methods=["GET"]),
    Route("/api/admin/channels/{channel_id}/suspend", suspend_channel, methods=["POST"]),
    Route("/api/admin/channels/{channel_id}/unsuspend", unsuspend_channel, methods=["POST"]),
    Route("/api/admin/audit", audit_log, methods=["GET"]),
]

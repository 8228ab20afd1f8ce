"""Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI description."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import keys
from signal_hub.api.common import hub_of
from signal_hub.metrics import CONTENT_TYPE, exposition


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: Redis (and every hot-path shard, when sharded) and the store answer."""
    hub = hub_of(request)
    checks: dict[str, str] = {}
    try:
        await hub.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    if hub.shards.sharded:  # a read of a key of the shard reaches the server (or master) holding it
        for shard in hub.shards:
            name = f"redis_shard_{shard.index}"
            try:
                await shard.redis.exists(shard.key(keys.ACTIVE))
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unreachable: {type(exc).__name__}"
    try:
        await hub.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    """Prometheus metrics, in the text format (see :mod:`signal_hub.metrics`)."""
    hub = hub_of(request)
    body = await exposition(hub.redis, list(hub.brokers), hub.shards)
    return Response(body, media_type=CONTENT_TYPE)


async def openapi(request: Request) -> JSONResponse:
    """The routes of the app with their methods and the first line of each handler's docstring."""
    paths: dict[str, dict[str, Any]] = {}
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods:
            summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
            for method in sorted(route.methods - {"HEAD"}):
                paths.setdefault(route.path, {})[method.lower()] = {"summary": summary}
    return JSONResponse(
        {
            "openapi": "3.1.0",
            "info": {"title": "Cloud Trade Copier", "version": "0.1.0"},
            "paths": paths,
        }
    )


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]

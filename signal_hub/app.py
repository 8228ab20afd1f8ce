"""The hub's ASGI application: REST under ``/api``, Socket.IO under ``/socket.io/``, the frontend.

``uvicorn signal_hub.app:app`` (the Procfile's ``web``). Start-up opens Redis and the store,
creates the indexes, rebuilds the Redis directory from the store (unless live hubs keep it) and
starts the results relay and the scheduler; shutdown (SIGTERM) lets the relay write and
acknowledge the batch in hand, so every result is either in the store or still pending in Redis
for the next hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import socketio
from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from core.logs import configure_logging
from signal_hub.api import (
    accounts,
    admin,
    auth,
    channels,
    history,
    public,
    subscriptions,
    system,
)
from signal_hub.errors import ApiError
from signal_hub.frontend import app_files
from signal_hub.hub import Hub
from signal_hub.middleware import BodyLimit, RequestIds, SecurityHeaders
from signal_hub.presence import hub_instance_id
from signal_hub.relay import Relay, live_hubs
from signal_hub.scheduler import run_scheduler
from signal_hub.settings import Settings, get_settings
from signal_hub.sockets import ProviderNamespace, SubscriberNamespace, build_server

RELAY_STOP_TIMEOUT_S = 10.0

_HTTP_CODES = {
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "That method is not allowed here."),
}


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.as_dict(), status_code=exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.opt(exception=exc).error("unhandled error on {} {}", request.method, request.url.path)
    body = {"error": {"code": "internal", "message": "Something went wrong on our side."}}
    return JSONResponse(body, status_code=500)


def create_app(settings: Settings | None = None) -> socketio.ASGIApp:
    settings = settings or get_settings()
    configure_logging(settings, "hub")
    sio = build_server(settings)
    hub = Hub.build(settings, sio)
    sio.register_namespace(ProviderNamespace("/provider", hub))
    sio.register_namespace(SubscriberNamespace("/subscriber", hub))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.store.ensure_indexes()
        consumer = hub_instance_id()
        others = await live_hubs(hub.redis, hub.shards.home, but=consumer)
        if await hub.directory.kept(others):
            logger.info("directory kept by {} live hubs: not rebuilt", len(others))
        else:
            counts = await hub.directory.rebuild()
            logger.info("directory rebuilt from the store: {}", counts)
        await hub.presence.forget(consumer)  # counts left by an earlier process of this name
        # one relay per hot-path shard's results stream (one, on REDIS_URL, unsharded)
        relays = [Relay(hub, consumer, s) for s in hub.shards] if hub.shards.sharded else []
        relays = relays or [Relay(hub, consumer)]
        relay_tasks = [asyncio.create_task(r.run(), name="relay") for r in relays]
        scheduler_task = asyncio.create_task(
            run_scheduler(hub.shards.home, hub.intake), name="scheduler"
        )
        try:
            yield
        finally:
            scheduler_task.cancel()
            for relay in relays:
                relay.stop()
            try:
                await asyncio.wait_for(asyncio.gather(*relay_tasks), RELAY_STOP_TIMEOUT_S)
            except TimeoutError:
                logger.error("relay did not stop in time; its batch stays pending in Redis")
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler_task
            await hub.close()

    routes: list[BaseRoute] = [*auth.routes, *channels.routes, *accounts.routes]
    routes += [*subscriptions.routes]
    routes += [*history.routes, *public.routes, *admin.routes, *system.routes]
    middleware = [Middleware(SecurityHeaders)]
    if settings.cors_origins:  # the app on another origin (CloudFront): credentials for the cookie
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                allow_credentials=True,
                max_age=600,
            )
        )
    middleware.append(Middleware(BodyLimit, max_bytes=settings.max_body_bytes))
    api = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
    )
    api.state.hub = hub
    api.router.default = app_files(Path(settings.frontend_dir))
    return socketio.ASGIApp(sio, other_asgi_app=RequestIds(api), socketio_path="socket.io")


app = create_app()

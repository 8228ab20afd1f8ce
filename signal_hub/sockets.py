"""Socket.IO namespaces: ``/provider`` sends signals and watches executions, ``/subscriber``
watches its own.

Both authenticate at connect with ``auth={"token": <access token>}``; a missing, expired or forged
token is refused there. Acknowledgements are ``{"ok": true, ...}`` or ``{"ok": false, "error":
{"code", "message"}}``, the contract's error shape.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import orjson
import socketio
from loguru import logger

from signal_hub.auth import Principal
from signal_hub.errors import ApiError, Forbidden, Unauthorized, ValidationFailed
from signal_hub.hub import Hub
from signal_hub.settings import Settings


def channel_room(channel_id: str) -> str:
    return f"channel:{channel_id}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class OrjsonPackets:
    """The JSON module of Socket.IO packets: orjson, a few times faster than the standard one;
    each of the relay's emits carries a slice of up to a few hundred executions."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value, default=str).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


def build_server(settings: Settings) -> socketio.AsyncServer:
    """The Socket.IO server, sharing rooms across hub instances through Redis pub/sub."""
    # Pub/sub channels are global to a Redis server, not per database: name ours by database.
    database = urlparse(settings.redis_url).path.strip("/") or "0"
    manager = socketio.AsyncRedisManager(settings.redis_url, channel=f"ctc-socketio-{database}")
    return socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        json=OrjsonPackets,
        cors_allowed_origins=settings.cors_origins or [],
        logger=False,
        engineio_logger=False,
    )


def error_ack(exc: ApiError) -> dict[str, Any]:
    return {"ok": False, **exc.as_dict()}


class _Authenticated(socketio.AsyncNamespace):  # type: ignore[misc]
    hub: Hub

    def __init__(self, namespace: str, hub: Hub) -> None:
        super().__init__(namespace)
        self.hub = hub

    def authenticate(self, auth: Any) -> Principal:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError(
                Unauthorized(
                    "Connect with auth={'token': <access token>}.", "missing_token"
                ).as_dict()
            )
        try:
            return self.hub.tokens.principal(token)
        except ApiError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.as_dict()) from None

    async def principal(self, sid: str) -> Principal:
        session = await self.get_session(sid)
        principal: Principal = session["principal"]
        return principal


class ProviderNamespace(_Authenticated):
    """Providers and the traders they named: send and cancel signals, watch executions."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        principal = self.authenticate(auth)
        await self.save_session(sid, {"principal": principal})
        channels = self.hub.store.channels.find(
            {"$or": [{"provider_id": principal.user_id}, {"traders": principal.user_id}]},
            {"_id": 1},
        )
        async for channel in channels:
            await self.enter_room(sid, channel_room(channel["_id"]))

    async def on_signal(self, sid: str, data: Any = None) -> dict[str, Any]:
        principal = await self.principal(sid)
        try:
            await self.hub.limiter.hit(
                "signal", principal.user_id, self.hub.settings.signal_rate_limit_per_s, 1
            )
            ack = await self.hub.intake.submit(principal.user_id, data)
        except ApiError as exc:
            return error_ack(exc)
        except Exception:
            logger.exception("signal intake failed")
            return error_ack(ApiError("The signal could not be taken; try again.", "internal"))
        await self.enter_room(sid, channel_room(data["channel_id"]))
        return ack

    async def on_cancel(self, sid: str, data: Any = None) -> dict[str, Any]:
        principal = await self.principal(sid)
        try:
            return await self.hub.canceller.cancel(principal.user_id, data)
        except ApiError as exc:
            return error_ack(exc)

    async def on_join(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join a channel's room (e.g. one created after connecting)."""
        principal = await self.principal(sid)
        channel_id = data.get("channel_id") if isinstance(data, dict) else None
        if not isinstance(channel_id, str):
            return error_ack(ValidationFailed("join needs {channel_id}."))
        channel = await self.hub.store.channels.find_one({"_id": channel_id})
        if channel is None or principal.user_id not in (
            channel["provider_id"],
            *channel.get("traders", []),
        ):
            return error_ack(Forbidden("You may not watch this channel.", "forbidden"))
        await self.enter_room(sid, channel_room(channel_id))
        return {"ok": True, "channel_id": channel_id}


class SubscriberNamespace(_Authenticated):
    """A subscriber's own executions and settlements."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        principal = self.authenticate(auth)
        await self.save_session(sid, {"principal": principal})
        await self.hub.presence.joined(principal.user_id)
        await self.enter_room(sid, user_room(principal.user_id))

    async def on_disconnect(self, sid: str, *reason: Any) -> None:
        session = await self.get_session(sid)
        principal: Principal | None = session.get("principal")
        if principal is not None:
            await self.hub.presence.left(principal.user_id)

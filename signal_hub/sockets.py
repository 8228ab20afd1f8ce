"""Socket.IO namespaces: ``/provider`` sends signals and watches executions, ``/subscriber``
watches its own.

Both authenticate at connect with ``auth={"token": <access token>}``; a missing, expired or forged
token is refused there. Acknowledgements are ``{"ok": true, ...}`` or ``{"ok": false, "error":
{"code", "message"}}``, the contract's error shape.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import socketio
from loguru import logger

from core.connections import database
from signal_hub import metrics
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


def allowed_origin(origins: list[str]) -> Any:
    """Socket.IO's origin check: the hub's own origin (its scheme as a trusted proxy says, see
    ``FORWARDED_ALLOW_IPS``) or one of ``CORS_ORIGINS`` (the app on another origin, such as
    CloudFront). A client that sends no Origin (not a browser) is no cross-site risk."""

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin or origin in origins:
            return True
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == own

    return check


def build_server(settings: Settings) -> socketio.AsyncServer:
    """The Socket.IO server, sharing rooms across hub instances through Redis pub/sub."""
    # Pub/sub channels are global to a Redis server, not per database: name ours by database.
    # A redis+sentinel:// URL is python-socketio's own form: the manager finds the master itself.
    channel = f"ctc-socketio-{database(settings.redis_url)}"
    manager = socketio.AsyncRedisManager(settings.redis_url, channel=channel)
    return socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        json=OrjsonPackets,
        # Never [] (which switches the check off and admits any site).
        cors_allowed_origins=allowed_origin(settings.cors_origins),
        cors_credentials=True,
        logger=False,
        engineio_logger=False,
    )


def error_ack(exc: ApiError) -> dict[str, Any]:
    return {"ok": False, **exc.as_dict()}


_INTERNAL = ApiError("That could not be done; try again.", "internal")


class _Authenticated(socketio.AsyncNamespace):  # type: ignore[misc]
    """A namespace whose sockets carry a live session.

    The token is checked at connect; each socket is recorded in :class:`Sessions` (so a logout
    or a removal reaches it on any hub) and disconnected when its access token lapses, so the
    client reconnects with a fresh one. Every request on it checks the session again.
    """

    hub: Hub

    def __init__(self, namespace: str, hub: Hub) -> None:
        super().__init__(namespace)
        self.hub = hub
        self._lapses: dict[str, asyncio.TimerHandle] = {}

    async def authenticate(self, sid: str, auth: Any) -> Principal:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError(
                Unauthorized(
                    "Connect with auth={'token': <access token>}.", "missing_token"
                ).as_dict()
            )
        try:
            principal = await self.hub.tokens.authenticate(token)
        except ApiError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.as_dict()) from None
        await self.save_session(sid, {"principal": principal})
        await self.hub.sessions.opened(principal.user_id, self.namespace, sid, principal.family)
        delay = max(0.0, principal.expires_at - time.time())
        self._lapses[sid] = asyncio.get_running_loop().call_later(
            delay, lambda: asyncio.ensure_future(self.disconnect(sid))
        )
        return principal

    async def on_disconnect(self, sid: str, *reason: Any) -> None:
        lapse = self._lapses.pop(sid, None)
        if lapse is not None:
            lapse.cancel()
        session = await self.get_session(sid)
        principal: Principal | None = session.get("principal")
        if principal is not None:
            await self.hub.sessions.closed(principal.user_id, self.namespace, sid)
            await self.disconnected(principal)

    async def disconnected(self, principal: Principal) -> None:
        """What a namespace undoes when one of its sockets goes."""

    async def principal(self, sid: str) -> Principal:
        """The socket's principal, if its session is still live; if not, the socket is
        disconnected after this request's refusal."""
        session = await self.get_session(sid)
        principal: Principal = session["principal"]
        try:
            return await self.hub.tokens.live(principal)
        except ApiError:
            asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.disconnect(sid))
            )
            raise

    async def limit(self, principal: Principal, scope: str, per_s: int) -> None:
        await self.hub.limiter.hit(scope, principal.user_id, per_s, 1)


class ProviderNamespace(_Authenticated):
    """Providers and the traders they named: send and cancel signals, watch executions."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        principal = await self.authenticate(sid, auth)
        channels = self.hub.store.channels.find(
            {"$or": [{"provider_id": principal.user_id}, {"traders": principal.user_id}]},
            {"_id": 1},
        )
        async for channel in channels:
            await self.enter_room(sid, channel_room(channel["_id"]))

    async def on_signal(self, sid: str, data: Any = None) -> dict[str, Any]:
        arrived = time.perf_counter()
        try:
            principal = await self.principal(sid)
            await self.limit(principal, "signal", self.hub.settings.signal_rate_limit_per_s)
            ack = await self.hub.intake.submit(principal.user_id, data)
        except ApiError as exc:
            return self._refused(exc, arrived)
        except Exception:
            logger.exception("signal intake failed")
            failure = ApiError("The signal could not be taken; try again.", "internal")
            return self._refused(failure, arrived)
        await self.enter_room(sid, channel_room(data["channel_id"]))
        metrics.signal_acked(time.perf_counter() - arrived)
        return ack

    @staticmethod
    def _refused(exc: ApiError, arrived: float) -> dict[str, Any]:
        metrics.signal_outcome("refused", exc.code)
        metrics.signal_acked(time.perf_counter() - arrived)
        return error_ack(exc)

    async def on_cancel(self, sid: str, data: Any = None) -> dict[str, Any]:
        signal_id = data.get("signal_id") if isinstance(data, dict) else None
        if not isinstance(signal_id, str) or len(signal_id) > 64:
            signal_id = None  # refused below; not a value for the log lines
        try:
            principal = await self.principal(sid)
            await self.limit(principal, "control", self.hub.settings.control_rate_limit_per_s)
            with logger.contextualize(signal_id=signal_id):
                ack = await self.hub.canceller.cancel(principal.user_id, data)
                logger.info(
                    "signal {} cancelled: {} purchases stopped", signal_id, ack["cancellable"]
                )
                return ack
        except ApiError as exc:
            return error_ack(exc)
        except Exception:
            logger.exception("cancel failed")
            return error_ack(_INTERNAL)

    async def on_join(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join a channel's room (e.g. one created after connecting)."""
        try:
            principal = await self.principal(sid)
            await self.limit(principal, "control", self.hub.settings.control_rate_limit_per_s)
            channel_id = data.get("channel_id") if isinstance(data, dict) else None
            if not isinstance(channel_id, str):
                raise ValidationFailed("join needs {channel_id}.")
            channel = await self.hub.store.channels.find_one({"_id": channel_id})
            if channel is None or principal.user_id not in (
                channel["provider_id"],
                *channel.get("traders", []),
            ):
                raise Forbidden("You may not watch this channel.", "forbidden")
        except ApiError as exc:
            return error_ack(exc)
        except Exception:
            logger.exception("join failed")
            return error_ack(_INTERNAL)
        await self.enter_room(sid, channel_room(channel_id))
        return {"ok": True, "channel_id": channel_id}


class SubscriberNamespace(_Authenticated):
    """A subscriber's own executions and settlements."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        principal = await self.authenticate(sid, auth)
        await self.hub.presence.joined(principal.user_id)
        await self.enter_room(sid, user_room(principal.user_id))

    async def disconnected(self, principal: Principal) -> None:
        await self.hub.presence.left(principal.user_id)

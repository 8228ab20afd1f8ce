"""ASGI middleware of the hub's HTTP side: request ids, a cap on request bodies, and security
headers.

All are plain ASGI (no ``BaseHTTPMiddleware``), so they cost a header scan per request and never
buffer a body.
"""

from __future__ import annotations

import re
import time
import uuid

from loguru import logger
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signal_hub.errors import PayloadTooLarge

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


class RequestIds:
    """Every HTTP request gets an id: the caller's ``X-Request-ID`` when it looks like one (a
    proxy's or a client's: 8 to 128 letters, digits and ``._:-``), else a new one. Each line
    logged while the request is handled carries it as ``request_id``, the answer returns it in
    ``X-Request-ID``, and each ``/api`` request ends with one line: method, path, status, time.
    Wraps the whole app, so an unhandled error's line and its 500 carry the id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with logger.contextualize(request_id=request_id):
            try:
                await self.app(scope, receive, with_id)
            finally:
                path: str = scope.get("path", "")
                if path.startswith("/api/"):
                    took_ms = (time.perf_counter() - started) * 1000
                    logger.info("{} {} {} {:.1f} ms", scope.get("method"), path, status, took_ms)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: at once from ``Content-Length``, and
    while streaming for chunked bodies or a ``Content-Length`` that lies, before the body is held
    in memory. (Three concurrent 400 MB login bodies once took the hub to 2.35 GB.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            refusal = self._too_large()
            response = JSONResponse(refusal.as_dict(), refusal.status, {"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        # Past the cap mid-stream, the endpoint reading the body gets PayloadTooLarge, which the
        # app's error handler turns into the same 413.
        await self.app(scope, limited, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {self.max_bytes} bytes.")


class SecurityHeaders:
    """Headers every answer of the hub carries: a Content-Security-Policy for the app it serves
    (no inline script, no framing; REST and Socket.IO only to this origin), nosniff, a referrer
    policy, and HSTS when the request came over HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", content_security_policy(host))
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                headers.setdefault("X-Frame-Options", "DENY")
                if https:
                    headers.setdefault(
                        "Strict-Transport-Security", "max-age=63072000; includeSubDomains"
                    )
            await send(message)

        await self.app(scope, receive, with_headers)


def content_security_policy(host: str) -> str:
    """The policy of the app when the hub serves it: everything from this origin, Socket.IO's
    WebSocket to this host, inline styles only (Bootstrap and charts set element styles)."""
    sockets = f" ws://{host} wss://{host}" if host and _plain_host(host) else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _plain_host(host: str) -> bool:
    """A Host header fit to be quoted in a header: letters, digits, dots, dashes, a port, IPv6."""
    return all(c.isalnum() or c in ".-:[]" for c in host) and len(host) <= 255

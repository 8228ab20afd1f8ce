"""Serving the built web app (``frontend/dist``) from the hub, as CloudFront does in production.

- ``/assets/...``: Vite's content-hashed files, cached for a year; a missing one is a 404 in the
  contract's error shape, never ``index.html`` (a stale tab asking for an old chunk must fail
  loudly, not parse HTML as JavaScript).
- A path with a file extension (``/config.json``, ``/favicon.svg``): that file, or a 404.
- Any other path (``/dashboard``, ``/c/<id>``): ``index.html``, for the app's router.

It is the router's fallback, so ``/api``, ``/socket.io``, ``/healthz``, ``/readyz``, ``/metrics``
keep their own answers; an unknown ``/api/...`` path is a 404, never the app.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse
from starlette.types import ASGIApp, Receive, Scope, Send

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
_NOT_THE_APP = ("/api/", "/socket.io/")


def app_files(directory: Path) -> ASGIApp:
    root = directory.resolve()

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http" or path.startswith(_NOT_THE_APP):
            raise HTTPException(404)
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405)
        relative = PurePosixPath(path.lstrip("/"))
        if ".." in relative.parts:
            raise HTTPException(404)
        if relative.parts[:1] == ("assets",) or relative.suffix:
            target, cache = (
                root / relative,
                IMMUTABLE if relative.parts[0] == "assets" else NO_CACHE,
            )
        else:
            target, cache = root / "index.html", NO_CACHE
        if not target.is_file() or root not in target.resolve().parents:
            raise HTTPException(404)
        response = FileResponse(target, headers={"Cache-Control": cache})
        await response(scope, receive, send)

    return serve

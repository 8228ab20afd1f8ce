"""The local side of a release: the files of a built app, with the headers each one is served with.

Everything here is decided from the files alone, so a release has an identity (``release_id``)
before anything is sent: the same build with the same headers is the same release, which is what
lets a second run see that there is nothing to do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from infra.publish.errors import ConfigError, SiteError

INDEX = "index.html"
CONFIG = "config.json"
ASSETS = "assets/"

IMMUTABLE = "public, max-age=31536000, immutable"
"""For Vite's output under ``assets/``: every name there carries a hash of its content, so a
changed file is a new name and the old one may be cached for a year."""

REVALIDATE = "no-cache"
"""For everything else: names that stay the same across releases (``index.html`` above all) must
be asked for again each time; an ETag makes that a 304."""

_TEXT = "; charset=utf-8"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html" + _TEXT,
    ".js": "text/javascript" + _TEXT,
    ".mjs": "text/javascript" + _TEXT,
    ".css": "text/css" + _TEXT,
    ".txt": "text/plain" + _TEXT,
    ".svg": "image/svg+xml" + _TEXT,
    ".xml": "application/xml" + _TEXT,
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
}
"""Served types by extension, stated rather than guessed: ``mimetypes`` answers differently from
one machine to the next, and with ``X-Content-Type-Options: nosniff`` a script served with the
wrong type does not run at all."""


@dataclass(frozen=True)
class SiteFile:
    """One object of a release, with the bytes and headers it is stored with."""

    key: str
    body: bytes
    content_type: str
    cache_control: str

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def size(self) -> int:
        return len(self.body)


def content_type(key: str) -> str:
    """The ``Content-Type`` of ``key``; an extension missing from the map stops the release."""
    suffix = PurePosixPath(key).suffix.lower()
    try:
        return CONTENT_TYPES[suffix]
    except KeyError:
        raise SiteError(
            f"no Content-Type for {key!r}: add {suffix or 'its extension'!r} to CONTENT_TYPES "
            "in infra/publish/site.py"
        ) from None


def cache_control(key: str) -> str:
    return IMMUTABLE if key.startswith(ASSETS) else REVALIDATE


def site_file(key: str, body: bytes) -> SiteFile:
    return SiteFile(key, body, content_type(key), cache_control(key))


def runtime_config(api_origin: str) -> bytes:
    """The body of ``config.json``, which the app reads at start to find the hub.

    An empty origin means the hub that served the page (the local set-up); otherwise it must be a
    bare origin, because the app appends ``/api/...`` and ``/socket.io/`` to it.
    """
    origin = api_origin.strip().rstrip("/")
    if origin:
        parts = urlsplit(origin)
        local = parts.hostname in {"localhost", "127.0.0.1", "::1"}
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ConfigError(f"--api-origin {api_origin!r} must start with https://")
        if not parts.hostname or parts.path or parts.query or parts.fragment:
            raise ConfigError(
                f"--api-origin {api_origin!r} must be an origin only, like https://api.example.com"
            )
    return json.dumps({"apiOrigin": origin}).encode() + b"\n"


def read_site(dist: Path, api_origin: str | None) -> list[SiteFile]:
    """Every file of the built app under ``dist``, sorted by key.

    ``config.json`` is generated from ``api_origin`` when one is given, rather than written into
    ``dist``: the hub serves the same ``dist`` locally, where the app must keep talking to its own
    origin. Without ``api_origin`` the build's own ``config.json`` is used, or a same-origin one.
    """
    if not (dist / INDEX).is_file():
        raise SiteError(f"{dist} has no {INDEX}: is it the output of `npm run build`?")
    files: dict[str, SiteFile] = {}
    for path in sorted(dist.rglob("*")):
        relative = path.relative_to(dist)
        if path.is_dir() or any(part.startswith(".") for part in relative.parts):
            continue
        key = relative.as_posix()
        files[key] = site_file(key, path.read_bytes())
    if api_origin is not None or CONFIG not in files:
        files[CONFIG] = site_file(CONFIG, runtime_config(api_origin or ""))
    return [files[key] for key in sorted(files)]


def release_id(files: Iterable[SiteFile]) -> str:
    """A name for this exact set of objects: the same build and headers give the same name."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.key):
        line = "\0".join((file.key, file.sha256, file.content_type, file.cache_control))
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()[:16]

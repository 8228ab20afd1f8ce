"""Test clients for the hub: REST through httpx, Socket.IO through python-socketio."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import socketio

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """``r`` is the contract's error answer: ``status``, ``{"error": {"code", "message"}}`` only,
    a snake_case code (``code`` if given), a human message, JSON, and no stack trace."""
    where = f"{r.request.method} {r.request.url.path}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code} {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), (where, r.headers)
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, (where, body)
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, (where, body)
    assert isinstance(error["code"], str) and SNAKE_CASE.match(error["code"]), (where, body)
    assert isinstance(error["message"], str) and error["message"].strip(), (where, body)
    for trace in ("Traceback", 'File "', "site-packages", "signal_hub/"):
        assert trace not in r.text, (where, r.text)
    if code is not None:
        assert error["code"] == code, (where, body)
    return error


def assert_no_secrets(r: httpx.Response, *secrets: str) -> None:
    """No password field, password hash or any of ``secrets`` anywhere in the answer's raw text."""
    text = r.text
    for needle in ('"password', "password_hash", "$argon2", *secrets):
        assert needle not in text, f"{needle!r} in {r.request.method} {r.request.url.path}: {text}"


@dataclass
class User:
    id: str
    email: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Api:
    http: httpx.Client
    password: str = "correct horse battery"

    def signup(self, role: str, **extra: Any) -> User:
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        r = self.http.post(
            "/api/auth/signup",
            json={"email": email, "password": self.password, "role": role, **extra},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return User(body["user"]["id"], email, role, body["access_token"], body["refresh_token"])

    def call(self, method: str, path: str, user: User | None = None, **kw: Any) -> httpx.Response:
        headers = {**(user.headers if user else {}), **kw.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kw)

    def with_token(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        """A request with ``Authorization: Bearer <token>``, whatever the token is."""
        return self.call(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    def account(
        self, user: User, broker: str = "paper", credentials: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new broker account of ``user``."""
        body = {"broker": broker, "credentials": credentials or {}}
        return self.ok("POST", "/api/broker-accounts", user, 201, json=body)  # type: ignore[no-any-return]

    def ok(
        self, method: str, path: str, user: User | None = None, status: int = 200, **kw: Any
    ) -> Any:
        r = self.call(method, path, user, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def add_trader(self, provider: User, channel_id: str, trader: User) -> Any:
        body = {"email": trader.email}
        return self.ok("POST", f"/api/channels/{channel_id}/traders", provider, 201, json=body)

    def channel(self, provider: User, **fields: Any) -> dict[str, Any]:
        body = {"name": f"channel {uuid.uuid4().hex[:6]}", **fields}
        return self.ok("POST", "/api/channels", provider, 201, json=body)  # type: ignore[no-any-return]

    def subscriber(
        self,
        channel_id: str,
        stake: dict[str, Any] | None = None,
        broker: str = "paper",
        credentials: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
    ) -> tuple[User, dict[str, Any], dict[str, Any]]:
        """A new subscriber with a broker account, subscribed to ``channel_id``."""
        user = self.signup("subscriber")
        account = self.ok(
            "POST", "/api/broker-accounts", user, 201,
            json={"broker": broker, "credentials": credentials or {}},
        )  # fmt: skip
        body: dict[str, Any] = {
            "broker_account_id": account["id"],
            "stake": stake or {"mode": "fixed", "amount": 10},
        }
        if limits:
            body["limits"] = limits
        sub = self.ok("POST", f"/api/channels/{channel_id}/subscribe", user, 201, json=body)
        return user, account, sub


@dataclass
class Live:
    """A Socket.IO connection that records every execution and settlement it is sent.

    ``checked``: each execution, on arrival, is looked up through ``GET /api/trades``; those the
    store did not have yet are kept in ``unstored`` (the relay stores before it emits, so there
    must be none). ``reconnect``: the connection comes back by itself after a hub restart.
    """

    base_url: str
    namespace: str
    token: str
    checked: bool = False
    reconnect: bool = False
    executions: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)
    unstored: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=self.reconnect, reconnection_delay=0.2)
        self.sio.on("execution", self._on_execution, namespace=self.namespace)
        self.sio.on("settlement", self._on_settlement, namespace=self.namespace)
        self._stored: set[str] = set()

    async def _on_execution(self, data: Any) -> None:
        batch = data if isinstance(data, list) else [data]
        self.executions.extend(batch)
        if self.checked:
            for event in batch:
                if not await self._in_store(event):
                    self.unstored.append(event)

    async def _in_store(self, event: dict[str, Any]) -> bool:
        if event["trade_id"] not in self._stored:
            async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
                r = await http.get(
                    f"/api/trades?signal_id={event['signal_id']}&limit=10000",
                    headers={"Authorization": f"Bearer {self.token}"},
                )
            self._stored |= {t["trade_id"] for t in r.json().get("items", [])}
        return event["trade_id"] in self._stored

    async def _on_settlement(self, data: Any) -> None:
        self.settlements.extend(data if isinstance(data, list) else [data])

    async def connect(self) -> Live:
        await self.sio.connect(
            self.base_url,
            namespaces=[self.namespace],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def emit(self, event: str, data: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, data, namespace=self.namespace, timeout=timeout)

    async def wait_for(self, what: str, predicate: Any, timeout: float = 15) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.sio.disconnect()


async def live(
    base_url: str, namespace: str, user: User, checked: bool = False, reconnect: bool = False
) -> Live:
    return await Live(base_url, namespace, user.access_token, checked, reconnect).connect()

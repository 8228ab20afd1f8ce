"""Deriv connections: the socket that matches replies to requests, the pool of persistent
sessions (each with its login, keep-alive, reconnects and rate budget), and short-lived
connections for reads about accounts no session is logged in as."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from broker_workers.adapters.base import (
    Account,
    FatalBrokerError,
    RejectedError,
    TemporaryBrokerError,
)
from broker_workers.adapters.deriv.errors import NoAnswer, error_of
from broker_workers.adapters.deriv.settings import DerivSettings
from broker_workers.fencing import abort_transport
from broker_workers.metrics import RATE_LIMIT_WAITS, RECONNECTS
from core.brokers import broker

Json = dict[str, Any]
_RATE_LIMIT_WAITS = RATE_LIMIT_WAITS.labels("deriv")
_RECONNECTS = RECONNECTS.labels("deriv")


def now_s() -> float:
    return time.time()


def token_of(account: Account) -> str:
    return account.credentials.get("token", "")


def dumps(message: Json) -> str:
    return orjson.dumps(message).decode()


def with_app_id(url: str, app_id: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise FatalBrokerError(f"DERIV_WS_URL must be a ws:// or wss:// address, not {url!r}")
    query = dict(parse_qsl(parts.query))
    query.setdefault("app_id", app_id)
    return urlunsplit(parts._replace(query=urlencode(query)))


def buy_limits(reply: Json) -> tuple[int, int] | None:
    """Per minute and per hour, the limits of the group ``buy`` counts against in a
    ``website_status`` answer: the group whose ``applies_to`` names it, else the "rest of calls"
    (``max_requestes_general``, Deriv's spelling), as older reports put buy there."""
    status = reply.get("website_status")
    limits = status.get("api_call_limits") if isinstance(status, dict) else None
    if not isinstance(limits, dict):
        return None
    named = [
        group
        for group in limits.values()
        if isinstance(group, dict) and re.search(r"\bbuy\b", str(group.get("applies_to", "")))
    ]
    group = named[0] if named else limits.get("max_requestes_general")
    if not isinstance(group, dict):
        return None
    try:
        minutely, hourly = int(group["minutely"]), int(group["hourly"])
    except (KeyError, TypeError, ValueError):
        return None
    return (minutely, hourly) if minutely >= 1 and hourly >= 1 else None


class RateBudget:
    """Token buckets per minute and per hour, shared by every buy and proposal of one connection.

    Staying under the broker's limit is cheaper than learning it from ``RateLimit`` answers on
    the hot path. A request that could only be sent after its deadline is not waited for.
    """

    def __init__(
        self, per_minute: int, per_hour: int, on_wait: Callable[[], None] | None = None
    ) -> None:
        # One [capacity, seconds per token, level] per limit; a limit of 0 means none.
        limits = ((per_minute, 60.0), (per_hour, 3600.0))
        self._buckets = [[float(n), period / n, float(n)] for n, period in limits if n > 0]
        self._stamp = time.monotonic()
        self.per_minute = per_minute
        self._on_wait = on_wait

    def _wait_s(self) -> float:
        """Refill every bucket, then how long until each holds a whole token."""
        now = time.monotonic()
        elapsed, self._stamp = now - self._stamp, now
        wait = 0.0
        for bucket in self._buckets:
            capacity, interval, level = bucket
            bucket[2] = level = min(capacity, level + elapsed / interval)
            wait = max(wait, (1 - level) * interval)
        return wait

    def available(self) -> int:
        """Whole requests that could go now (a budget without limits never runs out)."""
        self._wait_s()
        return min((int(bucket[2]) for bucket in self._buckets), default=sys.maxsize)

    async def acquire(self, deadline_s: float) -> bool:
        """Take one request's worth, waiting if that still ends before ``deadline_s`` (epoch)."""
        waited = False
        while True:
            wait = self._wait_s()
            if wait <= 0:
                for bucket in self._buckets:
                    bucket[2] -= 1
                return True
            if now_s() + wait > deadline_s:
                return False
            if not waited and self._on_wait is not None:
                self._on_wait()
            waited = True
            await asyncio.sleep(wait)


class Socket:
    """One WebSocket: each request gets a ``req_id``; a reader task resolves its future."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Json]] = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, timeout_s: float) -> Socket:
        """Connect; websockets' own pings are off, Deriv wants the API's ``ping`` call."""
        try:
            ws = await connect(url, open_timeout=timeout_s, ping_interval=None, close_timeout=2)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise TemporaryBrokerError(f"cannot connect to Deriv: {type(exc).__name__}") from None
        return cls(ws)

    @property
    def closed(self) -> bool:
        return self.reader.done()

    async def call(self, request: Json, timeout_s: float) -> Json:
        """Send and wait for the matching reply. ``NoAnswer`` once anything may have left."""
        if self.closed:
            raise TemporaryBrokerError("the Deriv connection is closed")
        req_id = next(self._ids)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            await self._ws.send(dumps({**request, "req_id": req_id}))
            return await asyncio.wait_for(future, timeout_s)
        except (ConnectionClosed, TimeoutError) as exc:
            raise NoAnswer(type(exc).__name__) from None
        finally:
            self._pending.pop(req_id, None)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    message = orjson.loads(raw)
                except ValueError:
                    continue
                req_id = message.get("req_id") if isinstance(message, dict) else None
                future = self._pending.get(req_id) if isinstance(req_id, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(NoAnswer("connection lost"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        await asyncio.wait({self.reader})

    def abort(self) -> None:
        """Drop the connection at once, with a reset: what the kernel has not sent yet is
        discarded, never delivered later (the worker's lease is lost)."""
        abort_transport(self._ws.transport)


class Session:
    """One persistent connection of the pool: its socket and login, the supervisor that keeps it
    open, and its own rate budget (Deriv counts requests per connection)."""

    def __init__(self, pool: Connections, number: int) -> None:
        self.pool = pool
        self.name = f"deriv-session-{number}"
        self.sock: Socket | None = None
        self.ready = asyncio.Event()
        self.auth: tuple[Socket, Account, str] | None = None  # socket, account, loginid
        self.auth_lock = asyncio.Lock()
        self.supervisor: asyncio.Task[None] | None = None
        self.budget = pool.default_budget()
        self.connections_opened = 0
        self.in_flight = 0  # batches that chose this session and are not done with it

    @property
    def live(self) -> bool:
        return self.ready.is_set() and self.sock is not None and not self.sock.closed

    def is_login(self, account: Account, sock: Socket | None) -> bool:
        """Is ``sock`` this session's socket, authorized as ``account``?"""
        return (
            self.auth is not None
            and self.auth[0] is sock
            and self.auth[1].account_id == account.account_id
        )

    def start(self) -> None:
        if self.supervisor is None or self.supervisor.done():
            self.supervisor = asyncio.create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.supervisor
            self.supervisor = None

    async def _supervise(self) -> None:
        """Keep one connection open: reconnect with backoff and jitter, ping while idle; size
        the budget from what the broker reports for each new connection."""
        pool, failures = self.pool, 0
        try:
            while True:
                try:
                    sock = await Socket.open(pool.url, pool.settings.connect_timeout_s)
                except TemporaryBrokerError as exc:
                    delay = pool.backoff(failures)
                    failures += 1
                    logger.warning("deriv: {}; retrying in {:.2f}s", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                self.connections_opened += 1
                if self.connections_opened > 1:
                    pool.reconnected()
                self.sock, failures = sock, 0
                try:
                    self.budget = await pool.budget_for(sock)
                    self.ready.set()
                    await self._keep_alive(sock)
                finally:
                    self.ready.clear()
                    self.sock = self.auth = None
                    await sock.close()
                logger.warning("deriv: connection lost, reconnecting")
                await asyncio.sleep(pool.backoff(0))
        finally:
            if self.sock is not None:
                await self.sock.close()
            self.sock = self.auth = None
            self.ready.clear()

    async def _keep_alive(self, sock: Socket) -> None:
        while not sock.closed:
            await asyncio.wait({sock.reader}, timeout=self.pool.settings.ping_interval_s)
            if sock.closed:
                return
            try:
                await sock.call({"ping": 1}, self.pool.settings.reply_timeout_s)
            except (NoAnswer, TemporaryBrokerError):
                return

    async def socket(self, deadline_s: float) -> Socket:
        """The live socket, authorized; waits for a reconnect until ``deadline_s``."""
        self.start()
        while True:
            timeout = deadline_s - now_s()
            if timeout <= 0:
                raise TemporaryBrokerError("Deriv is unreachable")
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                raise TemporaryBrokerError("Deriv is unreachable") from None
            sock = self.sock
            if sock is None or sock.closed:
                await asyncio.sleep(0.01)
                continue
            if self.pool.candidates and (self.auth is None or self.auth[0] is not sock):
                async with self.auth_lock:
                    if self.auth is None or self.auth[0] is not sock:
                        await self._authorize(sock, deadline_s)
            return sock

    async def _authorize(self, sock: Socket, deadline_s: float) -> None:
        """Authorize as the first account whose token works; invalid ones are forgotten."""
        candidates = self.pool.candidates
        for account in list(candidates.values()):
            timeout = min(self.pool.settings.reply_timeout_s, deadline_s - now_s())
            if timeout <= 0:
                raise TemporaryBrokerError("no time left to authorize with Deriv")
            try:
                reply = await sock.call({"authorize": token_of(account)}, timeout)
            except NoAnswer:
                raise TemporaryBrokerError("no answer to authorize from Deriv") from None
            error = reply.get("error")
            if error is None:
                loginid = str(reply["authorize"]["loginid"])
                self.auth = (sock, account, loginid)
                logger.info("deriv: {} authorized as account {}", self.name, account.account_id)
                return
            if error.get("code") != "InvalidToken":
                raise error_of(str(error.get("code")), str(error.get("message")))
            logger.warning("deriv: account {} has an invalid token", account.account_id)
            candidates.pop(account.account_id, None)
        raise RejectedError("no account could authorize the Deriv session", reason="invalid_token")


class Connections:
    """The session pool and the short-lived connections beside it."""

    def __init__(self, settings: DerivSettings) -> None:
        self.settings = settings
        self.url = with_app_id(settings.ws_url, settings.app_id)
        self.candidates: dict[str, Account] = {}  # accounts to authorize sessions as, in order
        self.rate_limit_waits = 0  # in this process, for the admin console
        self.reconnects = 0
        self.sessions = [Session(self, n + 1) for n in range(settings.connections)]
        self._side_sockets = asyncio.Semaphore(settings.side_connections)

    @property
    def connections_opened(self) -> int:
        return sum(session.connections_opened for session in self.sessions)

    def waited(self) -> None:
        """A request waited for a rate budget, or Deriv told it to wait (``RateLimit``)."""
        self.rate_limit_waits += 1
        _RATE_LIMIT_WAITS.inc()

    def reconnected(self) -> None:
        self.reconnects += 1
        _RECONNECTS.inc()

    def status(self) -> dict[str, int]:
        """The sessions connected and the purchases their rate budgets allow right now, for the
        admin console (recorded with the worker's heartbeat)."""
        return {
            "sessions_connected": sum(1 for s in self.sessions if s.live),
            "sessions_total": len(self.sessions),
            "budget_available": sum(min(s.budget.available(), 10**9) for s in self.sessions),
            "budget_per_minute": sum(s.budget.per_minute for s in self.sessions),
            "rate_limit_waits": self.rate_limit_waits,
            "reconnects": self.reconnects,
        }

    async def open(self, accounts: list[Account]) -> None:
        """Connect and authorize every session as the first account; more accounts only widen
        the candidates. Fails only if no session could be made ready in time."""
        self.remember(accounts)
        deadline = now_s() + self.settings.connect_timeout_s
        results = await asyncio.gather(
            *(session.socket(deadline) for session in self.sessions), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(errors) == len(results):
            raise errors[0]
        if errors:
            logger.warning("deriv: {} of {} sessions not ready yet", len(errors), len(results))

    async def close(self) -> None:
        await asyncio.gather(*(session.stop() for session in self.sessions))

    def abort(self) -> None:
        """Abort every session's connection (the worker's lease is lost): nothing written to
        them goes out later. Each supervisor then opens a fresh one, which carries no order of
        the lost lease (every purchase is checked against its lease right before it is sent)."""
        for session in self.sessions:
            if session.sock is not None:
                session.sock.abort()

    def remember(self, accounts: Iterable[Account]) -> None:
        for account in accounts:
            if token_of(account):
                self.candidates.setdefault(account.account_id, account)

    def backoff(self, attempt: int) -> float:
        s = self.settings
        return min(s.backoff_max_s, s.backoff_base_s * 2.0**attempt) * random.uniform(0.5, 1)

    def _share(self, limit: int) -> int:
        """Our safe share of one of the broker's limits: never more, never nothing."""
        return max(1, limit * self.settings.rate_share_pct // 100)

    def default_budget(self) -> RateBudget:
        """Until a connection's ``website_status`` says otherwise: the catalogue's per-minute
        figure and our share of the documented hourly one."""
        per_minute = broker("deriv").capabilities["buys_per_minute"]
        return RateBudget(
            per_minute, self._share(self.settings.buy_limits_documented[1]), self.waited
        )

    async def budget_for(self, sock: Socket) -> RateBudget:
        """A new connection's budget: our share of the limits ``website_status`` reports for the
        group ``buy`` belongs to; the default if the call fails or says nothing usable."""
        try:
            reply = await sock.call({"website_status": 1}, self.settings.reply_timeout_s)
        except (NoAnswer, TemporaryBrokerError):
            return self.default_budget()
        limits = buy_limits(reply)
        if limits is None:
            logger.warning("deriv: website_status gave no rate limits; keeping the defaults")
            return self.default_budget()
        per_minute, per_hour = self._share(limits[0]), self._share(limits[1])
        logger.debug("deriv: connection budget {}/min, {}/h", per_minute, per_hour)
        return RateBudget(per_minute, per_hour, self.waited)

    def pick(self) -> Session:
        """The session that can send soonest: connected, most budget left, fewest in flight."""
        return max(self.sessions, key=lambda s: (s.live, s.budget.available(), -s.in_flight))

    @contextlib.asynccontextmanager
    async def reader_for(self, account: Account) -> AsyncIterator[Socket]:
        """A socket authorized as ``account``: a live session logged in as it, else a new one."""
        session = next((s for s in self.sessions if s.live and s.is_login(account, s.sock)), None)
        if session is not None:
            sock = await session.socket(now_s() + self.settings.lookup_timeout_s)
            if session.is_login(account, sock):
                yield sock
                return
        async with self._side_sockets:
            sock = await Socket.open(self.url, self.settings.connect_timeout_s)
            try:
                await self.ask(sock, {"authorize": token_of(account)})
                yield sock
            finally:
                await sock.close()

    async def ask(self, sock: Socket, request: Json) -> Json:
        """One read-only call; Deriv errors become our error tree."""
        try:
            reply = await sock.call(request, self.settings.lookup_timeout_s)
        except NoAnswer:
            raise TemporaryBrokerError("no answer from Deriv") from None
        error = reply.get("error")
        if error is not None:
            raise error_of(str(error.get("code")), str(error.get("message")))
        return reply

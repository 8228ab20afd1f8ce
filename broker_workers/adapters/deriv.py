"""Deriv (formerly Binary.com) through its WebSocket API v3.

How it works, and why:

- A pool of ``DERIV_CONNECTIONS`` persistent connections per worker process (a ``_Session``
  each), opened and authorized by :meth:`open`, each kept alive with ``ping`` and re-opened by
  its own supervisor task with exponential backoff and jitter, so no signal waits for a login.
  Replies are matched to requests by ``req_id``, never by order. Each batch goes out on the
  session that can send soonest (connected, most budget left, fewest requests in flight), so the
  batches of one signal spread over every connection and every connection's rate budget.
- Orders sharing (signal, asset, direction, expiry, stake, currency) go out together as one
  ``buy_contract_for_multiple_accounts`` (at most 100 tokens, and a passthrough within Deriv's
  3500 bytes), each token answered by a receipt or an error. A lone order on the account a
  session is authorized as is a single ``buy`` with ``parameters``. Deriv's ``buy`` acts only on
  an authorized account, and one session authorizes one user's accounts, so a lone order of any
  other subscriber is a one-token multi-account buy: same message, same per-token answer.
- Reads about one account (outcome, reconciliation, balance) use a session when it is that
  account, and otherwise a short-lived connection authorized with that account's token.
- A buy that was sent and not answered (timeout, dropped socket) is reconciled with the broker
  before anything is retried, and retried only while its deadline allows. Its connection is
  closed first, and buys for the same accounts still in flight on other sessions are waited for,
  so that each answered purchase is claimed by its own order before we look. Deriv stores no
  passthrough with a contract (its profit_table, portfolio and statement rows have no such field),
  so the purchase is recognised in the account's ``statement`` by its details: contract type,
  symbol, duration, stake, and a purchase time inside the order's window.
- Rate limits: Deriv budgets calls per connection, in groups; ``buy`` shares one with
  ``proposal``, ``proposal_open_contract`` and ``sell`` (documented: 360 a minute, 14,400 an
  hour), and a multi-account buy of up to 100 tokens is one call. Each new connection asks
  ``website_status`` once and keeps to 90 % of its group's limits in local token buckets per
  minute and per hour (the class defaults, the same share of the documented figures, when the
  call fails), so the worker's budget grows with its pool. A ``RateLimit`` answer is retried
  with backoff until the deadline, and an order whose turn would come after its deadline fails
  ``rate_limited``.

Tokens are never logged and never put in an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from decimal import Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from broker_workers.adapters.base import (
    DEFAULT_CAPABILITIES,
    Account,
    AmbiguousPurchase,
    BrokerError,
    Capabilities,
    Fill,
    Order,
    Outcome,
    RateLimitedError,
    RejectedError,
    TemporaryBrokerError,
)
from signal_hub.settings import Settings

Json = dict[str, Any]

ASSETS: dict[str, str] = {
    "EURUSD": "frxEURUSD",
    "GBPUSD": "frxGBPUSD",
    "USDJPY": "frxUSDJPY",
    "AUDUSD": "frxAUDUSD",
    "USDCAD": "frxUSDCAD",
    "EURJPY": "frxEURJPY",
    **{name: name for name in ("R_10", "R_25", "R_50", "R_75", "R_100")},
}

# Deriv error code -> the contract's reason for a rejected trade. RateLimit is retried instead.
REJECT_REASONS: dict[str, str] = {
    "InvalidToken": "invalid_token",
    "AuthorizationRequired": "invalid_token",
    "InsufficientBalance": "insufficient_balance",
    "MarketIsClosed": "market_closed",
    "ContractBuyValidationError": "invalid_contract",
    "OfferingsValidationError": "invalid_contract",
    "InputValidationFailed": "invalid_contract",
    "InvalidContractProposal": "invalid_contract",
    "PriceMoved": "price_moved",
    "ContractCreationFailure": "broker_error",
}

MAX_TOKENS_PER_BUY = 100
PASSTHROUGH_MAX_BYTES = 3500
RECONCILE_LOOKBACK_S = 300  # a purchase of this order cannot be older than its deadline minus this
RECONCILE_GRACE_S = 5  # ... nor later than its deadline plus this (in flight, clock skew)
# Deriv's documented limits per connection for buy's group (with proposal,
# proposal_open_contract and sell), per minute and per hour; we keep to a share of them.
BUY_LIMITS_DOCUMENTED = (360, 14_400)
RATE_SHARE_PCT = 90

RETRY: Literal["retry"] = "retry"  # the broker refused for now (rate limit): nothing bought
UNKNOWN: Literal["unknown"] = "unknown"  # sent, no answer: reconcile before anything else
Answer = Fill | Literal["retry", "unknown"]


class _NoAnswer(Exception):
    """A request may have left this process and no reply came: the broker may have acted."""


def _now() -> float:
    return time.time()


def _token(account: Account) -> str:
    return account.credentials.get("token", "")


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _dumps(message: Json) -> str:
    return orjson.dumps(message).decode()


def _with_app_id(url: str, app_id: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("app_id", app_id)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _late(client_order_id: str, why: str) -> Fill:
    """Past its deadline: ``skipped`` when nothing was ever attempted, else ``failed`` with
    what stood in the way."""
    if why == "expired":
        return Fill(client_order_id, "skipped", why)
    return Fill(client_order_id, "failed", why)


def _share(limit: int) -> int:
    """Our safe share of one of the broker's limits: never more, never nothing."""
    return max(1, limit * RATE_SHARE_PCT // 100)


def _buy_limits(reply: Json) -> tuple[int, int] | None:
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


def _error_of(code: str, message: str) -> BrokerError:
    """A Deriv error answer as our error tree (the message is Deriv's, which holds no token)."""
    if code == "RateLimit":
        return RateLimitedError(f"Deriv {code}: {message}")
    return RejectedError(
        f"Deriv {code}: {message}", reason=REJECT_REASONS.get(code, "broker_error")
    )


class RateBudget:
    """Token buckets per minute and per hour, shared by every buy and proposal of one connection.

    Staying under the broker's limit is cheaper than learning it from ``RateLimit`` answers on
    the hot path. A request that could only be sent after its deadline is not waited for.
    """

    def __init__(self, per_minute: int, per_hour: int) -> None:
        # One [capacity, seconds per token, level] per limit; a limit of 0 means none.
        limits = ((per_minute, 60.0), (per_hour, 3600.0))
        self._buckets = [[float(n), period / n, float(n)] for n, period in limits if n > 0]
        self._stamp = time.monotonic()

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
        while True:
            wait = self._wait_s()
            if wait <= 0:
                for bucket in self._buckets:
                    bucket[2] -= 1
                return True
            if _now() + wait > deadline_s:
                return False
            await asyncio.sleep(wait)


class _Socket:
    """One WebSocket: each request gets a ``req_id``; a reader task resolves its future."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Json]] = {}
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, timeout_s: float) -> _Socket:
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
        """Send and wait for the matching reply. ``_NoAnswer`` once anything may have left."""
        if self.closed:
            raise TemporaryBrokerError("the Deriv connection is closed")
        req_id = next(self._ids)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            await self._ws.send(_dumps({**request, "req_id": req_id}))
            return await asyncio.wait_for(future, timeout_s)
        except (ConnectionClosed, TimeoutError) as exc:
            raise _NoAnswer(type(exc).__name__) from None
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
                    future.set_exception(_NoAnswer("connection lost"))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        await asyncio.wait({self.reader})


class _Session:
    """One persistent connection of the pool: its socket and login, the supervisor that keeps it
    open, and its own rate budget (Deriv counts requests per connection)."""

    def __init__(self, broker: DerivBroker, number: int) -> None:
        self.broker = broker
        self.name = f"deriv-session-{number}"
        self.sock: _Socket | None = None
        self.ready = asyncio.Event()
        self.auth: tuple[_Socket, Account, str] | None = None  # socket, account, loginid
        self.auth_lock = asyncio.Lock()
        self.supervisor: asyncio.Task[None] | None = None
        self.budget = broker.default_budget()
        self.connections_opened = 0
        self.in_flight = 0  # batches that chose this session and are not done with it

    @property
    def live(self) -> bool:
        return self.ready.is_set() and self.sock is not None and not self.sock.closed

    def is_login(self, account: Account, sock: _Socket | None) -> bool:
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
        broker, failures = self.broker, 0
        try:
            while True:
                try:
                    sock = await _Socket.open(broker.url, broker.connect_timeout_s)
                except TemporaryBrokerError as exc:
                    delay = broker.backoff(failures)
                    failures += 1
                    logger.warning("deriv: {}; retrying in {:.2f}s", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                self.connections_opened += 1
                self.sock, failures = sock, 0
                try:
                    self.budget = await broker.budget_for(sock)
                    self.ready.set()
                    await self._keep_alive(sock)
                finally:
                    self.ready.clear()
                    self.sock = self.auth = None
                    await sock.close()
                logger.warning("deriv: connection lost, reconnecting")
                await asyncio.sleep(broker.backoff(0))
        finally:
            if self.sock is not None:
                await self.sock.close()
            self.sock = self.auth = None
            self.ready.clear()

    async def _keep_alive(self, sock: _Socket) -> None:
        while not sock.closed:
            await asyncio.wait({sock.reader}, timeout=self.broker.ping_interval_s)
            if sock.closed:
                return
            try:
                await sock.call({"ping": 1}, self.broker.reply_timeout_s)
            except (_NoAnswer, TemporaryBrokerError):
                return

    async def socket(self, deadline_s: float) -> _Socket:
        """The live socket, authorized; waits for a reconnect until ``deadline_s``."""
        self.start()
        while True:
            timeout = deadline_s - _now()
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
            if self.broker.candidates and (self.auth is None or self.auth[0] is not sock):
                async with self.auth_lock:
                    if self.auth is None or self.auth[0] is not sock:
                        await self._authorize(sock, deadline_s)
            return sock

    async def _authorize(self, sock: _Socket, deadline_s: float) -> None:
        """Authorize as the first account whose token works; invalid ones are forgotten."""
        candidates = self.broker.candidates
        for account in list(candidates.values()):
            timeout = min(self.broker.reply_timeout_s, deadline_s - _now())
            if timeout <= 0:
                raise TemporaryBrokerError("no time left to authorize with Deriv")
            try:
                reply = await sock.call({"authorize": _token(account)}, timeout)
            except _NoAnswer:
                raise TemporaryBrokerError("no answer to authorize from Deriv") from None
            error = reply.get("error")
            if error is None:
                loginid = str(reply["authorize"]["loginid"])
                self.auth = (sock, account, loginid)
                logger.info("deriv: {} authorized as account {}", self.name, account.account_id)
                return
            if error.get("code") != "InvalidToken":
                raise _error_of(str(error.get("code")), str(error.get("message")))
            logger.warning("deriv: account {} has an invalid token", account.account_id)
            candidates.pop(account.account_id, None)
        raise RejectedError("no account could authorize the Deriv session", reason="invalid_token")


class DerivBroker:
    """The Deriv adapter: see the module docstring for the shape of the work."""

    name: ClassVar[str] = "deriv"
    capabilities: ClassVar[Capabilities] = Capabilities(
        {
            **DEFAULT_CAPABILITIES,
            "min_stake": Decimal("0.35"),
            "max_stake": Decimal("50000"),
            "min_expiry_s": 15,
            "max_expiry_s": 24 * 3600,
            "max_orders_per_request": MAX_TOKENS_PER_BUY,
            # Per connection, until website_status says otherwise: our share of the 360 a minute
            # Deriv documents for buy's group. A multi-account buy of 100 tokens is one request.
            "buys_per_minute": _share(BUY_LIMITS_DOCUMENTED[0]),
            "assets": ASSETS,
            "credential_fields": ("token",),
            "finds_purchases_by_details": True,
        }
    )
    buys_per_hour: ClassVar[int] = _share(BUY_LIMITS_DOCUMENTED[1])

    def __init__(self, settings: Settings) -> None:
        self.url = _with_app_id(settings.deriv_ws_url, settings.deriv_app_id)
        # Tunables, plain attributes so that tests and benchmarks can tighten them.
        self.reply_timeout_s = 5.0
        self.connect_timeout_s = 5.0
        self.lookup_timeout_s = 10.0
        self.ping_interval_s = 30.0
        self.backoff_base_s = 0.25
        self.backoff_max_s = 15.0
        self.reconcile_delay_s = 0.25  # lets a purchase still in flight land before we look

        self.candidates: dict[str, Account] = {}  # accounts to authorize sessions as, in order
        self.sessions = [_Session(self, n + 1) for n in range(max(1, settings.deriv_connections))]
        self._side_sockets = asyncio.Semaphore(8)
        # client_order_id -> the broker's definitive answer in this process: placed or rejected
        self._answers: OrderedDict[str, Fill] = OrderedDict()
        self._claimed: OrderedDict[str, str] = OrderedDict()  # contract_id -> client_order_id
        self._buying: Counter[str] = Counter()  # token -> buys sent for it and not answered yet
        self._landed = asyncio.Condition()  # notified whenever a buy's answer has been taken in

    @property
    def connections_opened(self) -> int:
        return sum(session.connections_opened for session in self.sessions)

    # -- the sessions ------------------------------------------------------------------------

    async def open(self, accounts: list[Account]) -> None:
        """Connect and authorize every session as the first account; more accounts only widen
        the candidates. Fails only if no session could be made ready in time."""
        self._remember(accounts)
        deadline = _now() + self.connect_timeout_s
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

    def _remember(self, accounts: Iterable[Account]) -> None:
        for account in accounts:
            if _token(account):
                self.candidates.setdefault(account.account_id, account)

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2.0**attempt) * random.uniform(0.5, 1)

    def default_budget(self) -> RateBudget:
        return RateBudget(self.capabilities["buys_per_minute"], self.buys_per_hour)

    async def budget_for(self, sock: _Socket) -> RateBudget:
        """A new connection's budget: our share of the limits ``website_status`` reports for the
        group ``buy`` belongs to; the class default if the call fails or says nothing usable."""
        try:
            reply = await sock.call({"website_status": 1}, self.reply_timeout_s)
        except (_NoAnswer, TemporaryBrokerError):
            return self.default_budget()
        limits = _buy_limits(reply)
        if limits is None:
            logger.warning("deriv: website_status gave no rate limits; keeping the defaults")
            return self.default_budget()
        per_minute, per_hour = _share(limits[0]), _share(limits[1])
        logger.debug("deriv: connection budget {}/min, {}/h", per_minute, per_hour)
        return RateBudget(per_minute, per_hour)

    def _pick(self) -> _Session:
        """The session that can send soonest: connected, most budget left, fewest in flight."""
        return max(self.sessions, key=lambda s: (s.live, s.budget.available(), -s.in_flight))

    @contextlib.asynccontextmanager
    async def _reader_for(self, account: Account) -> AsyncIterator[_Socket]:
        """A socket authorized as ``account``: a live session logged in as it, else a new one."""
        session = next((s for s in self.sessions if s.live and s.is_login(account, s.sock)), None)
        if session is not None:
            sock = await session.socket(_now() + self.lookup_timeout_s)
            if session.is_login(account, sock):
                yield sock
                return
        async with self._side_sockets:
            sock = await _Socket.open(self.url, self.connect_timeout_s)
            try:
                await self._ask(sock, {"authorize": _token(account)})
                yield sock
            finally:
                await sock.close()

    async def _ask(self, sock: _Socket, request: Json) -> Json:
        """One read-only call; Deriv errors become our error tree."""
        try:
            reply = await sock.call(request, self.lookup_timeout_s)
        except _NoAnswer:
            raise TemporaryBrokerError("no answer from Deriv") from None
        error = reply.get("error")
        if error is not None:
            raise _error_of(str(error.get("code")), str(error.get("message")))
        return reply

    # -- buying ------------------------------------------------------------------------------

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Place every order (see the module docstring); one Fill per order, in order.

        Raises :class:`AmbiguousPurchase` only when some order was sent, went unanswered, and
        the broker could not be asked about it either. The answers already given (placed or
        rejected) stay known to :meth:`find_purchase`, so reconciling every order of the call
        is cheap and loses no refusal reason.
        """
        fills: dict[str, Fill] = {}
        sendable: list[Order] = []
        for order in orders:
            if order.asset not in ASSETS:
                fills[order.client_order_id] = self._refusal(order, "invalid_contract")
            elif not _token(order.account):
                fills[order.client_order_id] = self._refusal(order, "invalid_token")
            else:
                sendable.append(order)
        batches = list(self._batches(sendable))
        results = await asyncio.gather(*map(self._execute, batches), return_exceptions=True)
        unresolved = 0
        for batch, result in zip(batches, results, strict=True):
            if isinstance(result, AmbiguousPurchase):
                unresolved += len(batch)
            elif isinstance(result, BaseException):
                raise result
            else:
                fills.update(result)
        if unresolved:
            raise AmbiguousPurchase(
                f"{unresolved} Deriv purchase(s) sent without an answer and not reconciled"
            )
        return [fills[order.client_order_id] for order in orders]

    def _batches(self, orders: list[Order]) -> Iterator[list[Order]]:
        """Group orders that can share one multi-account buy, within Deriv's request limits."""
        groups: dict[tuple[Any, ...], list[Order]] = {}
        for o in orders:
            key = (o.signal_id, o.asset, o.direction, o.expiry_seconds, o.stake, o.account.currency)
            groups.setdefault(key, []).append(o)
        for group in groups.values():
            chunk: list[Order] = []
            tokens: set[str] = set()
            size = 0
            for o in group:
                entry = len(orjson.dumps(o.subscription_id)) + 1  # and a comma
                if chunk and (
                    len(chunk) == MAX_TOKENS_PER_BUY
                    or size + entry > PASSTHROUGH_MAX_BYTES
                    or _token(o.account) in tokens
                ):
                    yield chunk
                    chunk, tokens = [], set()
                if not chunk:
                    size = len(_dumps(_passthrough_many([o])))
                else:
                    size += entry
                chunk.append(o)
                tokens.add(_token(o.account))
            if chunk:
                yield chunk

    async def _execute(self, orders: list[Order]) -> dict[str, Fill]:
        """Send one batch until every order has an answer or its deadline has passed; each
        attempt goes out on the session that can send soonest."""
        fills: dict[str, Fill] = {}
        pending, why, attempt = list(orders), "expired", 0
        self._remember(o.account for o in orders)
        while pending:
            now = _now()
            for o in pending:
                if o.deadline_ms / 1000 <= now:
                    fills[o.client_order_id] = _late(o.client_order_id, why)
            pending = [o for o in pending if o.client_order_id not in fills]
            if not pending:
                break
            deadline = min(o.deadline_ms for o in pending) / 1000
            if attempt:
                await asyncio.sleep(max(0.0, min(self.backoff(attempt), deadline - _now())))
            attempt += 1
            if _now() >= deadline:
                continue
            session = self._pick()
            session.in_flight += 1
            try:
                sock = await session.socket(deadline)
                if not await session.budget.acquire(deadline):
                    fills.update(
                        (o.client_order_id, Fill(o.client_order_id, "failed", "rate_limited"))
                        for o in pending
                    )
                    break
                answers = await self._send(session, sock, pending)
            except TemporaryBrokerError:  # no connection, or it closed before anything was sent
                why = "broker_unreachable"
                continue
            except RejectedError as exc:  # no account of ours can even log in
                fills.update((o.client_order_id, self._refusal(o, exc.reason)) for o in pending)
                break
            finally:
                session.in_flight -= 1
            unknown = [o for o in pending if answers[o.client_order_id] == UNKNOWN]
            if unknown:
                why = "broker_unreachable"
                # Close it so that nothing still queued behind it is processed while we look;
                # other requests in flight on it become unanswered too, and are reconciled.
                # The other sessions carry on: _reconcile waits for their buys of these accounts.
                await sock.close()
                answers.update(await self._reconcile(unknown))
            elif any(answers[o.client_order_id] == RETRY for o in pending):
                why = "rate_limited"
            for o in pending:
                answer = answers[o.client_order_id]
                if isinstance(answer, Fill):
                    fills[o.client_order_id] = answer
            pending = [o for o in pending if o.client_order_id not in fills]
        return fills

    async def _send(
        self, session: _Session, sock: _Socket, orders: list[Order]
    ) -> dict[str, Answer]:
        """One request for the batch; per order a Fill, RETRY (nothing bought) or UNKNOWN."""
        first = orders[0]
        contract = {
            "contract_type": first.direction,
            "symbol": ASSETS[first.asset],
            "duration": first.expiry_seconds,
            "duration_unit": "s",
            "basis": "stake",
            "amount": float(first.stake),
            "currency": first.account.currency,
        }
        auth = session.auth
        single = len(orders) == 1 and auth is not None and session.is_login(first.account, sock)
        if single and auth is not None:
            request: Json = {
                "buy": "1",
                "price": float(first.stake),
                "parameters": contract,
                "loginid": auth[2],
                "passthrough": {
                    "client_order_id": first.client_order_id,
                    "signal_id": first.signal_id,
                    "subscription_id": first.subscription_id,
                },
            }
        else:
            request = {
                "buy_contract_for_multiple_accounts": "1",
                "price": float(first.stake),
                "parameters": contract,
                "tokens": [_token(o.account) for o in orders],
                "passthrough": _passthrough_many(orders),
            }
        async with self._in_flight([_token(o.account) for o in orders]):
            try:
                reply = await sock.call(request, self.reply_timeout_s)
            except _NoAnswer as exc:
                logger.warning("deriv: {} order(s) sent without an answer ({})", len(orders), exc)
                return dict.fromkeys((o.client_order_id for o in orders), UNKNOWN)
            error = reply.get("error")
            if error is not None:
                return {
                    o.client_order_id: self._refused(session, o, error, "message") for o in orders
                }
            if single:
                return {first.client_order_id: self._placed(first, reply["buy"])}
            results: list[Json] = reply["buy_contract_for_multiple_accounts"]["result"]
            answers: dict[str, Answer] = {}
            for index, o in enumerate(orders):
                token = _token(o.account)
                item = results[index] if index < len(results) else None
                if item is None or item.get("token") != token:
                    item = next((r for r in results if r.get("token") == token), None)
                if item is None:
                    answers[o.client_order_id] = UNKNOWN
                elif "contract_id" in item:
                    answers[o.client_order_id] = self._placed(o, item)
                else:
                    answers[o.client_order_id] = self._refused(
                        session, o, item, "message_to_client"
                    )
            return answers

    @contextlib.asynccontextmanager
    async def _in_flight(self, tokens: list[str]) -> AsyncIterator[None]:
        """Count a buy for these accounts as in flight until its answer has been taken in."""
        self._buying.update(tokens)
        try:
            yield
        finally:
            self._buying.subtract(tokens)
            for token in tokens:
                if self._buying[token] <= 0:
                    del self._buying[token]
            async with self._landed:
                self._landed.notify_all()

    async def _quiet(self, tokens: set[str]) -> None:
        """Wait (a reply timeout at most) until no buy for these accounts is in flight on any
        session, so that a purchase still being answered elsewhere is claimed by its own order
        before we look for ours in the statement."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.reply_timeout_s), self._landed:
                await self._landed.wait_for(lambda: tokens.isdisjoint(self._buying))

    def _refused(self, session: _Session, order: Order, error: Json, message_key: str) -> Answer:
        code = str(error.get("code"))
        if code == "RateLimit":
            return RETRY
        if code == "AuthorizationRequired":
            session.auth = None  # the session lost its login: authorize again before the next call
        logger.info(
            "deriv: order {} rejected: {} ({})", order.client_order_id, code, error.get(message_key)
        )
        return self._refusal(order, REJECT_REASONS.get(code, "broker_error"))

    def _refusal(self, order: Order, reason: str) -> Fill:
        fill = Fill(order.client_order_id, "rejected", reason)
        self._remember_answer(fill)
        return fill

    def _placed(self, order: Order, receipt: Json) -> Fill:
        fill = Fill(
            order.client_order_id,
            "placed",
            contract_id=str(receipt["contract_id"]),
            stake=_money(receipt["buy_price"]),
            payout=_money(receipt["payout"]),
            # Deriv stamps purchases to the whole second; the receipt's arrival is the finer bound.
            broker_time_ms=max(int(receipt["purchase_time"]) * 1000, int(time.time() * 1000)),
        )
        self._remember_answer(fill)
        return fill

    def _remember_answer(self, fill: Fill) -> None:
        """Keep the broker's answer for find_purchase; a placed contract is no one else's."""
        self._answers[fill.client_order_id] = fill
        if fill.contract_id is not None:
            self._claimed[fill.contract_id] = fill.client_order_id
        for memory in (self._answers, self._claimed):
            while len(memory) > 100_000:
                memory.popitem(last=False)

    async def _reconcile(self, orders: list[Order]) -> dict[str, Answer]:
        """Ask the broker about unanswered orders: found -> placed, never bought -> RETRY."""
        await asyncio.sleep(self.reconcile_delay_s)
        await self._quiet({_token(o.account) for o in orders})
        found = await asyncio.gather(*map(self.find_purchase, orders), return_exceptions=True)
        answers: dict[str, Answer] = {}
        for order, result in zip(orders, found, strict=True):
            if isinstance(result, RejectedError) and result.reason == "invalid_token":
                answers[order.client_order_id] = self._refusal(order, "invalid_token")
            elif isinstance(result, BrokerError):
                logger.warning(
                    "deriv: cannot reconcile order {}: {}", order.client_order_id, result
                )
                raise AmbiguousPurchase(
                    f"cannot reconcile order {order.client_order_id}"
                ) from result
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[order.client_order_id] = result if result is not None else RETRY
        return answers

    async def find_purchase(self, order: Order) -> Fill | None:
        """The broker's answer for the order: the one this process already had (placed, or a
        refusal), else its purchase found in the account's statement, else ``None``."""
        known = self._answers.get(order.client_order_id)
        if known is not None:
            return known
        symbol = ASSETS.get(order.asset)
        if symbol is None or not _token(order.account):
            return None
        deadline_s = order.deadline_ms // 1000
        async with self._reader_for(order.account) as sock:
            reply = await self._ask(
                sock,
                {
                    "statement": 1,
                    "action_type": "buy",
                    "description": 1,
                    "date_from": _window_start_s(order),
                    "limit": 999,
                },
            )
        rows: list[Json] = reply["statement"].get("transactions", [])
        rows.sort(key=lambda r: (r.get("transaction_time", 0), r.get("transaction_id", 0)))
        for row in rows:
            if self._is_purchase_of(row, order, symbol, deadline_s + RECONCILE_GRACE_S):
                fill = Fill(
                    order.client_order_id,
                    "placed",
                    contract_id=str(row["contract_id"]),
                    stake=-_money(row["amount"]),
                    payout=_money(row["payout"]) if row.get("payout") is not None else None,
                    broker_time_ms=int(row["transaction_time"]) * 1000,
                )
                self._remember_answer(fill)
                logger.info("deriv: order {} found at the broker", order.client_order_id)
                return fill
        return None

    def _is_purchase_of(self, row: Json, order: Order, symbol: str, latest_s: int) -> bool:
        """Does this statement row describe the order's contract, unclaimed by another order?"""
        parts = str(row.get("shortcode") or "").split("_")
        if len(parts) < 7 or row.get("contract_id") is None:
            return False
        start, expiry = parts[-4], parts[-3]
        return (
            parts[0] == order.direction
            and "_".join(parts[1:-5]) == symbol.upper()
            and start.isdigit()
            and expiry.isdigit()
            and int(expiry) - int(start) == order.expiry_seconds
            and -_money(row.get("amount", 0)) == order.stake
            and _window_start_s(order) <= int(row.get("transaction_time", 0)) <= latest_s
            and str(row["contract_id"]) not in self._claimed
            and str(row["contract_id"]) not in order.recorded_contract_ids
        )

    # -- after the purchase ------------------------------------------------------------------

    async def outcome(self, account: Account, contract_id: str) -> Outcome | None:
        """Settlement through ``proposal_open_contract``; ``None`` while the contract is open."""
        async with self._reader_for(account) as sock:
            reply = await self._ask(
                sock, {"proposal_open_contract": 1, "contract_id": int(contract_id)}
            )
        poc: Json = reply.get("proposal_open_contract") or {}
        if not poc:
            raise RejectedError(f"Deriv has no contract {contract_id}", reason="invalid_contract")
        if not poc.get("is_sold"):
            return None
        profit = _money(poc.get("profit", 0))
        outcome: Literal["won", "lost", "refund"] = (
            "refund" if profit == 0 else "won" if profit > 0 else "lost"
        )
        settled_s = poc.get("sell_time") or poc.get("date_expiry") or int(_now())
        return Outcome(contract_id, outcome, profit, int(settled_s) * 1000)

    async def balances(self, accounts: list[Account]) -> dict[str, Decimal]:
        """Balance per account; an account whose token Deriv refuses is left out (and logged)."""

        async def one(account: Account) -> tuple[str, Decimal] | None:
            try:
                async with self._reader_for(account) as sock:
                    reply = await self._ask(sock, {"balance": 1})
            except RejectedError as exc:
                logger.warning(
                    "deriv: no balance for account {}: {}", account.account_id, exc.reason
                )
                return None
            return account.account_id, _money(reply["balance"]["balance"])

        results = await asyncio.gather(*map(one, accounts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(r for r in results if isinstance(r, tuple))


def _window_start_s(order: Order) -> int:
    """The earliest a purchase of ``order`` can have been made (whole seconds, as Deriv keeps
    them): its signal's creation, else the widest window a deadline allows."""
    if order.signal_created_ms:
        return max(0, order.signal_created_ms // 1000 - 1)
    return max(0, order.deadline_ms // 1000 - RECONCILE_LOOKBACK_S)


def _passthrough_many(orders: list[Order]) -> Json:
    """The tag of a multi-account buy: ``subscription_ids[i]`` belongs to ``tokens[i]`` (the
    client order id is the trade id, ``{signal_id}-{subscription_id}``; not repeating it keeps
    100 tokens within the passthrough's 3500 bytes)."""
    return {
        "signal_id": orders[0].signal_id if orders else "",
        "subscription_ids": [o.subscription_id for o in orders],
    }

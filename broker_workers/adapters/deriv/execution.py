"""Buying on Deriv: orders grouped into multi-account buys, each batch sent on the session that
can send soonest, retried while its deadline allows, reconciled when its answer is lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import orjson
from loguru import logger

from broker_workers.adapters.base import (
    AmbiguousPurchase,
    BrokerError,
    Fill,
    Order,
    RejectedError,
    TemporaryBrokerError,
    ensure_fenced,
)
from broker_workers.adapters.deriv.client import Connections, Json, Session, Socket, dumps, now_s
from broker_workers.adapters.deriv.client import token_of as _token
from broker_workers.adapters.deriv.errors import FATAL_CODES, REJECT_REASONS, NoAnswer, error_of
from broker_workers.adapters.deriv.reconciliation import SYMBOLS, Answers, Reconciler, money
from core.brokers import broker

MAX_TOKENS_PER_BUY = broker("deriv").capabilities["max_orders_per_request"]
PASSTHROUGH_MAX_BYTES = 3500  # Deriv's limit on a request's passthrough

RETRY: Literal["retry"] = "retry"  # the broker refused for now (rate limit): nothing bought
UNKNOWN: Literal["unknown"] = "unknown"  # sent, no answer: reconcile before anything else
Answer = Fill | Literal["retry", "unknown"]


def _late(client_order_id: str, why: str) -> Fill:
    """Past its deadline: ``skipped`` when nothing was ever attempted, else ``failed`` with
    what stood in the way."""
    if why == "expired":
        return Fill(client_order_id, "skipped", why)
    return Fill(client_order_id, "failed", why)


def passthrough_many(orders: list[Order]) -> Json:
    """The tag of a multi-account buy: ``subscription_ids[i]`` belongs to ``tokens[i]`` (the
    client order id is the trade id, ``{signal_id}-{subscription_id}``; not repeating it keeps
    100 tokens within the passthrough's 3500 bytes)."""
    return {
        "signal_id": orders[0].signal_id if orders else "",
        "subscription_ids": [o.subscription_id for o in orders],
    }


class Execution:
    def __init__(self, connections: Connections, answers: Answers, reconciler: Reconciler) -> None:
        self.connections = connections
        self.answers = answers
        self.reconciler = reconciler
        self._buying: Counter[str] = Counter()  # token -> buys sent for it and not answered yet
        self._landed = asyncio.Condition()  # notified whenever a buy's answer has been taken in

    async def buy(self, orders: list[Order]) -> list[Fill]:
        """Place every order; one Fill per order, in order.

        Raises :class:`AmbiguousPurchase` only when some order was sent, went unanswered, and
        the broker could not be asked about it either. The answers already given (placed or
        rejected) stay known to ``find_purchase``, so reconciling every order of the call is
        cheap and loses no refusal reason.
        """
        fills: dict[str, Fill] = {}
        sendable: list[Order] = []
        for order in orders:
            bought = self.answers.get(order.client_order_id)
            if bought is not None and bought.status == "placed":  # never buy an order twice
                fills[order.client_order_id] = bought
            elif order.asset not in SYMBOLS:
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
                    size = len(dumps(passthrough_many([o])))
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
        self.connections.remember(o.account for o in orders)
        while pending:
            now = now_s()
            for o in pending:
                if o.deadline_ms / 1000 <= now:
                    fills[o.client_order_id] = _late(o.client_order_id, why)
            pending = [o for o in pending if o.client_order_id not in fills]
            if not pending:
                break
            deadline = min(o.deadline_ms for o in pending) / 1000
            if attempt:
                await asyncio.sleep(
                    max(0.0, min(self.connections.backoff(attempt), deadline - now_s()))
                )
            attempt += 1
            if now_s() >= deadline:
                continue
            session = self.connections.pick()
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

    async def _send(self, session: Session, sock: Socket, orders: list[Order]) -> dict[str, Answer]:
        """One request for the batch; per order a Fill, RETRY (nothing bought) or UNKNOWN."""
        first = orders[0]
        contract = {
            "contract_type": first.direction,
            "symbol": SYMBOLS[first.asset],
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
                "passthrough": passthrough_many(orders),
            }
        timeout_s = self.connections.settings.reply_timeout_s
        async with self._in_flight([_token(o.account) for o in orders]):
            ensure_fenced(orders)  # LeaseLost: nothing of this request has gone out
            try:
                reply = await sock.call(request, timeout_s)
            except NoAnswer as exc:
                logger.warning("deriv: {} order(s) sent without an answer ({})", len(orders), exc)
                return dict.fromkeys((o.client_order_id for o in orders), UNKNOWN)
            error = reply.get("error")
            if error is not None:
                if error.get("code") in FATAL_CODES:  # refused whole: nothing was bought
                    raise error_of(str(error.get("code")), str(error.get("message")))
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
            async with asyncio.timeout(self.connections.settings.reply_timeout_s), self._landed:
                await self._landed.wait_for(lambda: tokens.isdisjoint(self._buying))

    def _refused(self, session: Session, order: Order, error: Json, message_key: str) -> Answer:
        code = str(error.get("code"))
        if code == "RateLimit":
            self.connections.waited()
            return RETRY
        if code == "AuthorizationRequired":
            session.auth = None  # the session lost its login: authorize again before the next call
        logger.info(
            "deriv: order {} rejected: {} ({})", order.client_order_id, code, error.get(message_key)
        )
        return self._refusal(order, REJECT_REASONS.get(code, "broker_error"))

    def _refusal(self, order: Order, reason: str) -> Fill:
        return self.answers.remember(Fill(order.client_order_id, "rejected", reason))

    def _placed(self, order: Order, receipt: Json) -> Fill:
        return self.answers.remember(
            Fill(
                order.client_order_id,
                "placed",
                contract_id=str(receipt["contract_id"]),
                stake=money(receipt["buy_price"]),
                payout=money(receipt["payout"]),
                # Deriv stamps purchases to the whole second; the receipt's arrival is the finer
                # bound.
                broker_time_ms=max(int(receipt["purchase_time"]) * 1000, int(time.time() * 1000)),
            )
        )

    async def _reconcile(self, orders: list[Order]) -> dict[str, Answer]:
        """Ask the broker about unanswered orders: found -> placed, never bought -> RETRY."""
        await asyncio.sleep(self.connections.settings.reconcile_delay_s)
        await self._quiet({_token(o.account) for o in orders})
        found = await asyncio.gather(
            *map(self.reconciler.find_purchase, orders), return_exceptions=True
        )
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

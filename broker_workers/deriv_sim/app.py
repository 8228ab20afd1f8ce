"""The simulator as an ASGI app: the v3 WebSocket plus an HTTP control API on the same port.

Run with ``uvicorn broker_workers.deriv_sim.app:app --port $DERIV_SIM_PORT`` (or
``python -m broker_workers.deriv_sim``). State lives in this one process, in memory.

Control API (for tests, benchmarks and the demo; never part of the real broker):

- ``POST /_sim/accounts`` ``{token, balance, currency?}``: create or reset an account -> loginid;
  ``{"accounts": [{token, balance, currency?}, ...]}`` does many at once -> ``{created}``.
- ``GET /_sim/accounts``: every account's loginid, balance and currency (no tokens).
- ``GET /_sim/purchases[?since=n]``: every purchase made (after the first ``n``), in order, with
  its passthrough, the simulator's own timestamp (``time``, ms), when its request arrived
  (``received``, ms, before the simulated latency) and from which address (``peer``): a
  partition test tells a cut-off host's purchases by it; ``count`` is the total.
- ``GET|POST /_sim/faults``: read or replace the fault plan (keys: :class:`state.Faults`).
- ``GET /_sim/stats``: connections open now and accepted so far, and ``RateLimit`` answers given
  (each purchase's ``connection`` in the log is the number of the connection it came on).
- ``POST /_sim/reset``: forget everything and drop every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from broker_workers.deriv_sim import api
from broker_workers.deriv_sim.settings import get_settings
from broker_workers.deriv_sim.state import Faults, Plan, SimError, Simulator, money

SIM = Simulator(price_seed=get_settings().price_seed)
CONNECTIONS: set[Connection] = set()


def load_accounts(path: str) -> int:
    """Open the accounts of a JSON file ``{"accounts": [{token, balance, currency?}, ...]}``
    before the first connection, so that workers starting beside the simulator find the demo's
    tokens already valid (``DERIV_SIM_ACCOUNTS``)."""
    with open(path, encoding="utf-8") as file:
        many = orjson.loads(file.read())["accounts"]
    for data in many:
        SIM.upsert_account(*_account_spec(data))
    return len(many)


class Connection:
    """One client socket: messages are planned on arrival, then answered concurrently.

    A message still waiting out its simulated latency when the socket closes is never processed,
    as a request lost with its connection; a purchase already made stays made.
    """

    def __init__(self, ws: WebSocket, sim: Simulator) -> None:
        self.ws, self.sim = ws, sim
        self.session = api.Session(connection=sim.new_connection())
        self.peer = ws.client.host if ws.client is not None else ""
        self.tasks: set[asyncio.Task[None]] = set()
        self.send_lock = asyncio.Lock()
        self.closed = False

    async def run(self) -> None:
        await self.ws.accept()
        CONNECTIONS.add(self)
        try:
            while not self.closed:
                idle = self.sim.faults.idle_timeout_s
                try:
                    message = await asyncio.wait_for(self.ws.receive(), idle or None)
                except TimeoutError:
                    await self.close(1001)
                    break
                if message["type"] == "websocket.disconnect":
                    break
                if self.sim.should_disconnect():
                    await self.close(1011)
                    break
                text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
                self.dispatch(text)
        finally:
            self.closed = True
            CONNECTIONS.discard(self)
            for task in list(self.tasks):
                task.cancel()

    async def close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(RuntimeError, OSError):
                await self.ws.close(code)

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.ws.send_text(orjson.dumps(message).decode())
            except (RuntimeError, OSError):
                self.closed = True

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def dispatch(self, text: str) -> None:
        try:
            request = orjson.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            error = SimError("InputValidationFailed", "Input validation failed: not a JSON object")
            self.spawn(self.send(api.error_reply({}, "error", error)))
            return
        name = api.call_name(request)
        plan = self.sim.plan(api.purchase_count(name, request))
        self.spawn(self.process(request, name, plan, int(time.time() * 1000)))

    async def process(
        self, request: dict[str, Any], name: str | None, plan: Plan, received_ms: int = 0
    ) -> None:
        if plan.delay_s:
            await asyncio.sleep(plan.delay_s)
        if self.closed:
            return
        if name is None:
            error = SimError("UnrecognisedRequest", "Unrecognised request.")
            await self.send(api.error_reply(request, "error", error))
            return
        self.sim.settle_due()
        try:
            api.check_envelope(request, name)
            if name == "proposal_open_contract":
                await self.open_contract(request)
                return
            handler = api.HANDLERS[name]
            assert handler is not None
            bought_before = len(self.sim.purchases)
            body = handler(self.sim, self.session, request, plan)
        except SimError as exc:
            await self.send(api.error_reply(request, name, exc))
            return
        for made in self.sim.purchases[bought_before:]:  # this request's (one event loop)
            made["received"], made["peer"] = received_ms, self.peer
        if plan.drop_reply and len(self.sim.purchases) > bought_before:
            return  # debited, and the answer is lost on the way
        await self.send(api.reply(request, name, body))

    async def open_contract(self, request: dict[str, Any]) -> None:
        name = "proposal_open_contract"
        contracts = api.open_contracts(self.sim, self.session, request)
        if not contracts:
            await self.send(api.reply(request, name, {name: {}}))
            return
        for contract in contracts:
            if request.get("subscribe") != 1:
                body = api.open_contract_body(self.sim, contract)
                await self.send(api.reply(request, name, {name: body}))
                continue
            stream_id = str(uuid.uuid4())
            task = self.spawn(self.stream(request, contract.contract_id, stream_id))
            self.session.streams[stream_id] = (name, task)

    async def stream(self, request: dict[str, Any], contract_id: int, stream_id: str) -> None:
        """Push the contract about once a second until it is sold (settled), then stop."""
        name = "proposal_open_contract"
        try:
            while not self.closed:
                self.sim.settle_due()
                contract = self.sim.contracts[contract_id]
                body = {
                    name: api.open_contract_body(self.sim, contract, stream_id),
                    "subscription": {"id": stream_id},
                }
                await self.send(api.reply(request, name, body))
                if contract.is_sold:
                    break
                await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)
        finally:
            self.session.streams.pop(stream_id, None)


async def websocket_v3(ws: WebSocket) -> None:
    """Any ``?app_id=`` is accepted, as any registered app id would be."""
    await Connection(ws, SIM).run()


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"code": "bad_request", "message": message}}, status)


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


async def accounts(request: Request) -> JSONResponse:
    if request.method == "GET":
        SIM.settle_due()
        return JSONResponse(
            {
                "accounts": [
                    {"loginid": a.loginid, "balance": money(a.balance), "currency": a.currency}
                    for a in SIM.accounts.values()
                ]
            }
        )
    try:
        data = await _body(request)
        bulk = set(data) == {"accounts"}
        many = data["accounts"] if bulk else [data]
        if not isinstance(many, list) or not all(isinstance(d, dict) for d in many):
            raise ValueError("accounts must be a list of account objects")
        specs = [_account_spec(d) for d in many]
    except (ValueError, InvalidOperation) as exc:
        return _error(str(exc))
    created = [SIM.upsert_account(*spec) for spec in specs]
    if bulk:
        return JSONResponse({"created": len(created)}, status_code=201)
    account = created[0]
    return JSONResponse(
        {
            "loginid": account.loginid,
            "balance": money(account.balance),
            "currency": account.currency,
        },
        status_code=201,
    )


def _account_spec(data: dict[str, Any]) -> tuple[str, Decimal, str]:
    token, currency = data.get("token"), data.get("currency", "USD")
    if not isinstance(token, str) or not api._TOKEN.match(token):
        raise ValueError("token must be 1-128 letters, digits, '_' or '-'")
    if not isinstance(currency, str) or not api._CURRENCY.match(currency):
        raise ValueError("currency must be a currency code")
    raw = data.get("balance", 10000)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("balance must be a number")
    balance = Decimal(str(raw))
    if not balance.is_finite() or balance < 0:
        raise ValueError("balance must be a number >= 0")
    return token, balance.quantize(Decimal("0.01")), currency


_ACCOUNTS_FILE = get_settings().accounts_file
if _ACCOUNTS_FILE:
    load_accounts(_ACCOUNTS_FILE)


async def purchases(request: Request) -> JSONResponse:
    """Every purchase, or with ``?since=n`` those after the first ``n`` (``count`` is the total)."""
    try:
        since = max(0, int(request.query_params.get("since", "0")))
    except ValueError:
        return _error("since must be a whole number")
    return JSONResponse({"count": len(SIM.purchases), "purchases": SIM.purchases[since:]})


async def faults(request: Request) -> JSONResponse:
    if request.method == "POST":
        try:
            SIM.set_faults(Faults.from_json(await _body(request)))
        except (TypeError, ValueError) as exc:
            return _error(str(exc))
    return JSONResponse(asdict(SIM.faults))


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "connections_open": len(CONNECTIONS),
            "connections_accepted": SIM.connections_accepted,
            "rate_limited": SIM.rate_limited,
        }
    )


async def reset(request: Request) -> JSONResponse:
    SIM.reset()
    for connection in list(CONNECTIONS):
        await connection.close(1012)
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        WebSocketRoute("/websockets/v3", websocket_v3),
        Route("/_sim/accounts", accounts, methods=["GET", "POST"]),
        Route("/_sim/purchases", purchases, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET", "POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]
)

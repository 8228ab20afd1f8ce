"""The Deriv API v3 calls the simulator answers: request in, reply body out, or a SimError.

Shapes follow the published schemas (``deriv-api-docs/config/v3/<call>/{send,receive}.json``):
unknown properties are refused as the real API refuses them, sensitive fields are masked in
``echo_req``, and a multi-account buy answers per token, receipts and errors side by side.
Streams (``proposal_open_contract`` with ``subscribe``) live in :mod:`.app`; this module is sync.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from broker_workers import price_feed
from broker_workers.deriv_sim.state import (
    CENT,
    DISPLAY_NAMES,
    MAX_DURATION_S,
    MAX_STAKE,
    MIN_STAKE,
    SYMBOLS,
    Account,
    Contract,
    Plan,
    SimError,
    Simulator,
    money,
    now_ms,
    payout_rate,
)

Json = dict[str, Any]
PASSTHROUGH_MAX_BYTES = 3500
MAX_TOKENS_PER_BUY = 100
MAX_EXTRA_TOKENS = 10
NOT_SHOWN = "<not shown>"
SENSITIVE = ("authorize", "tokens")

# Every contract type the real schema accepts; only rise/fall (CALL/PUT) is offered here.
_TYPES = """MULTUP MULTDOWN UPORDOWN EXPIRYRANGE ONETOUCH CALLE LBHIGHLOW ASIAND EXPIRYRANGEE
DIGITDIFF DIGITMATCH DIGITOVER PUTE DIGITUNDER NOTOUCH CALL RANGE LBFLOATPUT DIGITODD PUT ASIANU
LBFLOATCALL EXPIRYMISSE EXPIRYMISS DIGITEVEN TICKHIGH TICKLOW RESETCALL RESETPUT CALLSPREAD
PUTSPREAD RUNHIGH RUNLOW ACCU VANILLALONGCALL VANILLALONGPUT TURBOSLONG TURBOSSHORT"""
CONTRACT_TYPES = frozenset(_TYPES.split())
PARAMS_OFFERED = {"amount", "basis", "contract_type", "currency", "duration", "duration_unit"}
PARAMS_OFFERED |= {"symbol", "product_type", "app_markup_percentage"}
PARAMS_NOT_OFFERED = {"barrier", "barrier2", "barrier_range", "cancellation", "date_expiry"}
PARAMS_NOT_OFFERED |= {"date_start", "growth_rate", "limit_order", "multiplier", "selected_tick"}
PARAMS_NOT_OFFERED |= {"trading_period_start"}
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "t": 1}  # one simulated tick per second

INJECTED_MESSAGES = {
    "InvalidToken": "The token is invalid.",
    "AuthorizationRequired": "Please log in.",
    "InsufficientBalance": "Your account balance is insufficient to buy this contract.",
    "RateLimit": "You have reached the rate limit for buy.",
    "MarketIsClosed": "This market is presently closed.",
    "ContractBuyValidationError": "This contract is unavailable on this account.",
    "OfferingsValidationError": "Trading is not offered for this asset.",
    "PriceMoved": "The underlying market has moved too much since you priced the contract.",
    "InvalidContractProposal": "Proposal ID is invalid or has expired.",
    "InputValidationFailed": "Input validation failed: parameters",
    "ContractCreationFailure": "Cannot create contract",
}

_TOKEN = re.compile(r"^[\w\-]{1,128}$")
_BUY_ID = re.compile(r"^(?:[\w-]{32,128}|1)$")
_SYMBOL = re.compile(r"^\w{2,30}$")
_CURRENCY = re.compile(r"^[a-zA-Z0-9]{2,20}$")
_LOGINID = re.compile(r"^[A-Za-z]+[0-9]+$")


@dataclass(frozen=True)
class Spec:
    """A validated rise/fall contract request."""

    symbol: str
    contract_type: str
    stake: Decimal
    duration_s: int
    currency: str


@dataclass
class Session:
    """One connection's view: who is authorized, its proposals, its rate window, its streams."""

    connection: int = 0  # the simulator's number for the connection, kept in the purchase log
    authorized: dict[str, Account] = field(default_factory=dict)  # loginid -> account
    primary: str | None = None
    proposals: dict[str, Spec] = field(default_factory=dict)
    call_times: deque[float] = field(default_factory=deque)
    streams: dict[str, tuple[str, asyncio.Task[None]]] = field(default_factory=dict)

    def account(self, request: Json) -> Account:
        """The account a call acts on: ``loginid`` if given, else the first authorized one."""
        if self.primary is None:
            raise SimError("AuthorizationRequired", "Please log in.")
        loginid = request.get("loginid", self.primary)
        if not isinstance(loginid, str) or not _LOGINID.match(loginid):
            raise invalid("loginid")
        if loginid not in self.authorized:
            raise SimError("PermissionDenied", "Permission denied, the loginid is not authorized.")
        return self.authorized[loginid]

    def rate_limit(self, sim: Simulator, call: str) -> None:
        """Per-connection sliding minute over buy, multi-account buy and proposal."""
        limit = sim.faults.buys_per_minute
        if limit <= 0:
            return
        now = time.monotonic()
        while self.call_times and now - self.call_times[0] >= 60:
            self.call_times.popleft()
        if len(self.call_times) >= limit:
            sim.rate_limited += 1
            raise SimError("RateLimit", f"You have reached the rate limit for {call}.")
        self.call_times.append(now)


def invalid(name: str, problem: str = "Invalid value.") -> SimError:
    return SimError("InputValidationFailed", f"Input validation failed: {name}", {name: problem})


# -- envelopes -------------------------------------------------------------------------------


def echo(request: Json) -> Json:
    return {k: (NOT_SHOWN if k in SENSITIVE else v) for k, v in request.items()}


def reply(request: Json, msg_type: str, body: Json) -> Json:
    message = {**body, "echo_req": echo(request), "msg_type": msg_type}
    if isinstance(request.get("req_id"), int):
        message["req_id"] = request["req_id"]
    return message


def error_reply(request: Json, msg_type: str, error: SimError) -> Json:
    err: Json = {"code": error.code, "message": error.message}
    if error.details:
        err["details"] = error.details
    return reply(request, msg_type, {"error": err})


def call_name(request: Json) -> str | None:
    return next((name for name in HANDLERS if name in request), None)


def check_envelope(request: Json, name: str) -> None:
    """Refuse what the real schemas refuse: unknown properties, a bad req_id, a huge passthrough."""
    extra = sorted(set(request) - ALLOWED[name] - {"passthrough", "req_id"})
    if extra:
        raise SimError(
            "InputValidationFailed",
            f"Input validation failed: Properties not allowed: {', '.join(extra)}.",
        )
    if "req_id" in request and not _is_int(request["req_id"]):
        raise invalid("req_id")
    if "passthrough" in request:
        passthrough = request["passthrough"]
        if not isinstance(passthrough, dict):
            raise invalid("passthrough")
        if len(json.dumps(passthrough, separators=(",", ":"))) > PASSTHROUGH_MAX_BYTES:
            raise invalid("passthrough", f"Maximum size is {PASSTHROUGH_MAX_BYTES} bytes.")


def purchase_count(name: str | None, request: Json) -> int:
    """How many purchases a message may make: what the fault plan draws for, at arrival."""
    if name == "buy":
        return 1
    if name == "buy_contract_for_multiple_accounts" and isinstance(request.get("tokens"), list):
        return len(request["tokens"])
    return 0


# -- validation ------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, "Please enter a number.")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise invalid(name, "Please enter a number.") from exc
    if number < 0:
        raise invalid(name, "Must be at least 0.")
    return number


def contract_spec(params: Json, account: Account | None) -> Spec:
    """Validate rise/fall parameters the way the API does: schema first, then the offering."""
    for name in sorted(params):
        if name in PARAMS_NOT_OFFERED:
            raise SimError("OfferingsValidationError", f"{name} is not offered for this contract.")
        if name not in PARAMS_OFFERED:
            raise SimError(
                "InputValidationFailed", f"Input validation failed: Properties not allowed: {name}."
            )
    for name in ("contract_type", "currency", "symbol"):
        if name not in params:
            raise invalid(name, "Missing required parameter.")
    contract_type, symbol, currency = params["contract_type"], params["symbol"], params["currency"]
    if contract_type not in CONTRACT_TYPES:
        raise invalid("contract_type")
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise invalid("symbol")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise invalid("currency")
    unit = params.get("duration_unit", "s")
    if unit not in ("d", *UNIT_SECONDS):
        raise invalid("duration_unit")
    duration = params.get("duration")
    if duration is not None and (not _is_int(duration) or not 0 <= duration <= 99999999):
        raise invalid("duration")
    if "amount" not in params:
        raise SimError("ContractBuyValidationError", "Please enter a stake amount.")
    stake = _number(params["amount"], "amount")
    if params.get("basis", "stake") not in ("payout", "stake"):
        raise invalid("basis")

    if symbol not in SYMBOLS:
        raise SimError("OfferingsValidationError", "Trading is not offered for this asset.")
    if contract_type not in ("CALL", "PUT"):
        raise SimError("OfferingsValidationError", "Trading is not offered for this contract type.")
    if params.get("basis", "stake") != "stake":
        raise SimError("OfferingsValidationError", "Only stake-based contracts are offered.")
    if duration is None:
        raise SimError("ContractBuyValidationError", "Please specify the contract duration.")
    if unit == "d" or (unit == "t" and not 1 <= duration <= 10):
        raise SimError("OfferingsValidationError", "Trading is not offered for this duration.")
    duration_s = duration * UNIT_SECONDS[unit]
    if not 1 <= duration_s <= MAX_DURATION_S:
        raise SimError("OfferingsValidationError", "Trading is not offered for this duration.")
    if stake != stake.quantize(CENT):
        raise SimError(
            "ContractBuyValidationError", "Stake can not have more than 2 decimal places."
        )
    if stake < MIN_STAKE:
        raise SimError(
            "ContractBuyValidationError",
            f"Please enter a stake amount that's at least {MIN_STAKE}.",
        )
    if stake > MAX_STAKE:
        raise SimError("ContractBuyValidationError", f"Maximum stake allowed is {MAX_STAKE:.2f}.")
    if account is not None:
        check_currency(account, currency)
    return Spec(symbol, contract_type, stake, duration_s, currency)


def check_currency(account: Account, currency: str) -> None:
    if currency != account.currency:
        raise SimError(
            "ContractBuyValidationError",
            f"Invalid currency, this account trades {account.currency}.",
        )


def check_market(sim: Simulator, spec: Spec) -> None:
    if spec.symbol in sim.faults.closed_symbols:
        raise SimError("MarketIsClosed", "This market is presently closed.")


def check_price(request: Json, spec: Spec) -> None:
    if "price" not in request:
        raise invalid("price", "Missing required parameter.")
    price = _number(request["price"], "price")
    if price < spec.stake:
        raise SimError(
            "PriceMoved",
            "The underlying market has moved too much since you priced the contract. The contract "
            f"price has changed from {price:.2f} {spec.currency} to {spec.stake:.2f} "
            f"{spec.currency}.",
        )


def injected(code: str | None) -> None:
    if code is not None:
        raise SimError(code, INJECTED_MESSAGES.get(code, "Sorry, an error occurred."))


def _purchase_spec(session: Session, request: Json, field_name: str) -> Spec:
    """Either ``"1"`` with ``parameters``, or the id of an earlier ``proposal`` on this socket."""
    buy_id = request.get(field_name)
    if not isinstance(buy_id, str) or not _BUY_ID.match(buy_id):
        raise invalid(field_name)
    if buy_id != "1":
        spec = session.proposals.get(buy_id)
        if spec is None:
            raise SimError("InvalidContractProposal", "Proposal ID is invalid or has expired.")
        return spec
    params = request.get("parameters")
    if not isinstance(params, dict):
        raise invalid("parameters", "Missing required parameter.")
    return contract_spec(params, None)


# -- calls -----------------------------------------------------------------------------------


def authorize(sim: Simulator, session: Session, request: Json, plan: Plan) -> Json:
    token, extra = request["authorize"], request.get("tokens", [])
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise invalid("authorize")
    if not isinstance(extra, list) or len(extra) > MAX_EXTRA_TOKENS:
        raise invalid("tokens", f"At most {MAX_EXTRA_TOKENS} additional tokens.")
    accounts = [sim.accounts.get(t) if isinstance(t, str) else None for t in [token, *extra]]
    if any(a is None for a in accounts):
        raise SimError("InvalidToken", "The token is invalid.")
    found = [a for a in accounts if a is not None]
    session.authorized = {a.loginid: a for a in found}
    session.primary = found[0].loginid
    me = found[0]
    return {
        "authorize": {
            "account_list": [
                {
                    "account_type": "trading",
                    "created_at": a.created_at // 1000,
                    "currency": a.currency,
                    "is_disabled": 0,
                    "is_virtual": 1,
                    "landing_company_name": "virtual",
                    "loginid": a.loginid,
                }
                for a in found
            ],
            "balance": money(me.balance),
            "country": "",
            "currency": me.currency,
            "email": f"{me.loginid.lower()}@sim.invalid",
            "fullname": "",
            "is_virtual": 1,
            "landing_company_fullname": "Deriv Limited",
            "landing_company_name": "virtual",
            "loginid": me.loginid,
            "preferred_language": "EN",
            "scopes": ["read", "trade", "trading_information"],
            "upgradeable_landing_companies": [],
            "user_id": int(me.loginid[4:]),
        }
    }


def balance(sim: Simulator, session: Session, request: Json, plan: Plan) -> Json:
    account = session.account(request)
    return {
        "balance": {
            "balance": money(account.balance),
            "currency": account.currency,
            "loginid": account.loginid,
        }
    }


def proposal(sim: Simulator, session: Session, request: Json, plan: Plan) -> Json:
    account = session.account(request) if session.primary else None
    session.rate_limit(sim, "proposal")
    params = {k: v for k, v in request.items() if k in PARAMS_OFFERED | PARAMS_NOT_OFFERED}
    spec = contract_spec(params, account)
    check_market(sim, spec)
    proposal_id = str(uuid.uuid4())
    session.proposals[proposal_id] = spec
    at = now_ms()
    payout = spec.stake * (1 + payout_rate(spec.symbol))
    body: Json = {
        "proposal": {
            "ask_price": money(spec.stake),
            "date_expiry": at // 1000 + spec.duration_s,
            "date_start": at // 1000,
            "display_value": f"{spec.stake:.2f}",
            "id": proposal_id,
            "longcode": f"Win payout if {spec.symbol} moves your way over {spec.duration_s}s.",
            "payout": money(payout),
            "spot": price_feed.price(SYMBOLS[spec.symbol], at, sim.price_seed),
            "spot_time": at // 1000,
        }
    }
    if request.get("subscribe") == 1:
        body["subscription"] = {"id": proposal_id}
    return body


def buy(sim: Simulator, session: Session, request: Json, plan: Plan) -> Json:
    account = session.account(request)
    session.rate_limit(sim, "buy")
    spec = _purchase_spec(session, request, "buy")
    check_currency(account, spec.currency)
    check_market(sim, spec)
    check_price(request, spec)
    injected(plan.errors[0] if plan.errors else None)
    contract = sim.purchase(
        account,
        spec.symbol,
        spec.contract_type,
        spec.stake,
        spec.duration_s,
        token=account.token,
        call="buy",
        passthrough=request.get("passthrough"),
        connection=session.connection,
    )
    return {"buy": {**receipt(contract), "balance_after": money(account.balance)}}


def buy_contract_for_multiple_accounts(
    sim: Simulator, session: Session, request: Json, plan: Plan
) -> Json:
    session.account(request)  # the session must be authorized, though it buys for the tokens
    session.rate_limit(sim, "buy_contract_for_multiple_accounts")
    tokens = request.get("tokens")
    if not isinstance(tokens, list) or not tokens or len(tokens) > MAX_TOKENS_PER_BUY:
        raise invalid("tokens", f"Between 1 and {MAX_TOKENS_PER_BUY} tokens.")
    if not all(isinstance(t, str) and _TOKEN.match(t) for t in tokens):
        raise invalid("tokens")
    spec = _purchase_spec(session, request, "buy_contract_for_multiple_accounts")
    check_market(sim, spec)
    check_price(request, spec)
    results: list[Json] = []
    for index, token in enumerate(tokens):
        try:
            account = sim.accounts.get(token)
            if account is None:
                raise SimError("InvalidToken", "Invalid token")
            check_currency(account, spec.currency)
            injected(plan.errors[index] if index < len(plan.errors) else None)
            contract = sim.purchase(
                account,
                spec.symbol,
                spec.contract_type,
                spec.stake,
                spec.duration_s,
                token=token,
                call="buy_contract_for_multiple_accounts",
                passthrough=request.get("passthrough"),
                token_index=index,
                connection=session.connection,
            )
        except SimError as exc:
            results.append({"code": exc.code, "message_to_client": exc.message, "token": token})
        else:
            results.append({**receipt(contract), "token": token})
    return {"buy_contract_for_multiple_accounts": {"result": results}}


def receipt(c: Contract) -> Json:
    return {
        "buy_price": money(c.stake),
        "contract_id": c.contract_id,
        "longcode": c.longcode,
        "payout": money(c.payout),
        "purchase_time": c.purchase_ms // 1000,
        "shortcode": c.shortcode,
        "start_time": c.start,
        "transaction_id": c.buy_transaction_id,
    }


def open_contracts(sim: Simulator, session: Session, request: Json) -> list[Contract]:
    """What ``proposal_open_contract`` reports on: one contract, or every open one."""
    account = session.account(request)
    if "contract_id" in request:
        if not _is_int(request["contract_id"]):
            raise invalid("contract_id")
        c = sim.contracts.get(request["contract_id"])
        return [c] if c is not None and c.loginid == account.loginid else []
    return [c for c in sim.contracts.values() if c.loginid == account.loginid and not c.is_sold]


def open_contract_body(sim: Simulator, c: Contract, stream_id: str | None = None) -> Json:
    at = now_ms()
    spot_at = min(at, c.expiry * 1000) if not c.is_sold else c.expiry * 1000
    spot = price_feed.price(c.asset, spot_at, sim.price_seed)
    value = c.sell_price if c.sell_price is not None else c.stake
    body: Json = {
        "account_id": int(c.loginid[4:]),
        "barrier": None,
        "barrier_count": 1,
        "bid_price": money(value),
        "buy_price": money(c.stake),
        "contract_id": c.contract_id,
        "contract_type": c.contract_type,
        "currency": c.currency,
        "current_spot": spot,
        "current_spot_time": spot_at // 1000,
        "date_expiry": c.expiry,
        "date_settlement": c.expiry,
        "date_start": c.start,
        "display_name": DISPLAY_NAMES[c.symbol],
        "entry_spot": c.entry,
        "entry_tick": c.entry,
        "entry_tick_time": c.start,
        "expiry_time": c.expiry,
        "is_expired": int(at // 1000 >= c.expiry),
        "is_forward_starting": 0,
        "is_intraday": 1,
        "is_path_dependent": 0,
        "is_settleable": int(at // 1000 >= c.expiry),
        "is_sold": int(c.is_sold),
        "is_valid_to_cancel": 0,
        "is_valid_to_sell": 0,
        "longcode": c.longcode,
        "payout": money(c.payout),
        "profit": money(value - c.stake),
        "profit_percentage": float(((value - c.stake) / c.stake * 100).quantize(Decimal("0.01"))),
        "purchase_time": c.purchase_ms // 1000,
        "shortcode": c.shortcode,
        "status": c.status,
        "transaction_ids": {"buy": c.buy_transaction_id},
        "underlying": c.symbol,
    }
    if c.is_sold and c.exit is not None:
        body |= {
            "exit_tick": c.exit,
            "exit_tick_time": c.expiry,
            "sell_price": money(value),
            "sell_spot": c.exit,
            "sell_spot_time": c.expiry,
            "sell_time": c.expiry,
            "transaction_ids": {"buy": c.buy_transaction_id, "sell": c.sell_transaction_id},
        }
    if stream_id is not None:
        body["id"] = stream_id
    return body


def _epoch(value: Any, name: str) -> int:
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        except ValueError:
            pass
    raise invalid(name)


def _page(request: Json, items: list[Json], default: int, maximum: int) -> list[Json]:
    limit, offset = request.get("limit", default), request.get("offset", 0)
    if not isinstance(limit, int | float) or not 0 <= limit <= maximum:
        raise invalid("limit")
    if not _is_int(offset) or offset < 0:
        raise invalid("offset")
    return items[offset : offset + int(limit)]


def _window(request: Json) -> Callable[[int], bool]:
    lo = _epoch(request["date_from"], "date_from") if "date_from" in request else 0
    hi = _epoch(request["date_to"], "date_to") if "date_to" in request else 2**40
    return lambda t: lo <= t <= hi


def profit_table(sim: Simulator, session: Session, request: Json) -> Json:
    account = session.account(request)
    within, types = _window(request), request.get("contract_type")
    sold = [
        c
        for c in sim.contracts.values()
        if c.loginid == account.loginid
        and c.is_sold
        and within(c.expiry)
        and (not types or c.contract_type in types)
    ]
    sold.sort(key=lambda c: (c.expiry, c.contract_id), reverse=request.get("sort") != "ASC")
    rows: list[Json] = []
    for c in sold:
        row: Json = {
            "app_id": None,
            "buy_price": money(c.stake),
            "contract_id": c.contract_id,
            "duration_type": "seconds",
            "payout": money(c.payout),
            "purchase_time": c.purchase_ms // 1000,
            "sell_price": money(c.sell_price or Decimal(0)),
            "sell_time": c.expiry,
            "transaction_id": c.buy_transaction_id,
        }
        if request.get("description") == 1:
            row |= {"longcode": c.longcode, "shortcode": c.shortcode}
        rows.append(row)
    page = _page(request, rows, 50, 500)
    return {"profit_table": {"count": len(page), "transactions": page}}


def portfolio(sim: Simulator, session: Session, request: Json) -> Json:
    account = session.account(request)
    types = request.get("contract_type")
    contracts = [
        {
            "app_id": None,
            "buy_price": money(c.stake),
            "contract_id": c.contract_id,
            "contract_type": c.contract_type,
            "currency": c.currency,
            "date_start": c.start,
            "expiry_time": c.expiry,
            "longcode": c.longcode,
            "payout": money(c.payout),
            "purchase_time": c.purchase_ms // 1000,
            "shortcode": c.shortcode,
            "symbol": c.symbol,
            "transaction_id": c.buy_transaction_id,
        }
        for c in sim.contracts.values()
        if c.loginid == account.loginid
        and not c.is_sold
        and (not types or c.contract_type in types)
    ]
    return {"portfolio": {"contracts": contracts}}


def statement(sim: Simulator, session: Session, request: Json) -> Json:
    account = session.account(request)
    within, action = _window(request), request.get("action_type")
    rows: list[Json] = []
    for t in sorted(account.transactions, key=lambda t: (t.time, t.transaction_id), reverse=True):
        if not within(t.time) or (action and t.action_type != action):
            continue
        row: Json = {
            "action_type": t.action_type,
            "amount": money(t.amount),
            "app_id": None,
            "balance_after": money(t.balance_after),
            "contract_id": t.contract_id,
            "transaction_id": t.transaction_id,
            "transaction_time": t.time,
        }
        c = sim.contracts.get(t.contract_id) if t.contract_id is not None else None
        if c is not None:
            row["payout"] = money(c.payout)
            if t.action_type == "sell":
                row |= {
                    "purchase_time": c.purchase_ms // 1000,
                    "reference_id": c.buy_transaction_id,
                }
            if request.get("description") == 1:
                row |= {"longcode": c.longcode, "shortcode": c.shortcode}
        rows.append(row)
    page = _page(request, rows, 100, 999)
    return {"statement": {"count": len(page), "transactions": page}}


def forget(sim: Simulator, session: Session, request: Json) -> Json:
    stream = session.streams.pop(str(request["forget"]), None)
    if stream is not None:
        stream[1].cancel()
    return {"forget": int(stream is not None)}


def forget_all(sim: Simulator, session: Session, request: Json) -> Json:
    kinds = request["forget_all"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        raise invalid("forget_all")
    gone = [sid for sid, (kind, _) in session.streams.items() if kind in kinds]
    for sid in gone:
        session.streams.pop(sid)[1].cancel()
    return {"forget_all": gone}


def ping(sim: Simulator, session: Session, request: Json) -> Json:
    return {"ping": "pong"}


def server_time(sim: Simulator, session: Session, request: Json) -> Json:
    return {"time": now_ms() // 1000}


def website_status(sim: Simulator, session: Session, request: Json) -> Json:
    def limit(applies_to: str, minutely: int, hourly: int) -> Json:
        return {"applies_to": applies_to, "hourly": hourly, "minutely": minutely}

    # Deriv's documented budgets per connection, onto the schema's three keyed groups:
    # pricing = proposal, proposal_open_contract, buy, sell (360/min, 14,400/h); outcome =
    # portfolio, profit_table (30/min, 1,500/h; the old outcome group's 1,500/h); general = the
    # rest (220/min, 14,400/h). balance and statement (100/min, 2,000/h) have no key of their own
    # in the schema (no extra properties allowed), so they are not reported; ping is in no budget.
    trading = "proposal, proposal_open_contract, buy and sell"
    return {
        "website_status": {
            "api_call_limits": {
                "max_proposal_subscription": {"applies_to": "subscribing to proposal", "max": 5},
                "max_requestes_general": limit("rest of calls", 220, 14400),
                "max_requests_outcome": limit("portfolio and profit_table", 30, 1500),
                "max_requests_pricing": limit(trading, sim.faults.buy_limit_per_minute, 14400),
            },
            "currencies_config": {
                "USD": {
                    "fractional_digits": 2,
                    "is_deposit_suspended": 0,
                    "is_suspended": 0,
                    "is_withdrawal_suspended": 0,
                    "name": "US Dollar",
                    "stake_default": 10,
                    "transfer_between_accounts": {"fees": {}, "limits": {"min": 1, "max": 2500}},
                    "type": "fiat",
                }
            },
            "site_status": "up",
            "supported_languages": ["EN"],
        }
    }


Handler = Callable[[Simulator, Session, Json, Plan], Json]


def _no_plan(fn: Callable[[Simulator, Session, Json], Json]) -> Handler:
    return lambda sim, session, request, plan: fn(sim, session, request)


# Call name -> handler; ``proposal_open_contract`` is answered by the connection (it may stream).
HANDLERS: dict[str, Handler | None] = {
    "authorize": authorize,
    "balance": balance,
    "buy_contract_for_multiple_accounts": buy_contract_for_multiple_accounts,
    "buy": buy,
    "proposal_open_contract": None,
    "proposal": proposal,
    "profit_table": _no_plan(profit_table),
    "portfolio": _no_plan(portfolio),
    "statement": _no_plan(statement),
    "forget_all": _no_plan(forget_all),
    "forget": _no_plan(forget),
    "ping": _no_plan(ping),
    "time": _no_plan(server_time),
    "website_status": _no_plan(website_status),
}
ALLOWED: dict[str, set[str]] = {
    "authorize": {"authorize", "add_to_login_history", "tokens"},
    "balance": {"balance", "account", "subscribe", "loginid"},
    "buy_contract_for_multiple_accounts": {
        "buy_contract_for_multiple_accounts",
        "price",
        "parameters",
        "tokens",
        "loginid",
    },
    "buy": {"buy", "price", "parameters", "subscribe", "loginid"},
    "proposal_open_contract": {"proposal_open_contract", "contract_id", "subscribe", "loginid"},
    "proposal": {"proposal", "subscribe", "loginid"} | PARAMS_OFFERED | PARAMS_NOT_OFFERED,
    "profit_table": {"profit_table", "contract_type", "date_from", "date_to", "description"}
    | {"limit", "offset", "sort", "loginid"},
    "portfolio": {"portfolio", "contract_type", "loginid"},
    "statement": {"statement", "action_type", "date_from", "date_to", "description", "limit"}
    | {"offset", "loginid"},
    "forget_all": {"forget_all"},
    "forget": {"forget"},
    "ping": {"ping"},
    "time": {"time"},
    "website_status": {"website_status", "subscribe"},
}

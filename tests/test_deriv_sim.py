"""The Deriv simulator, spoken to directly: v3 messages over a real socket, answers checked
against the published receive schemas (tests/deriv_schemas), faults through the control API."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from broker_workers import price_feed
from broker_workers.deriv_sim.process import RunningSimulator
from tests.procs import SIM_SEED as SEED

SCHEMAS = {
    p.stem: jsonschema.Draft4Validator(json.loads(p.read_text()))
    for p in (Path(__file__).parent / "deriv_schemas").glob("*.json")
}
R100_CALL = {
    "contract_type": "CALL",
    "symbol": "R_100",
    "duration": 60,
    "duration_unit": "s",
    "basis": "stake",
    "amount": 0.35,
    "currency": "USD",
}


def check_schema(message: dict[str, Any]) -> None:
    """Every answer must match its documented shape; errors match the error envelope."""
    name = "error" if "error" in message else message["msg_type"]
    SCHEMAS[name].validate(message)


class Client:
    """A bare v3 client: numbered requests, every answer schema-checked."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def recv(self, timeout: float = 15) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        check_schema(message)
        return message

    async def send(self, request: dict[str, Any]) -> int:
        req_id = next(self.ids)
        await self.ws.send(json.dumps({**request, "req_id": req_id}))
        return req_id

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        req_id = await self.send(request)
        while True:
            message = await self.recv()
            if message.get("req_id") == req_id:
                return message


@pytest.fixture
async def client(sim: RunningSimulator, http: httpx.AsyncClient) -> AsyncIterator[Client]:
    async with connect(f"{sim.ws_url}?app_id=1089") as ws:
        yield Client(ws)


async def account(http: httpx.AsyncClient, token: str, balance: float = 100) -> str:
    response = await http.post("/_sim/accounts", json={"token": token, "balance": balance})
    assert response.status_code == 201
    return str(response.json()["loginid"])


async def purchases(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await http.get("/_sim/purchases")).json()["purchases"])


async def faults(http: httpx.AsyncClient, **plan: Any) -> None:
    response = await http.post("/_sim/faults", json=plan)
    assert response.status_code == 200, response.text


def buy(**params: Any) -> dict[str, Any]:
    parameters = {**R100_CALL, **params}
    return {"buy": "1", "price": parameters["amount"], "parameters": parameters}


async def test_calls_before_authorize_and_bad_tokens(
    client: Client, http: httpx.AsyncClient
) -> None:
    for request in (
        {"balance": 1},
        buy(),
        {"statement": 1},
        {"portfolio": 1},
        {"profit_table": 1},
        {"proposal_open_contract": 1, "contract_id": 1},
        {
            "buy_contract_for_multiple_accounts": "1",
            "price": 1,
            "parameters": R100_CALL,
            "tokens": ["a"],
        },
    ):
        answer = await client.call(request)
        assert answer["error"]["code"] == "AuthorizationRequired", request
    assert (await client.call({"authorize": "nobody"}))["error"]["code"] == "InvalidToken"
    for public in ({"ping": 1}, {"time": 1}, {"website_status": 1}):
        assert "error" not in await client.call(public)
    assert (await client.call({"hello": 1}))["error"]["code"] == "UnrecognisedRequest"
    await client.ws.send("not json")
    assert (await client.recv())["error"]["code"] == "InputValidationFailed"


async def test_authorize_single_and_multi_token(client: Client, http: httpx.AsyncClient) -> None:
    first = await account(http, "tok-first", 100)
    second = await account(http, "tok-second", 50)
    answer = await client.call({"authorize": "tok-first", "passthrough": {"k": "v"}})
    assert answer["authorize"]["loginid"] == first
    assert answer["authorize"]["balance"] == 100
    assert answer["echo_req"]["authorize"] != "tok-first"  # sensitive fields are not echoed
    assert answer["echo_req"]["passthrough"] == {"k": "v"}
    assert answer["req_id"] == 1

    both = await client.call({"authorize": "tok-first", "tokens": ["tok-second"]})
    assert [a["loginid"] for a in both["authorize"]["account_list"]] == [first, second]
    assert "tok-second" not in json.dumps(both["echo_req"])
    other = await client.call({"balance": 1, "loginid": second})
    assert other["balance"] == {"balance": 50, "currency": "USD", "loginid": second}
    too_many = await client.call({"authorize": "tok-first", "tokens": ["tok-second"] * 11})
    assert too_many["error"]["code"] == "InputValidationFailed"


async def test_buy_keeps_stake_decimals_and_records_the_purchase(
    client: Client, http: httpx.AsyncClient
) -> None:
    loginid = await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    tag = {"client_order_id": "t-1", "signal_id": "s-1", "subscription_id": "u-1"}
    answer = await client.call({**buy(amount=0.35), "passthrough": tag})
    receipt = answer["buy"]
    assert receipt["buy_price"] == 0.35
    assert receipt["balance_after"] == 9.65
    assert receipt["payout"] == 0.68  # 0.35 * 1.95, synthetic index rate
    assert answer["echo_req"]["passthrough"] == tag
    [made] = await purchases(http)
    assert made | {"time": 0, "received": 0} == {
        "call": "buy",
        "token": "tok-a",
        "token_index": None,
        "connection": 1,  # the first connection since the reset
        "loginid": loginid,
        "contract_id": receipt["contract_id"],
        "passthrough": tag,
        "symbol": "R_100",
        "contract_type": "CALL",
        "amount": 0.35,
        "time": 0,
        "received": 0,
        "peer": "127.0.0.1",
    }
    assert made["time"] // 1000 == receipt["purchase_time"]
    assert 0 < made["received"] <= made["time"]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (buy(amount=0.34), "ContractBuyValidationError"),
        (buy(amount=0.355), "ContractBuyValidationError"),
        (buy(amount=50), "InsufficientBalance"),
        (buy(currency="EUR"), "ContractBuyValidationError"),
        (buy(symbol="frxXAUUSD"), "OfferingsValidationError"),
        (buy(contract_type="DIGITEVEN"), "OfferingsValidationError"),
        (buy(contract_type="UPWARDS"), "InputValidationFailed"),
        (buy(duration_unit="d", duration=1), "OfferingsValidationError"),
        (buy(barrier="+0.1"), "OfferingsValidationError"),
        ({**buy(), "price": 0.3}, "PriceMoved"),
        ({**buy(), "colour": "blue"}, "InputValidationFailed"),
        ({**buy(), "passthrough": {"x": "y" * 3600}}, "InputValidationFailed"),
        ({"buy": "f" * 32, "price": 1}, "InvalidContractProposal"),
        ({"buy": "1", "price": 1}, "InputValidationFailed"),
    ],
)
async def test_buy_refusals(
    client: Client, http: httpx.AsyncClient, request_: dict[str, Any], code: str
) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    answer = await client.call(request_)
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert answer["msg_type"] == "buy"
    assert await purchases(http) == []


async def test_proposal_then_buy_by_id(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    params = {k: v for k, v in R100_CALL.items()}
    offer = (await client.call({"proposal": 1, **params}))["proposal"]
    assert offer["ask_price"] == 0.35
    moved = await client.call({"buy": offer["id"], "price": 0.2})
    assert moved["error"]["code"] == "PriceMoved"
    bought = await client.call({"buy": offer["id"], "price": offer["ask_price"]})
    assert bought["buy"]["buy_price"] == 0.35


async def test_multi_account_buy_answers_per_token(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-session", 10)
    rich = await account(http, "tok-rich", 10)
    await account(http, "tok-poor", 0.1)
    await client.call({"authorize": "tok-session"})
    answer = await client.call(
        {
            "buy_contract_for_multiple_accounts": "1",
            "price": 0.35,
            "parameters": R100_CALL,
            "tokens": ["tok-rich", "tok-poor", "tok-ghost"],
            "passthrough": {"client_order_ids": ["a", "b", "c"]},
        }
    )
    rich_r, poor_r, ghost_r = answer["buy_contract_for_multiple_accounts"]["result"]
    assert rich_r["token"] == "tok-rich"
    assert rich_r["buy_price"] == 0.35
    assert poor_r == {
        "code": "InsufficientBalance",
        "message_to_client": poor_r["message_to_client"],
        "token": "tok-poor",
    }
    assert ghost_r["code"] == "InvalidToken"
    [made] = await purchases(http)
    assert (made["loginid"], made["token_index"]) == (rich, 0)
    assert made["passthrough"]["client_order_ids"][made["token_index"]] == "a"


async def test_contract_streams_until_settled_and_credits_once(
    client: Client, http: httpx.AsyncClient
) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    receipt = (await client.call(buy(duration=2, contract_type="PUT")))["buy"]
    contract_id = receipt["contract_id"]
    open_now = await client.call({"portfolio": 1})
    assert [c["contract_id"] for c in open_now["portfolio"]["contracts"]] == [contract_id]

    req_id = await client.send(
        {"proposal_open_contract": 1, "contract_id": contract_id, "subscribe": 1}
    )
    updates: list[dict[str, Any]] = []
    while not updates or not updates[-1]["is_sold"]:
        message = await client.recv()
        assert message["req_id"] == req_id
        assert message["subscription"]["id"] == message["proposal_open_contract"]["id"]
        updates.append(message["proposal_open_contract"])
    final = updates[-1]
    entry = price_feed.price("R_100", receipt["purchase_time"] * 1000, SEED)
    exit_ = price_feed.price("R_100", final["date_expiry"] * 1000, SEED)
    outcome, profit = price_feed.settle("PUT", entry, exit_, 0.35, receipt["payout"])
    assert final["entry_tick"] == entry
    assert final["exit_tick"] == exit_
    assert final["status"] == {"won": "won", "lost": "lost", "refund": "cancelled"}[outcome]
    assert final["profit"] == profit
    assert final["sell_price"] == round(0.35 + profit, 2)

    for _ in range(2):  # asking again never credits again
        balance = (await client.call({"balance": 1}))["balance"]["balance"]
        assert balance == round(10 - 0.35 + final["sell_price"], 2)
    table = (await client.call({"profit_table": 1, "description": 1}))["profit_table"]
    assert [t["contract_id"] for t in table["transactions"]] == [contract_id]
    sells = await client.call({"statement": 1, "action_type": "sell"})
    assert [t["contract_id"] for t in sells["statement"]["transactions"]] == [contract_id]
    assert (await client.call({"portfolio": 1}))["portfolio"]["contracts"] == []


async def test_forget_and_forget_all(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    contract_id = (await client.call(buy()))["buy"]["contract_id"]
    stream = {"proposal_open_contract": 1, "contract_id": contract_id, "subscribe": 1}
    first = await client.call(stream)
    assert (await client.call({"forget": first["subscription"]["id"]}))["forget"] == 1
    assert (await client.call({"forget": first["subscription"]["id"]}))["forget"] == 0
    second = await client.call(stream)
    gone = await client.call({"forget_all": ["proposal_open_contract"]})
    assert gone["forget_all"] == [second["subscription"]["id"]]
    once = await client.call({"proposal_open_contract": 1, "contract_id": contract_id})
    assert once["proposal_open_contract"]["is_sold"] == 0
    assert "subscription" not in once


async def test_dropped_reply_still_debits(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    await faults(http, drop_after_debit_rate=1)
    await client.send(buy())
    await client.send({"ping": 1})
    first = await client.recv()  # the buy was handled first: had it answered, this would be it
    assert first["msg_type"] == "ping"
    assert len(await purchases(http)) == 1
    statement = await client.call({"statement": 1, "action_type": "buy"})
    assert statement["statement"]["count"] == 1


async def test_latency_with_jitter_answers_out_of_order(
    client: Client, http: httpx.AsyncClient
) -> None:
    await faults(http, seed=3, latency_ms=5, jitter_ms=80)
    sent = [await client.send({"ping": 1}) for _ in range(12)]
    received = [(await client.recv())["req_id"] for _ in sent]
    assert sorted(received) == sent  # every one answered once: match by req_id ...
    assert received != sent  # ... because they came back in another order than asked


async def test_injected_errors_repeat_under_a_seed(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-a", 100)
    await client.call({"authorize": "tok-a"})

    async def run() -> list[str | None]:
        await faults(http, seed=42, error_rates={"ContractCreationFailure": 0.5})
        answers = [await client.call(buy()) for _ in range(12)]
        return [a.get("error", {}).get("code") for a in answers]

    first, second = await run(), await run()
    assert first == second
    assert set(first) == {None, "ContractCreationFailure"}

    await faults(http, error_queue=["MarketIsClosed", "PriceMoved"])
    codes = [(await client.call(buy())).get("error", {}).get("code") for _ in range(3)]
    assert codes == ["MarketIsClosed", "PriceMoved", None]


async def test_rate_limit_and_closed_market(client: Client, http: httpx.AsyncClient) -> None:
    await account(http, "tok-a", 100)
    await client.call({"authorize": "tok-a"})
    await faults(http, buys_per_minute=2, closed_symbols=["frxEURUSD"])
    assert "buy" in await client.call(buy())
    closed = await client.call(buy(symbol="frxEURUSD"))
    assert closed["error"]["code"] == "MarketIsClosed"
    limited = await client.call(buy())
    assert limited["error"] == {
        "code": "RateLimit",
        "message": "You have reached the rate limit for buy.",
    }
    assert (await http.get("/_sim/stats")).json()["rate_limited"] == 1


async def test_website_status_reports_the_documented_limits(
    client: Client, http: httpx.AsyncClient
) -> None:
    async def limits() -> dict[str, Any]:
        answer = await client.call({"website_status": 1})
        return dict(answer["website_status"]["api_call_limits"])

    def group(applies_to: str, minutely: int, hourly: int) -> dict[str, Any]:
        return {"applies_to": applies_to, "minutely": minutely, "hourly": hourly}

    reported = await limits()
    trading = "proposal, proposal_open_contract, buy and sell"
    assert reported["max_requests_pricing"] == group(trading, 360, 14400)
    assert reported["max_requests_outcome"] == group("portfolio and profit_table", 30, 1500)
    assert reported["max_requestes_general"] == group("rest of calls", 220, 14400)
    await faults(http, buy_limit_per_minute=40)  # what a test wants the broker to say
    assert (await limits())["max_requests_pricing"]["minutely"] == 40
    assert (await http.post("/_sim/faults", json={"buy_limit_per_minute": -1})).status_code == 400


async def test_disconnect_after_messages_is_one_shot(
    sim: RunningSimulator, client: Client, http: httpx.AsyncClient
) -> None:
    await account(http, "tok-a", 10)
    await client.call({"authorize": "tok-a"})
    await faults(http, disconnect_after_messages=2)
    await client.call({"ping": 1})
    await client.send(buy())  # the second message: the socket closes, the buy is not processed
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert await purchases(http) == []
    async with connect(sim.ws_url) as ws:
        again = Client(ws)
        await again.call({"authorize": "tok-a"})
        assert "buy" in await again.call(buy())


async def test_idle_connections_are_closed(client: Client, http: httpx.AsyncClient) -> None:
    await faults(http, idle_timeout_s=0.3)
    await client.call({"ping": 1})  # the next wait for a message is the idle one
    with pytest.raises(ConnectionClosed):
        await client.recv(timeout=30)


async def test_control_api(http: httpx.AsyncClient, client: Client) -> None:
    loginid = await account(http, "tok-a", 12.5)
    assert await account(http, "tok-a", 3) == loginid  # reset keeps the loginid
    listed = (await http.get("/_sim/accounts")).json()["accounts"]
    assert listed == [{"loginid": loginid, "balance": 3.0, "currency": "USD"}]
    assert "tok-a" not in json.dumps(listed)
    assert (await http.post("/_sim/faults", json={"typo": 1})).status_code == 400
    assert (await http.post("/_sim/faults", json={"error_rates": {"X": 2}})).status_code == 400
    assert (await http.post("/_sim/accounts", json={"token": "bad token"})).status_code == 400
    await faults(http, latency_ms=5, jitter_ms=5)
    assert (await http.get("/_sim/faults")).json()["latency_ms"] == 5
    stats = (await http.get("/_sim/stats")).json()
    assert (stats["connections_accepted"], stats["rate_limited"]) == (1, 0)  # our client's
    assert stats["connections_open"] >= 1
    await http.post("/_sim/reset")
    with pytest.raises(ConnectionClosed):  # reset drops every connection
        await client.recv(timeout=30)
    assert (await http.get("/_sim/accounts")).json()["accounts"] == []

"""Signal history and trade records, for the channel's provider, its traders and subscribers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from signal_hub.api.channels import load_channel, may_send
from signal_hub.api.common import caller, hub_of, ok
from signal_hub.auth import Principal
from signal_hub.errors import BadRequest, Forbidden, NotFound
from signal_hub.hub import Hub
from signal_hub.stats import signal_counts

SIGNALS_PAGE = (50, 500)  # default, maximum
TRADES_PAGE = (1000, 100_000)


def _limit(request: Request, page: tuple[int, int]) -> int:
    default, maximum = page
    raw = request.query_params.get("limit", str(default))
    # isdigit() alone lets through "²" and 5000-digit strings, on which int() raises.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= maximum):
        raise BadRequest(f"limit must be a whole number from 1 to {maximum}.", "invalid_limit")
    return int(raw)


def public_signal(signal: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": signal["_id"],
        "channel_id": signal["channel_id"],
        "sender_id": signal.get("sender_id"),
        "asset": signal["asset"],
        "direction": signal["direction"],
        "expiry_seconds": signal["expiry_seconds"],
        "client_signal_id": signal.get("client_signal_id") or None,
        "created_at": signal["created_at"],
        "deadline_at": signal.get("deadline_at"),
        "scheduled_at": signal.get("scheduled_at"),
        "status": signal.get("status", "active"),
        "fanout": signal.get("fanout"),
        "counts": counts,
    }


def public_trade(trade: dict[str, Any]) -> dict[str, Any]:
    fields = (
        "signal_id", "channel_id", "subscription_id", "subscriber_id", "broker", "asset",
        "direction", "expiry_seconds", "status", "reason", "contract_id", "stake", "payout",
        "latency_ms", "outcome", "profit", "created_at", "settled_at",
    )  # fmt: skip
    return {"id": trade["_id"], "trade_id": trade["_id"], **{f: trade.get(f) for f in fields}}


async def _readable_channel(hub: Hub, principal: Principal, channel_id: str) -> dict[str, Any]:
    channel = await load_channel(hub, channel_id)
    if not may_send(principal, channel):
        raise Forbidden("Only the channel's provider and traders see its signals.", "forbidden")
    return channel


async def list_signals(request: Request) -> JSONResponse:
    principal = await caller(request)
    hub = hub_of(request)
    channel_id = request.query_params.get("channel_id")
    if not channel_id:
        raise BadRequest("channel_id is required.", "missing_channel_id")
    await _readable_channel(hub, principal, channel_id)
    signals = (
        await hub.store.signals.find({"channel_id": channel_id})
        .sort("created_at", -1)
        .limit(_limit(request, SIGNALS_PAGE))
        .to_list()
    )
    counts = await signal_counts(hub.store, [s["_id"] for s in signals])
    return ok({"items": [public_signal(s, counts[s["_id"]]) for s in signals]})


async def get_signal(request: Request) -> JSONResponse:
    principal = await caller(request)
    hub = hub_of(request)
    signal = await hub.store.signals.find_one({"_id": request.path_params["signal_id"]})
    if signal is None:
        raise NotFound("No such signal.", "signal_not_found")
    await _readable_channel(hub, principal, signal["channel_id"])
    counts = await signal_counts(hub.store, [signal["_id"]])
    return ok(public_signal(signal, counts[signal["_id"]]))


async def list_trades(request: Request) -> JSONResponse:
    principal = await caller(request)
    hub = hub_of(request)
    signal_id = request.query_params.get("signal_id")
    query: dict[str, Any]
    if request.query_params.get("mine") == "1":
        query = {"subscriber_id": principal.user_id}
        if signal_id:
            query["signal_id"] = signal_id
    elif signal_id:
        signal = await hub.store.signals.find_one({"_id": signal_id}, {"channel_id": 1})
        if signal is None:
            raise NotFound("No such signal.", "signal_not_found")
        await _readable_channel(hub, principal, signal["channel_id"])
        query = {"signal_id": signal_id}
    else:
        raise BadRequest("Give signal_id=<id> or mine=1.", "missing_filter")
    trades = (
        await hub.store.trades.find(query)
        .sort("created_at", -1)
        .limit(_limit(request, TRADES_PAGE))
        .to_list()
    )
    return ok({"items": [public_trade(t) for t in trades]})


routes = [
    Route("/api/signals", list_signals, methods=["GET"]),
    Route("/api/signals/{signal_id}", get_signal, methods=["GET"]),
    Route("/api/trades", list_trades, methods=["GET"]),
]

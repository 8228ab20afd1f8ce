"""Signal history and trade records, for the channel's provider, its traders and subscribers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.records import trade_view
from signal_hub.api.channels import display_names, load_channel, masked, may_send
from signal_hub.api.common import caller, hub_of, ok, query_limit
from signal_hub.auth import Principal
from signal_hub.errors import BadRequest, Forbidden, NotFound
from signal_hub.hub import Hub
from signal_hub.stats import empty_counts, signal_counts

SIGNALS_PAGE = (50, 500)  # default, maximum
TRADES_PAGE = (1000, 100_000)


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


async def _readable_channel(hub: Hub, principal: Principal, channel_id: str) -> dict[str, Any]:
    channel = await load_channel(hub, channel_id)
    if not may_send(principal, channel):
        raise Forbidden("Only the channel's provider and traders see its signals.", "forbidden")
    return channel


async def list_signals(request: Request) -> JSONResponse:
    """A channel's signals, newest first, with per-status counts (its owner and traders)."""
    principal = await caller(request)
    hub = hub_of(request)
    channel_id = request.query_params.get("channel_id")
    if not channel_id:
        raise BadRequest("channel_id is required.", "missing_channel_id")
    await _readable_channel(hub, principal, channel_id)
    signals = (
        await hub.store.signals.find({"channel_id": channel_id})
        .sort("created_at", -1)
        .limit(query_limit(request, SIGNALS_PAGE))
        .to_list()
    )
    counts = await signal_counts(hub.store, [s["_id"] for s in signals])
    return ok({"items": [public_signal(s, counts[s["_id"]]) for s in signals]})


async def get_signal(request: Request) -> JSONResponse:
    """One signal with its per-status counts (its channel's owner and traders)."""
    principal = await caller(request)
    hub = hub_of(request)
    signal = await hub.store.signals.find_one({"_id": request.path_params["signal_id"]})
    if signal is None:
        raise NotFound("No such signal.", "signal_not_found")
    await _readable_channel(hub, principal, signal["channel_id"])
    counts = await signal_counts(hub.store, [signal["_id"]])
    return ok(public_signal(signal, counts[signal["_id"]]))


async def list_trades(request: Request) -> JSONResponse:
    """A signal's trades (its channel's owner and traders, with each subscriber's name), or the
    caller's own (``mine=1``)."""
    principal = await caller(request)
    hub = hub_of(request)
    signal_id = request.query_params.get("signal_id")
    query: dict[str, Any]
    mine = request.query_params.get("mine") == "1"
    if mine:
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
        .limit(query_limit(request, TRADES_PAGE))
        .to_list()
    )
    items = [trade_view(t) for t in trades]
    if not mine:
        names = await display_names(hub, [t["subscriber_id"] for t in items if t["subscriber_id"]])
        for item in items:
            sid = item["subscriber_id"]
            item["subscriber_name"] = names.get(sid) or (masked(sid) if sid else None)
    return ok({"items": items})


async def my_performance(request: Request) -> JSONResponse:
    """A subscriber's own results: trades by status, settled outcomes, net P/L, stake and the
    equity curve of its settled trades."""
    principal = await caller(request)
    hub = hub_of(request)
    trades = (
        await hub.store.trades.find(
            {"subscriber_id": principal.user_id},
            {"status": 1, "outcome": 1, "profit": 1, "stake": 1, "settled_at": 1},
        )
        .sort("settled_at", 1)
        .to_list()
    )
    counts = empty_counts()
    pnl = staked = 0.0
    equity = []
    for trade in trades:
        counts[trade["status"]] += 1
        if trade.get("outcome"):
            counts[trade["outcome"]] += 1
            pnl += float(trade.get("profit") or 0)
            staked += float(trade.get("stake") or 0)
            equity.append({"t": trade.get("settled_at"), "pnl": round(pnl, 2)})
    return ok(
        {
            "trades": len(trades),
            **counts,
            "settled": counts["won"] + counts["lost"] + counts["refund"],
            "pnl": round(pnl, 2),
            "staked": round(staked, 2),
            "roi": round(pnl / staked, 4) if staked else None,
            "equity": equity,
        }
    )


routes = [
    Route("/api/signals", list_signals, methods=["GET"]),
    Route("/api/signals/{signal_id}", get_signal, methods=["GET"]),
    Route("/api/trades", list_trades, methods=["GET"]),
    Route("/api/me/performance", my_performance, methods=["GET"]),
]

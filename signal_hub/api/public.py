"""The public pages' data: the channel directory, a channel's page, its settled signals.

No login. Only public fields: no subscriber's identity, stake or balance, no provider's email,
and no signal before its expiry (a page that showed open signals could be copied for free).

The directory ranks by the lower bound of the 95 % Wilson interval on the win rate, and only
channels with :data:`MIN_SETTLED_SIGNALS` settled signals are ranked at all: three lucky wins score
0.44, a hundred signals at 60 % score 0.50. Unranked channels follow the ranked ones whatever the
sort. The rows are computed for all channels at once and kept :data:`DIRECTORY_TTL_S` seconds per
hub, so the directory costs the store a few queries a few times a minute however often it is read.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from signal_hub.api.channels import copyable_on, load_channel, provider_names
from signal_hub.api.common import hub_of, ok, query_limit
from signal_hub.errors import BadRequest
from signal_hub.hub import Hub
from signal_hub.stats import (
    SignalResult,
    TrackRecord,
    copiers,
    latency_ms,
    signal_results,
    track_record,
)
from signal_hub.store import utcnow

MIN_SETTLED_SIGNALS = 20
DIRECTORY_TTL_S = 10.0
DIRECTORY_SIZE = 500
SORTS = (
    "score", "win_rate", "result_per_unit", "settled_signals", "copiers", "track_record_days",
    "name",
)  # fmt: skip
SIGNALS_PAGE = (50, 500)

_directory: dict[int, tuple[float, list[dict[str, Any]]]] = {}  # per hub: (when, rows)


def public_row(
    hub: Hub, channel: dict[str, Any], provider: str | None, record: TrackRecord, copying: int
) -> dict[str, Any]:
    first = record.first_signal_at
    return {
        "id": channel["_id"],
        "name": channel["name"],
        "description": channel.get("description", ""),
        "provider_name": provider,
        "created_at": channel["created_at"],
        "assets": channel.get("assets"),
        "brokers": copyable_on(hub, channel),
        "copiers": copying,
        "settled_signals": record.settled_signals,
        "won": record.won,
        "lost": record.lost,
        "win_rate": record.win_rate,
        "result_per_unit": record.result_per_unit,
        "first_signal_at": first,
        "track_record_days": (utcnow() - first).days if first else 0,
        "score": record.score,
        "ranked": record.settled_signals >= MIN_SETTLED_SIGNALS,
        "suspended": bool(channel.get("suspended")),
    }


async def _rows(hub: Hub) -> list[dict[str, Any]]:
    cached = _directory.get(id(hub))
    if cached and time.monotonic() - cached[0] < DIRECTORY_TTL_S:
        return cached[1]
    channels = (
        await hub.store.channels.find({}).sort("created_at", -1).limit(DIRECTORY_SIZE).to_list()
    )
    ids = [c["_id"] for c in channels]
    results = await signal_results(hub.store, ids) if ids else {}
    copying = await copiers(hub.store, ids) if ids else {}
    names = await provider_names(hub, channels)
    rows = [
        public_row(
            hub,
            c,
            names.get(c["provider_id"]),
            track_record(results[c["_id"]]),
            copying[c["_id"]]["active"],
        )
        for c in channels
    ]
    _directory[id(hub)] = (time.monotonic(), rows)
    return rows


def _sorted(rows: list[dict[str, Any]], sort: str, descending: bool) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> Any:
        value = row[sort]
        if sort == "name":
            return str(value).casefold()
        return (value is not None, value if value is not None else 0)

    ordered = sorted(rows, key=key, reverse=descending)
    if sort == "score":  # ties of the score: the longer record first
        ordered.sort(key=lambda r: (r["score"], r["settled_signals"]), reverse=descending)
    return sorted(ordered, key=lambda r: not r["ranked"])  # stable: ranked ones first


async def directory(request: Request) -> JSONResponse:
    """The public channel directory: ranked, filtered by ``asset`` and ``broker``, sorted by
    ``sort`` (one of :data:`SORTS`) in ``order`` (``asc``/``desc``)."""
    hub = hub_of(request)
    params = request.query_params
    sort = params.get("sort", "score")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of: {', '.join(SORTS)}.", "invalid_sort")
    order = params.get("order", "asc" if sort == "name" else "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc.", "invalid_order")
    rows = [r for r in await _rows(hub) if not r["suspended"]]
    asset, broker = params.get("asset"), params.get("broker")
    if asset:
        rows = [r for r in rows if r["assets"] is None or asset in r["assets"]]
    if broker:
        rows = [r for r in rows if broker in r["brokers"]]
    return ok(
        {
            "items": _sorted(rows, sort, order == "desc"),
            "min_settled_signals": MIN_SETTLED_SIGNALS,
        }
    )


async def channel_page(request: Request) -> JSONResponse:
    """A channel's public page: its figures, equity curve (cumulative result per unit staked on
    every settled signal), results by asset and execution latency."""
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    results = (await signal_results(hub.store, [channel["_id"]]))[channel["_id"]]
    record = track_record(results)
    names = await provider_names(hub, [channel])
    copying = (await copiers(hub.store, [channel["_id"]]))[channel["_id"]]["active"]
    row = public_row(hub, channel, names.get(channel["provider_id"]), record, copying)
    latency = await latency_ms(hub.store, {"channel_id": channel["_id"]})
    return ok(
        {
            **row,
            "min_settled_signals": MIN_SETTLED_SIGNALS,
            "equity": record.equity,
            "by_asset": record.by_asset,
            "latency_ms": {"p50": latency["p50"], "p99": latency["p99"]},
        }
    )


def public_signal(result: SignalResult) -> dict[str, Any]:
    return {
        "id": result.signal_id,
        "asset": result.asset,
        "direction": result.direction,
        "expiry_seconds": result.expiry_seconds,
        "created_at": result.created_at,
        "expires_at": result.expires_at,
        "outcome": result.outcome,
        "result": round(result.result, 4),
    }


async def channel_signals(request: Request) -> JSONResponse:
    """The channel's settled signals, newest first: never one before its expiry."""
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    limit = query_limit(request, SIGNALS_PAGE)
    results = (await signal_results(hub.store, [channel["_id"]]))[channel["_id"]]
    settled = [r for r in reversed(results) if r.settled][:limit]
    return ok({"items": [public_signal(r) for r in settled]})


routes = [
    Route("/api/public/channels", directory, methods=["GET"]),
    Route("/api/public/channels/{channel_id}", channel_page, methods=["GET"]),
    Route("/api/public/channels/{channel_id}/signals", channel_signals, methods=["GET"]),
]

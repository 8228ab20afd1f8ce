"""Channels: a provider's signal stream that subscribers copy; its traders, its subscribers and
its performance, for the provider (and, where said, its traders)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signal_hub.api.common import body, caller, hub_of, no_content, ok, optional_caller
from signal_hub.auth import Principal
from signal_hub.errors import Forbidden, NotFound, ValidationFailed
from signal_hub.hub import Hub
from signal_hub.readiness import channel_readiness
from signal_hub.sockets import channel_room
from signal_hub.stats import channel_stats, copiers, latency_ms, signal_results, track_record
from signal_hub.store import new_id, utcnow
from signal_hub.validation import Name, Prose

LISTED = 200  # channels per listing


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Name
    description: Prose = ""
    assets: list[str] | None = Field(default=None, max_length=100)
    max_signal_delay_ms: int | None = Field(default=None, ge=100, le=60_000)


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Name | None = None
    description: Prose | None = None
    assets: list[str] | None = Field(default=None, max_length=100)
    max_signal_delay_ms: int | None = Field(default=None, ge=100, le=60_000)


class TraderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr


async def load_channel(hub: Hub, channel_id: str) -> dict[str, Any]:
    channel: dict[str, Any] | None = await hub.store.channels.find_one({"_id": channel_id})
    if channel is None:
        raise NotFound("No such channel.", "channel_not_found")
    return channel


def owns(principal: Principal, channel: dict[str, Any]) -> bool:
    return principal.role == "admin" or channel["provider_id"] == principal.user_id


def may_send(principal: Principal, channel: dict[str, Any]) -> bool:
    return owns(principal, channel) or principal.user_id in channel.get("traders", [])


def copyable_on(hub: Hub, channel: dict[str, Any]) -> list[str]:
    """The brokers offering at least one of the channel's assets (any, if it names none)."""
    assets = set(channel.get("assets") or [])
    return sorted(
        name for name, caps in hub.brokers.items() if not assets or assets & set(caps["assets"])
    )


async def provider_names(hub: Hub, channels: list[dict[str, Any]]) -> dict[str, str]:
    ids = list({c["provider_id"] for c in channels})
    users = await hub.store.users.find({"_id": {"$in": ids}}, {"display_name": 1}).to_list()
    return {u["_id"]: u.get("display_name") for u in users}


def channel_view(
    hub: Hub, channel: dict[str, Any], provider_name: str | None, full: bool
) -> dict[str, Any]:
    view = {
        "id": channel["_id"],
        "name": channel["name"],
        "description": channel.get("description", ""),
        "provider_id": channel["provider_id"],
        "provider_name": provider_name,
        "assets": channel.get("assets"),
        "brokers": copyable_on(hub, channel),
        "max_signal_delay_ms": channel["max_signal_delay_ms"],
        "created_at": channel["created_at"],
    }
    if full:
        # Named traders by the email the owner typed: whether an account has it is not said.
        view["traders"] = [{"email": email} for email in channel.get("trader_emails", [])]
    return view


async def views(
    hub: Hub, channels: list[dict[str, Any]], principal: Principal | None
) -> list[dict[str, Any]]:
    """Channel views with their stats, in a constant number of queries."""
    full_ids = [c["_id"] for c in channels if principal is not None and owns(principal, c)]
    public_ids = [c["_id"] for c in channels if c["_id"] not in full_ids]
    stats = await channel_stats(hub.store, public_ids, full=False) if public_ids else {}
    stats |= await channel_stats(hub.store, full_ids, full=True) if full_ids else {}
    names = await provider_names(hub, channels)
    out = []
    for channel in channels:
        full = channel["_id"] in full_ids
        view = channel_view(hub, channel, names.get(channel["provider_id"]), full)
        view["stats"] = stats[channel["_id"]]
        if principal is not None and may_send(principal, channel):
            view["my_role"] = "owner" if owns(principal, channel) else "trader"
        out.append(view)
    return out


def _unknown_assets(hub: Hub, assets: list[str] | None) -> None:
    tradable = {asset for caps in hub.brokers.values() for asset in caps["assets"]}
    unknown = sorted(set(assets or []) - tradable)
    if unknown:
        raise ValidationFailed(f"Unknown assets: {', '.join(unknown)}.", "unknown_asset")


async def create_channel(request: Request) -> JSONResponse:
    """Create a channel (a provider)."""
    principal = await caller(request, "provider")
    data = await body(request, ChannelIn)
    hub = hub_of(request)
    _unknown_assets(hub, data.assets)
    channel = {
        "_id": new_id(),
        "name": data.name,
        "description": data.description,
        "provider_id": principal.user_id,
        "assets": sorted(set(data.assets)) if data.assets else None,
        "max_signal_delay_ms": data.max_signal_delay_ms or hub.settings.default_max_signal_delay_ms,
        "traders": [],
        "trader_emails": [],
        "created_at": utcnow(),
    }
    await hub.store.channels.insert_one(channel)
    await hub.directory.put_channel(channel)
    return ok((await views(hub, [channel], principal))[0], 201)


async def list_channels(request: Request) -> JSONResponse:
    """The newest channels with public stats; ``mine=1``: those the caller owns (with their
    full stats and traders) or trades."""
    hub = hub_of(request)
    principal = None
    query: dict[str, Any] = {}
    if request.query_params.get("mine") == "1":
        principal = await caller(request)
        query = {"$or": [{"provider_id": principal.user_id}, {"traders": principal.user_id}]}
    channels = await hub.store.channels.find(query).sort("created_at", -1).limit(LISTED).to_list()
    return ok({"items": await views(hub, channels, principal)})


async def get_channel(request: Request) -> JSONResponse:
    """One channel with its public stats (the full ones for its owner)."""
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    return ok((await views(hub, [channel], await optional_caller(request)))[0])


async def get_stats(request: Request) -> JSONResponse:
    """A channel's stats: public figures for anyone, P/L and latency for its owner."""
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    principal = await optional_caller(request)
    full = principal is not None and owns(principal, channel)
    stats = await channel_stats(hub.store, [channel["_id"]], full)
    return ok({"channel_id": channel["_id"], **stats[channel["_id"]]})


async def _owned_channel(request: Request) -> tuple[Hub, dict[str, Any], Principal]:
    principal = await caller(request, "provider", "admin")
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    if not owns(principal, channel):
        raise Forbidden("Only the channel's provider can do this.", "not_channel_owner")
    return hub, channel, principal


async def update_channel(request: Request) -> JSONResponse:
    """Edit a channel's name, description, assets (``[]``: every asset) or delay budget."""
    hub, channel, principal = await _owned_channel(request)
    data = await body(request, ChannelPatch)
    changes = data.model_dump(exclude_none=True)
    if "assets" in changes:
        _unknown_assets(hub, data.assets)
        changes["assets"] = sorted(set(changes["assets"])) or None
    changes["updated_at"] = utcnow()
    updated = await hub.store.channels.find_one_and_update(
        {"_id": channel["_id"]}, {"$set": changes}, return_document=True
    )
    await hub.directory.put_channel(updated or channel)
    return ok((await views(hub, [updated or channel], principal))[0])


async def add_trader(request: Request) -> JSONResponse:
    """Name a trader by email. The answer is the same whether or not an account has that email
    (no oracle of who has an account here); the account, now or when it signs up, may send."""
    hub, channel, _ = await _owned_channel(request)
    data = await body(request, TraderIn)
    email = data.email.lower()
    updated = await hub.store.channels.find_one_and_update(
        {"_id": channel["_id"]}, {"$addToSet": {"trader_emails": email}}, return_document=True
    )
    user = await hub.store.users.find_one({"email": email}, {"_id": 1})
    if user is not None and user["_id"] != channel["provider_id"]:
        updated = await hub.store.channels.find_one_and_update(
            {"_id": channel["_id"]}, {"$addToSet": {"traders": user["_id"]}}, return_document=True
        )
    await hub.directory.put_channel(updated or channel)
    return ok({"channel_id": channel["_id"], "trader": {"email": email}}, 201)


async def adopt_named_trader(hub: Hub, user: dict[str, Any]) -> None:
    """A new account whose email a provider named as a trader becomes that trader."""
    async for channel in hub.store.channels.find({"trader_emails": user["email"]}):
        updated = await hub.store.channels.find_one_and_update(
            {"_id": channel["_id"]}, {"$addToSet": {"traders": user["_id"]}}, return_document=True
        )
        await hub.directory.put_channel(updated or channel)


async def remove_trader(request: Request) -> Response:
    """Remove a trader, named by user id or by email: it may no longer send, and its open
    sockets on every hub leave the channel's room at once."""
    hub, channel, _ = await _owned_channel(request)
    who = request.path_params["user_id"]
    if "@" in who:
        email = who.lower()
        user = await hub.store.users.find_one({"email": email}, {"_id": 1})
        user_id = user["_id"] if user else None
    else:
        user_id = who
        user = await hub.store.users.find_one({"_id": who}, {"email": 1})
        email = user["email"] if user else None
    named = email in channel.get("trader_emails", []) or user_id in channel.get("traders", [])
    if not named:
        raise NotFound("That user is not a trader of this channel.", "trader_not_found")
    updated = await hub.store.channels.find_one_and_update(
        {"_id": channel["_id"]},
        {"$pull": {"traders": user_id, "trader_emails": email}},
        return_document=True,
    )
    await hub.directory.put_channel(updated or channel)
    if user_id is not None:
        await hub.sessions.leave_room(user_id, "/provider", channel_room(channel["_id"]))
    return no_content()


async def list_subscribers(request: Request) -> JSONResponse:
    """The channel's subscribers as its owner sees them: name, broker, stake and limits, paused,
    since when. Never a balance, an email or a credential."""
    hub, channel, _ = await _owned_channel(request)
    subs = (
        await hub.store.subscriptions.find({"channel_id": channel["_id"]})
        .sort("created_at", 1)
        .to_list()
    )
    names = await display_names(hub, [s["user_id"] for s in subs])
    items = [
        {
            "subscription_id": s["_id"],
            "subscriber_id": s["user_id"],
            "subscriber": names.get(s["user_id"]) or masked(s["user_id"]),
            "broker": s["broker"],
            "stake": s["stake"],
            "limits": s.get("limits") or {},
            "paused": bool(s.get("paused")),
            "since": s["created_at"],
        }
        for s in subs
    ]
    paused = sum(item["paused"] for item in items)
    counts = {"active": len(items) - paused, "paused": paused, "total": len(items)}
    return ok({"channel_id": channel["_id"], "counts": counts, "items": items})


async def display_names(hub: Hub, user_ids: list[str]) -> dict[str, str]:
    users = await hub.store.users.find(
        {"_id": {"$in": list(set(user_ids))}}, {"display_name": 1}
    ).to_list()
    return {u["_id"]: u.get("display_name") for u in users}


def masked(user_id: str) -> str:
    return f"…{user_id[-6:]}"


async def performance(request: Request) -> JSONResponse:
    """The channel's performance for its owner and traders: signals, win rate, net P/L, stake,
    subscribers, execution latency, the equity curve (cumulative P/L of settled trades) and the
    results by asset."""
    principal = await caller(request)
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    if not may_send(principal, channel):
        raise Forbidden("Only the channel's provider and traders see its performance.")
    channel_id = channel["_id"]
    results = (await signal_results(hub.store, [channel_id]))[channel_id]
    record = track_record(results)
    settled = [r for r in results if r.settled]
    pnl, staked, equity = 0.0, 0.0, []
    for r in settled:
        pnl += r.profit
        staked += r.staked
        equity.append({"t": r.expires_at, "pnl": round(pnl, 2)})
    by_asset: dict[str, dict[str, Any]] = {row["asset"]: row for row in record.by_asset}
    for r in settled:
        row = by_asset[r.asset]
        row["pnl"] = round(row.get("pnl", 0.0) + r.profit, 2)
    subscribers = (await copiers(hub.store, [channel_id]))[channel_id]
    return ok(
        {
            "channel_id": channel_id,
            "signals": await hub.store.signals.count_documents({"channel_id": channel_id}),
            "settled_signals": record.settled_signals,
            "won": record.won,
            "lost": record.lost,
            "refund": record.refund,
            "win_rate": record.win_rate,
            "pnl": round(pnl, 2),
            "staked": round(staked, 2),
            "roi": round(pnl / staked, 4) if staked else None,
            "subscribers": {**subscribers, "total": sum(subscribers.values())},
            "latency_ms": await latency_ms(hub.store, {"channel_id": channel_id}),
            "equity": equity,
            "by_asset": list(by_asset.values()),
        }
    )


async def readiness(request: Request) -> JSONResponse:
    """How many subscribers would not be copied if a signal went now, and why (paused, token
    refused at the last check, balance below the stake, a daily limit reached)."""
    principal = await caller(request)
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    if not may_send(principal, channel):
        raise Forbidden("Only the channel's provider and traders see this.")
    return ok(await channel_readiness(hub, channel["_id"]))


routes = [
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels/{channel_id}", get_channel, methods=["GET"]),
    Route("/api/channels/{channel_id}", update_channel, methods=["PATCH"]),
    Route("/api/channels/{channel_id}/stats", get_stats, methods=["GET"]),
    Route("/api/channels/{channel_id}/traders", add_trader, methods=["POST"]),
    Route("/api/channels/{channel_id}/traders/{user_id}", remove_trader, methods=["DELETE"]),
    Route("/api/channels/{channel_id}/subscribers", list_subscribers, methods=["GET"]),
    Route("/api/channels/{channel_id}/performance", performance, methods=["GET"]),
    Route("/api/channels/{channel_id}/readiness", readiness, methods=["GET"]),
]

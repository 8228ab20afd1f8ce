"""Channels: a provider's signal stream that subscribers copy; its traders; its public page."""

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
from signal_hub.sockets import channel_room
from signal_hub.stats import channel_stats
from signal_hub.store import new_id, utcnow
from signal_hub.validation import Name, Prose


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: Name
    description: Prose = ""
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


async def public_channel(hub: Hub, channel: dict[str, Any], full: bool) -> dict[str, Any]:
    provider = await hub.store.users.find_one({"_id": channel["provider_id"]}, {"display_name": 1})
    view = {
        "id": channel["_id"],
        "name": channel["name"],
        "description": channel.get("description", ""),
        "provider_id": channel["provider_id"],
        "provider_name": provider.get("display_name") if provider else None,
        "assets": channel.get("assets"),
        "max_signal_delay_ms": channel["max_signal_delay_ms"],
        "created_at": channel["created_at"],
    }
    if full:
        # Named traders by the email the owner typed: whether an account has it is not said.
        view["traders"] = [{"email": email} for email in channel.get("trader_emails", [])]
    return view


async def create_channel(request: Request) -> JSONResponse:
    principal = await caller(request, "provider")
    data = await body(request, ChannelIn)
    hub = hub_of(request)
    tradable = {asset for caps in hub.brokers.values() for asset in caps["assets"]}
    unknown = sorted(set(data.assets or []) - tradable)
    if unknown:
        raise ValidationFailed(f"Unknown assets: {', '.join(unknown)}.", "unknown_asset")
    channel = {
        "_id": new_id(),
        "name": data.name,
        "description": data.description,
        "provider_id": principal.user_id,
        "assets": sorted(set(data.assets)) if data.assets else None,
        "max_signal_delay_ms": data.max_signal_delay_ms or hub.settings.default_max_signal_delay_ms,
        "traders": [],
        "created_at": utcnow(),
    }
    await hub.store.channels.insert_one(channel)
    await hub.directory.put_channel(channel)
    return ok(await public_channel(hub, channel, full=True), 201)


async def list_channels(request: Request) -> JSONResponse:
    hub = hub_of(request)
    query: dict[str, Any] = {}
    if request.query_params.get("mine") == "1":
        query = {"provider_id": (await caller(request, "provider")).user_id}
    channels = await hub.store.channels.find(query).sort("created_at", -1).limit(200).to_list()
    items = []
    for channel in channels:
        view = await public_channel(hub, channel, full=False)
        view["stats"] = await channel_stats(hub.store, channel["_id"], full=False)
        items.append(view)
    return ok({"items": items})


async def get_channel(request: Request) -> JSONResponse:
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    principal = await optional_caller(request)
    full = principal is not None and owns(principal, channel)
    view = await public_channel(hub, channel, full=full)
    view["stats"] = await channel_stats(hub.store, channel["_id"], full=full)
    return ok(view)


async def get_stats(request: Request) -> JSONResponse:
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    principal = await optional_caller(request)
    full = principal is not None and owns(principal, channel)
    return ok(
        {"channel_id": channel["_id"], **await channel_stats(hub.store, channel["_id"], full)}
    )


async def _owned_channel(request: Request) -> tuple[Hub, dict[str, Any]]:
    principal = await caller(request, "provider", "admin")
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    if not owns(principal, channel):
        raise Forbidden("Only the channel's provider can do this.", "not_channel_owner")
    return hub, channel


async def add_trader(request: Request) -> JSONResponse:
    """Name a trader by email. The answer is the same whether or not an account has that email
    (no oracle of who has an account here); the account, now or when it signs up, may send."""
    hub, channel = await _owned_channel(request)
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
    hub, channel = await _owned_channel(request)
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


routes = [
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels/{channel_id}", get_channel, methods=["GET"]),
    Route("/api/channels/{channel_id}/stats", get_stats, methods=["GET"]),
    Route("/api/channels/{channel_id}/traders", add_trader, methods=["POST"]),
    Route("/api/channels/{channel_id}/traders/{user_id}", remove_trader, methods=["DELETE"]),
]

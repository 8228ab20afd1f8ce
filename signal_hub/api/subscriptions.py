"""Subscriptions: a subscriber copies a channel on one of its broker accounts, sized its own way."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import keys
from core.clock import utc_day
from core.shards import daily_counters
from signal_hub.api.channels import load_channel, provider_names
from signal_hub.api.common import body, caller, hub_of, no_content, ok
from signal_hub.auth import Principal
from signal_hub.errors import Conflict, NotFound, ValidationFailed
from signal_hub.hub import Hub
from signal_hub.store import new_id, utcnow

# The smallest amounts that mean something: a cent, and a hundredth of a percent of a balance
# (a stake of 1e-320 % would round to nothing and refuse every trade as below the minimum).
MIN_AMOUNT = 0.01
MIN_PERCENT = 0.01


class FixedStake(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["fixed"]
    amount: float = Field(ge=MIN_AMOUNT, le=1e9)  # and within the broker's range


class PercentStake(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["percent"]
    percent: float = Field(ge=MIN_PERCENT, le=100)


Stake = Annotated[FixedStake | PercentStake, Field(discriminator="mode")]
STAKE: TypeAdapter[FixedStake | PercentStake] = TypeAdapter(Stake)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_stake: float | None = Field(default=None, ge=MIN_AMOUNT, le=1e9)
    daily_loss_limit: float | None = Field(default=None, ge=MIN_AMOUNT, le=1e9)
    max_trades_per_day: int | None = Field(default=None, ge=1, le=100_000)


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    broker_account_id: str = Field(min_length=1, max_length=64)
    stake: Stake
    limits: Limits = Field(default_factory=Limits)
    paused: bool = False


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool | None = None
    stake: Stake | None = None
    limits: Limits | None = None
    broker_account_id: str | None = Field(default=None, min_length=1, max_length=64)


def public_subscription(sub: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": sub["_id"],
        "channel_id": sub["channel_id"],
        "user_id": sub["user_id"],
        "broker_account_id": sub["broker_account_id"],
        "broker": sub["broker"],
        "stake": sub["stake"],
        "limits": sub.get("limits") or {},
        "paused": bool(sub.get("paused")),
        "paused_reason": sub.get("paused_reason") if sub.get("paused") else None,
        "created_at": sub["created_at"],
        "updated_at": sub.get("updated_at", sub["created_at"]),
    }


def state_of(sub: dict[str, Any], today: dict[str, str]) -> tuple[str, str | None]:
    """``active``, ``paused`` (by its owner, or because its account was removed) or ``stopped``
    for the rest of the day by a risk limit (from the workers' daily counters)."""
    if sub.get("paused"):
        return "paused", sub.get("paused_reason") or "paused"
    limits = sub.get("limits") or {}
    loss, trades = float(today.get("loss") or 0), int(today.get("trades") or 0)
    if limits.get("daily_loss_limit") is not None and loss >= float(limits["daily_loss_limit"]):
        return "stopped", "daily_loss_limit"
    if limits.get("max_trades_per_day") is not None and trades >= int(limits["max_trades_per_day"]):
        return "stopped", "max_trades_per_day"
    return "active", None


async def subscription_views(hub: Hub, subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subscriptions as their owner sees them: with the channel, its provider and the state."""
    channels = await hub.store.channels.find(
        {"_id": {"$in": list({s["channel_id"] for s in subs})}}, {"name": 1, "provider_id": 1}
    ).to_list()
    by_id = {c["_id"]: c for c in channels}
    names = await provider_names(hub, channels)
    day = utc_day()
    async with hub.redis.pipeline(transaction=False) as pipe:
        for sub in subs:
            pipe.hgetall(keys.daily(sub["_id"], day))
        counters: list[dict[str, str]] = await pipe.execute()
    if hub.shards.sharded:  # on each account's shard
        counters = await daily_counters(hub.shards, subs, day)
    views = []
    for sub, today in zip(subs, counters, strict=True):
        channel = by_id.get(sub["channel_id"], {})
        state, reason = state_of(sub, today)
        views.append(
            {
                **public_subscription(sub),
                "channel_name": channel.get("name"),
                "provider_name": names.get(channel.get("provider_id", "")),
                "state": state,
                "state_reason": reason,
                "today": {
                    "trades": int(today.get("trades") or 0),
                    "loss": float(today.get("loss") or 0),
                },
            }
        )
    return views


def _stake_doc(stake: FixedStake | PercentStake) -> dict[str, Any]:
    return stake.model_dump()


def _check_stake(hub: Hub, broker: str, stake: FixedStake | PercentStake) -> None:
    """A fixed stake within the broker's range (a percent one is sized at each signal)."""
    caps = hub.brokers[broker]
    # Decimal from the text of the number: the float 0.35 is a hair below Decimal("0.35").
    amount = Decimal(str(stake.amount)) if isinstance(stake, FixedStake) else None
    if amount is not None and amount < caps["min_stake"]:
        raise ValidationFailed(
            f"The minimum stake on {broker} is {caps['min_stake']}.", "stake_below_minimum"
        )
    if amount is not None and amount > caps["max_stake"]:
        raise ValidationFailed(
            f"The maximum stake on {broker} is {caps['max_stake']}.", "stake_above_maximum"
        )


async def subscribe(request: Request) -> JSONResponse:
    """Copy a channel on one of the caller's broker accounts, with a stake and limits."""
    principal = await caller(request, "subscriber")
    data = await body(request, SubscribeIn)
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
    if channel.get("suspended"):
        raise Conflict("This channel is suspended by the operators.", "channel_suspended")
    account = await hub.store.broker_accounts.find_one(
        {"_id": data.broker_account_id, "user_id": principal.user_id}
    )
    if account is None:
        raise NotFound("You have no broker account with that id.", "broker_account_not_found")
    _check_stake(hub, account["broker"], data.stake)
    sub = {
        "_id": new_id(),
        "channel_id": channel["_id"],
        "user_id": principal.user_id,
        "broker_account_id": account["_id"],
        "broker": account["broker"],
        "stake": _stake_doc(data.stake),
        "limits": data.limits.model_dump(exclude_none=True),
        "paused": data.paused,
        "created_at": utcnow(),
    }
    try:
        await hub.store.subscriptions.insert_one(sub)
    except DuplicateKeyError:
        raise Conflict("You already subscribe to this channel.", "already_subscribed") from None
    await hub.directory.put_subscription(sub)
    return ok((await subscription_views(hub, [sub]))[0], 201)


async def _own_subscription(request: Request) -> tuple[Hub, Principal, dict[str, Any]]:
    principal = await caller(request, "subscriber")
    hub = hub_of(request)
    sub = await hub.store.subscriptions.find_one({"_id": request.path_params["subscription_id"]})
    if sub is None or sub["user_id"] != principal.user_id:
        raise NotFound("You have no subscription with that id.", "subscription_not_found")
    return hub, principal, sub


async def update_subscription(request: Request) -> JSONResponse:
    """Pause or resume, change the stake or limits, or move to another of one's accounts (which
    also resumes a subscription its removed account had paused)."""
    hub, principal, sub = await _own_subscription(request)
    data = await body(request, SubscriptionPatch)
    changes: dict[str, Any] = {"updated_at": utcnow()}
    broker = sub["broker"]
    if data.broker_account_id is not None:
        account = await hub.store.broker_accounts.find_one(
            {"_id": data.broker_account_id, "user_id": principal.user_id}
        )
        if account is None:
            raise NotFound("You have no broker account with that id.", "broker_account_not_found")
        broker = account["broker"]
        changes.update(broker_account_id=account["_id"], broker=broker)
        if sub.get("paused_reason") == "account_removed" and data.paused is None:
            changes["paused"] = False
    if data.paused is not None:
        changes["paused"] = data.paused
    if not changes.get("paused", sub.get("paused")):
        changes["paused_reason"] = None
    if data.stake is not None:
        _check_stake(hub, broker, data.stake)
        changes["stake"] = _stake_doc(data.stake)
    elif broker != sub["broker"]:
        _check_stake(hub, broker, STAKE.validate_python(sub["stake"]))
    if data.limits is not None:
        changes["limits"] = data.limits.model_dump(exclude_none=True)
    updated = await hub.store.subscriptions.find_one_and_update(
        {"_id": sub["_id"]}, {"$set": changes}, return_document=True
    )
    if updated is None:
        raise NotFound("You have no subscription with that id.", "subscription_not_found")
    if broker != sub["broker"]:
        await hub.directory.remove_subscription(sub)
    await hub.directory.put_subscription(updated)
    return ok((await subscription_views(hub, [updated]))[0])


async def delete_subscription(request: Request) -> Response:
    """Stop copying a channel."""
    hub, _, sub = await _own_subscription(request)
    await hub.directory.remove_subscription(sub)
    await hub.store.subscriptions.delete_one({"_id": sub["_id"]})
    return no_content()


async def list_subscriptions(request: Request) -> JSONResponse:
    """The caller's subscriptions, with the channel and the state of each."""
    principal = await caller(request, "subscriber")
    hub = hub_of(request)
    subs = (
        await hub.store.subscriptions.find({"user_id": principal.user_id})
        .sort("created_at", 1)
        .to_list()
    )
    return ok({"items": await subscription_views(hub, subs)})


routes = [
    Route("/api/channels/{channel_id}/subscribe", subscribe, methods=["POST"]),
    Route("/api/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/api/subscriptions/{subscription_id}", update_subscription, methods=["PATCH"]),
    Route("/api/subscriptions/{subscription_id}", delete_subscription, methods=["DELETE"]),
]

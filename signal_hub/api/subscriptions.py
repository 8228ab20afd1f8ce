"""Subscriptions: a subscriber copies a channel on one of its broker accounts, sized its own way."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signal_hub.api.channels import load_channel
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
    amount: float = Field(ge=MIN_AMOUNT, le=50_000)


class PercentStake(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["percent"]
    percent: float = Field(ge=MIN_PERCENT, le=100)


Stake = Annotated[FixedStake | PercentStake, Field(discriminator="mode")]


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
        "created_at": sub["created_at"],
        "updated_at": sub.get("updated_at", sub["created_at"]),
    }


def _stake_doc(stake: FixedStake | PercentStake) -> dict[str, Any]:
    return stake.model_dump()


def _check_stake(hub: Hub, broker: str, stake: FixedStake | PercentStake) -> None:
    minimum = hub.brokers[broker]["min_stake"]
    # Decimal from the text of the number: the float 0.35 is a hair below Decimal("0.35").
    if isinstance(stake, FixedStake) and Decimal(str(stake.amount)) < minimum:
        raise ValidationFailed(
            f"The minimum stake on {broker} is {minimum}.", "stake_below_minimum"
        )


async def subscribe(request: Request) -> JSONResponse:
    principal = await caller(request, "subscriber")
    data = await body(request, SubscribeIn)
    hub = hub_of(request)
    channel = await load_channel(hub, request.path_params["channel_id"])
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
    return ok(public_subscription(sub), 201)


async def _own_subscription(request: Request) -> tuple[Hub, Principal, dict[str, Any]]:
    principal = await caller(request, "subscriber")
    hub = hub_of(request)
    sub = await hub.store.subscriptions.find_one({"_id": request.path_params["subscription_id"]})
    if sub is None or sub["user_id"] != principal.user_id:
        raise NotFound("You have no subscription with that id.", "subscription_not_found")
    return hub, principal, sub


async def update_subscription(request: Request) -> JSONResponse:
    hub, _, sub = await _own_subscription(request)
    data = await body(request, SubscriptionPatch)
    changes: dict[str, Any] = {"updated_at": utcnow()}
    if data.paused is not None:
        changes["paused"] = data.paused
    if data.stake is not None:
        _check_stake(hub, sub["broker"], data.stake)
        changes["stake"] = _stake_doc(data.stake)
    if data.limits is not None:
        changes["limits"] = data.limits.model_dump(exclude_none=True)
    updated = await hub.store.subscriptions.find_one_and_update(
        {"_id": sub["_id"]}, {"$set": changes}, return_document=True
    )
    if updated is None:
        raise NotFound("You have no subscription with that id.", "subscription_not_found")
    await hub.directory.put_subscription(updated)
    return ok(public_subscription(updated))


async def delete_subscription(request: Request) -> Response:
    hub, _, sub = await _own_subscription(request)
    await hub.directory.remove_subscription(sub)
    await hub.store.subscriptions.delete_one({"_id": sub["_id"]})
    return no_content()


async def list_subscriptions(request: Request) -> JSONResponse:
    principal = await caller(request, "subscriber")
    subs = (
        await hub_of(request)
        .store.subscriptions.find({"user_id": principal.user_id})
        .sort("created_at", 1)
        .to_list()
    )
    return ok({"items": [public_subscription(s) for s in subs]})


routes = [
    Route("/api/channels/{channel_id}/subscribe", subscribe, methods=["POST"]),
    Route("/api/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/api/subscriptions/{subscription_id}", update_subscription, methods=["PATCH"]),
    Route("/api/subscriptions/{subscription_id}", delete_subscription, methods=["DELETE"]),
]

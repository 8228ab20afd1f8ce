"""Broker accounts: a subscriber connects one; the credentials are sealed and never shown again.

An account whose broker takes credentials (a Deriv API token) is checked with the broker, by a
worker of that broker's pool, before it is saved: a refused token saves nothing. Its balance and
health (``ok``, ``refused``, ``unreachable``, ``unchecked``) come from the workers' last check.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signal_hub.account_checks import AccountToCheck, refusal
from signal_hub.api.common import body, caller, hub_of, no_content, ok
from signal_hub.errors import ApiError, Conflict, NotFound, ValidationFailed
from signal_hub.hub import Hub
from signal_hub.store import new_id, utcnow
from signal_hub.validation import Name

MAX_STARTING_BALANCE = 10_000_000
QUICK_CHECK_S = 2.0


class BrokerAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    broker: str = Field(min_length=1, max_length=32)
    credentials: dict[str, str | int | float] = Field(default_factory=dict, max_length=10)
    label: Name | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # the broker's default
    # A paper account's virtual balance to start from (the broker's default otherwise).
    starting_balance: float | None = Field(default=None, ge=1, le=MAX_STARTING_BALANCE)


def public_account(account: dict[str, Any], health: dict[str, Any] | None) -> dict[str, Any]:
    health = health or {}
    checked_ms = int(health.get("checked_ms") or 0)
    return {
        "id": account["_id"],
        "broker": account["broker"],
        "label": account.get("label"),
        "currency": health.get("currency") or account.get("currency", "USD"),
        "created_at": account["created_at"],
        "balance": float(health["balance"]) if health.get("balance") else None,
        "health": {
            "status": health.get("status") or "unchecked",
            "checked_at": datetime.fromtimestamp(checked_ms / 1000, UTC) if checked_ms else None,
            "message": health.get("message") or None,
        },
    }


async def create_account(request: Request) -> JSONResponse:
    """Connect a broker account (a subscriber); a token is checked with the broker first."""
    principal = await caller(request, "subscriber")
    data = await body(request, BrokerAccountIn)
    hub = hub_of(request)
    capabilities = hub.brokers.get(data.broker)
    if capabilities is None:
        raise ValidationFailed(
            f"Unknown broker; choose one of: {', '.join(sorted(hub.brokers))}.", "unknown_broker"
        )
    missing = [f for f in capabilities["credential_fields"] if not data.credentials.get(f)]
    if missing:
        raise ValidationFailed(f"credentials needs: {', '.join(missing)}.", "missing_credentials")
    credentials = {k: str(v) for k, v in data.credentials.items()}
    if data.starting_balance is not None:
        credentials["starting_balance"] = str(Decimal(str(data.starting_balance)))
    account: dict[str, Any] = {
        "_id": new_id(),
        "user_id": principal.user_id,
        "broker": data.broker,
        "label": data.label or f"{data.broker} account",
        "currency": data.currency or capabilities["currency"],
        "credentials_sealed": hub.credentials.seal(credentials),
        "created_at": utcnow(),
    }
    health: dict[str, Any] | None = None
    if capabilities["credential_fields"]:  # something the broker may refuse: ask it first
        health = (await hub.account_checks.check(data.broker, [_to_check(account)]))[account["_id"]]
        refused = refusal(data.broker, health)
        if refused is not None:
            raise refused
    await hub.store.broker_accounts.insert_one(account)
    await hub.directory.put_account(account)
    if health is None:  # nothing to refuse: its balance if the pool answers at once
        with contextlib.suppress(ApiError):
            health = (
                await hub.account_checks.check(data.broker, [_to_check(account)], QUICK_CHECK_S)
            )[account["_id"]]
    return ok(public_account(account, health), 201)


def _to_check(account: dict[str, Any]) -> AccountToCheck:
    return AccountToCheck(
        account["_id"], account["credentials_sealed"], account.get("currency", "USD")
    )


async def list_accounts(request: Request) -> JSONResponse:
    """The caller's broker accounts with their balance and health, never credentials."""
    principal = await caller(request, "subscriber")
    hub = hub_of(request)
    accounts = (
        await hub.store.broker_accounts.find({"user_id": principal.user_id})
        .sort("created_at", 1)
        .to_list()
    )
    health = await hub.account_checks.health([a["_id"] for a in accounts])
    return ok({"items": [public_account(a, health[a["_id"]]) for a in accounts]})


async def _own_account(request: Request) -> tuple[Hub, dict[str, Any]]:
    principal = await caller(request, "subscriber")
    hub = hub_of(request)
    account = await hub.store.broker_accounts.find_one(
        {"_id": request.path_params["account_id"], "user_id": principal.user_id}
    )
    if account is None:
        raise NotFound("You have no broker account with that id.", "broker_account_not_found")
    return hub, account


async def check_account(request: Request) -> JSONResponse:
    """Check the account with its broker now (token still good, current balance)."""
    hub, account = await _own_account(request)
    health = await hub.account_checks.check(account["broker"], [_to_check(account)])
    return ok(public_account(account, health[account["_id"]]))


async def delete_account(request: Request) -> Response:
    """Remove an account. One that subscriptions use is removed only with ``confirm=1``; those
    subscriptions are then paused (``account_removed``) until given another account."""
    hub, account = await _own_account(request)
    using = await hub.store.subscriptions.find({"broker_account_id": account["_id"]}).to_list()
    if using and request.query_params.get("confirm") != "1":
        raise Conflict(
            f"{len(using)} subscription(s) copy with this account; removing it pauses them. "
            "Send confirm=1 to go ahead.",
            "account_in_use",
        )
    for sub in using:
        updated = await hub.store.subscriptions.find_one_and_update(
            {"_id": sub["_id"]},
            {"$set": {"paused": True, "paused_reason": "account_removed", "updated_at": utcnow()}},
            return_document=True,
        )
        if updated is not None:
            await hub.directory.put_subscription(updated)
    await hub.directory.remove_account(account)
    await hub.store.broker_accounts.delete_one({"_id": account["_id"]})
    return no_content()


async def list_assets(request: Request) -> JSONResponse:
    """The tradable assets, by broker."""
    hub = hub_of(request)
    return ok({name: sorted(caps["assets"]) for name, caps in sorted(hub.brokers.items())})


async def list_brokers(request: Request) -> JSONResponse:
    """The brokers offered, with what a subscriber must know to connect one."""
    hub = hub_of(request)
    items = [
        {
            "name": name,
            "min_stake": float(caps["min_stake"]),
            "max_stake": float(caps["max_stake"]),
            "min_expiry_s": caps["min_expiry_s"],
            "max_expiry_s": caps["max_expiry_s"],
            "currency": caps["currency"],
            "credential_fields": list(caps["credential_fields"]),
            "assets": sorted(caps["assets"]),
        }
        for name, caps in sorted(hub.brokers.items())
    ]
    return ok({"items": items})


routes = [
    Route("/api/broker-accounts", create_account, methods=["POST"]),
    Route("/api/broker-accounts", list_accounts, methods=["GET"]),
    Route("/api/broker-accounts/{account_id}", delete_account, methods=["DELETE"]),
    Route("/api/broker-accounts/{account_id}/check", check_account, methods=["POST"]),
    Route("/api/assets", list_assets, methods=["GET"]),
    Route("/api/brokers", list_brokers, methods=["GET"]),
]

"""Broker accounts: a subscriber connects one; the credentials are sealed and never shown again."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from signal_hub.api.common import body, caller, hub_of, ok
from signal_hub.errors import ValidationFailed
from signal_hub.store import new_id, utcnow
from signal_hub.validation import Name


class BrokerAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    broker: str = Field(min_length=1, max_length=32)
    credentials: dict[str, str | int | float] = Field(default_factory=dict, max_length=10)
    label: Name | None = None
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


def public_account(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": account["_id"],
        "broker": account["broker"],
        "label": account.get("label"),
        "currency": account.get("currency", "USD"),
        "created_at": account["created_at"],
    }


async def create_account(request: Request) -> JSONResponse:
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
    account = {
        "_id": new_id(),
        "user_id": principal.user_id,
        "broker": data.broker,
        "label": data.label or f"{data.broker} account",
        "currency": data.currency,
        "credentials_sealed": hub.credentials.seal(
            {k: str(v) for k, v in data.credentials.items()}
        ),
        "created_at": utcnow(),
    }
    await hub.store.broker_accounts.insert_one(account)
    await hub.directory.put_account(account)
    return ok(public_account(account), 201)


async def list_accounts(request: Request) -> JSONResponse:
    principal = await caller(request, "subscriber")
    accounts = (
        await hub_of(request)
        .store.broker_accounts.find({"user_id": principal.user_id})
        .sort("created_at", 1)
        .to_list()
    )
    return ok({"items": [public_account(a) for a in accounts]})


async def list_assets(request: Request) -> JSONResponse:
    hub = hub_of(request)
    return ok({name: sorted(caps["assets"]) for name, caps in sorted(hub.brokers.items())})


routes = [
    Route("/api/broker-accounts", create_account, methods=["POST"]),
    Route("/api/broker-accounts", list_accounts, methods=["GET"]),
    Route("/api/assets", list_assets, methods=["GET"]),
]

"""Sign-up, login, token refresh, and who am I."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from signal_hub.api.common import body, caller, client_ip, hub_of, ok, public_user
from signal_hub.auth import burn_password_check, hash_password, verify_password
from signal_hub.errors import Conflict, NotFound, Unauthorized
from signal_hub.store import new_id, utcnow


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: EmailStr
    # Kept exactly as typed (no stripping), as login compares it.
    password: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        min_length=8, max_length=256
    )
    role: Literal["provider", "subscriber"]
    display_name: str | None = Field(default=None, min_length=1, max_length=80)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=4096)


async def _limit(request: Request, scope: str, subject: str, per_minute: int) -> None:
    await hub_of(request).limiter.hit(scope, f"{client_ip(request)}|{subject}", per_minute, 60)


async def signup(request: Request) -> JSONResponse:
    hub = hub_of(request)
    await _limit(request, "signup", "", hub.settings.signup_rate_limit_per_min)
    data = await body(request, SignupIn)
    user: dict[str, Any] = {
        "_id": new_id(),
        "email": data.email.lower(),
        "password_hash": await hash_password(data.password),
        "role": data.role,
        "display_name": data.display_name or data.email.split("@")[0],
        "created_at": utcnow(),
    }
    try:
        await hub.store.users.insert_one(user)
    except DuplicateKeyError:
        raise Conflict("An account with this email already exists.", "email_taken") from None
    tokens = await hub.tokens.issue(user["_id"], user["role"])
    return ok({"user": public_user(user), **tokens}, 201)


async def login(request: Request) -> JSONResponse:
    data = await body(request, LoginIn)
    hub = hub_of(request)
    await _limit(request, "login", data.email.lower(), hub.settings.login_rate_limit_per_min)
    user = await hub.store.users.find_one({"email": data.email.lower()})
    if user is None:
        await burn_password_check(data.password)
    if user is None or not await verify_password(user["password_hash"], data.password):
        raise Unauthorized("Wrong email or password.", "invalid_credentials")
    tokens = await hub.tokens.issue(user["_id"], user["role"])
    return ok({"user": public_user(user), **tokens})


async def refresh(request: Request) -> JSONResponse:
    hub = hub_of(request)
    await _limit(request, "refresh", "", hub.settings.signup_rate_limit_per_min)
    data = await body(request, RefreshIn)

    async def role_of(user_id: str) -> str | None:
        user = await hub.store.users.find_one({"_id": user_id}, {"role": 1})
        return user["role"] if user else None

    return ok(await hub.tokens.refresh(data.refresh_token, role_of))


async def me(request: Request) -> JSONResponse:
    principal = caller(request)
    user = await hub_of(request).store.users.find_one({"_id": principal.user_id})
    if user is None:
        raise NotFound("The account no longer exists.", "user_not_found")
    return ok(public_user(user))


routes = [
    Route("/api/auth/signup", signup, methods=["POST"]),
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/refresh", refresh, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
]

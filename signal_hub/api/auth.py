"""Sign-up, login, token refresh, logout, and who am I.

A browser keeps its refresh token in an httpOnly cookie (``ctc_refresh``, path ``/api/auth``,
SameSite=Strict, Secure except on localhost) that the hub sets on signup, login and refresh and
clears on logout; page scripts never see it. Other clients keep using the JSON
``refresh_token`` of the answers and bodies.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core import keys
from signal_hub.api.channels import adopt_named_trader
from signal_hub.api.common import body, caller, client_ip, hub_of, ok, public_user
from signal_hub.auth import burn_password_check, hash_password, verify_password
from signal_hub.errors import Conflict, Forbidden, NotFound, Unauthorized
from signal_hub.store import new_id, utcnow
from signal_hub.validation import Name

REFRESH_COOKIE = "ctc_refresh"
REFRESH_COOKIE_PATH = "/api/auth"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: EmailStr
    # Kept exactly as typed (no stripping), as login compares it.
    password: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        min_length=8, max_length=256
    )
    role: Literal["provider", "subscriber"]
    display_name: Name | None = None


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=4096)


async def _limit(request: Request, scope: str, subject: str, limit: int, window_s: int) -> None:
    await hub_of(request).limiter.hit(scope, subject, limit, window_s)


def _session(request: Request, payload: dict[str, Any], status: int = 200) -> JSONResponse:
    """The answer that starts or continues a session, with the refresh cookie set."""
    response = ok(payload, status)
    hostname = (request.url.hostname or "").lower()
    response.set_cookie(
        REFRESH_COOKIE,
        payload["refresh_token"],
        max_age=hub_of(request).settings.refresh_token_ttl_s,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=hostname not in _LOCAL_HOSTS,
    )
    return response


async def _refresh_token_of(request: Request) -> str | None:
    """The refresh token of a body ``{refresh_token}`` if the request has a body, else of the
    cookie."""
    if int(request.headers.get("content-length") or 0) or request.headers.get("transfer-encoding"):
        return (await body(request, RefreshIn)).refresh_token
    return request.cookies.get(REFRESH_COOKIE) or None


async def signup(request: Request) -> JSONResponse:
    """Create an account (provider or subscriber) and start its session."""
    hub = hub_of(request)
    await _limit(request, "signup", client_ip(request), hub.settings.signup_rate_limit_per_min, 60)
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
    await adopt_named_trader(hub, user)
    tokens = await hub.tokens.issue(user["_id"], user["role"])
    return _session(request, {"user": public_user(user), **tokens}, 201)


async def login(request: Request) -> JSONResponse:
    """Start a session with an email and a password."""
    data = await body(request, LoginIn)
    hub = hub_of(request)
    settings, ip, email = hub.settings, client_ip(request), data.email.lower()
    await _limit(request, "login-ip", ip, settings.login_ip_rate_limit_per_min, 60)
    await _limit(request, "login", f"{ip}|{email}", settings.login_rate_limit_per_min, 60)
    await _limit(request, "login-acct", email, settings.login_account_rate_limit_per_hour, 3600)
    user = await hub.store.users.find_one({"email": email})
    if user is None:
        await burn_password_check(data.password)
    if user is None or not await verify_password(user["password_hash"], data.password):
        raise Unauthorized("Wrong email or password.", "invalid_credentials")
    if user.get("suspended"):  # said only to whoever knows the password
        raise Forbidden("This account is suspended by the operators.", "account_suspended")
    tokens = await hub.tokens.issue(user["_id"], user["role"])
    return _session(request, {"user": public_user(user), **tokens})


async def refresh(request: Request) -> JSONResponse:
    """Rotate the refresh token (the cookie, or ``{refresh_token}``) for a new pair."""
    hub = hub_of(request)
    await _limit(request, "refresh", client_ip(request), hub.settings.signup_rate_limit_per_min, 60)
    token = await _refresh_token_of(request)
    if token is None:
        raise Unauthorized("No session: log in.", "no_session")
    users: dict[str, dict[str, Any]] = {}

    async def role_of(user_id: str) -> str | None:
        user = await hub.store.users.find_one({"_id": user_id})
        if user is None:
            return None
        users[user_id] = user
        role: str = user["role"]
        return role

    try:
        tokens = await hub.tokens.refresh(token, role_of)
    except Unauthorized:
        # A suspension spent every refresh token of the user: say so, not "reused".
        subject = hub.tokens.subject(token)
        if subject and await hub.redis.exists(keys.suspended_user(subject)):
            raise Forbidden(
                "This account is suspended by the operators.", "account_suspended"
            ) from None
        raise
    (user,) = users.values()
    return _session(request, {"user": public_user(user), **tokens})


async def logout(request: Request) -> Response:
    """End the session: revoke its refresh family everywhere and clear the cookie. Always 204,
    so that it says nothing about the token it was given."""
    token = await _refresh_token_of(request)
    if token:
        ended = await hub_of(request).tokens.revoke(token)
        if ended:
            await hub_of(request).sessions.end_family(*ended)
    response = Response(status_code=204)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, httponly=True)
    return response


async def me(request: Request) -> JSONResponse:
    """The caller's own account."""
    principal = await caller(request)
    user = await hub_of(request).store.users.find_one({"_id": principal.user_id})
    if user is None:
        raise NotFound("The account no longer exists.", "user_not_found")
    return ok(public_user(user))


routes = [
    Route("/api/auth/signup", signup, methods=["POST"]),
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/refresh", refresh, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
]

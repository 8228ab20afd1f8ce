"""Sign-up, login, who am I, tokens and refresh rotation, over real HTTP against the running hub.

Every refusal is checked for its exact status and the contract's error shape; every answer that
carries a user is checked for the absence of any password or password hash.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from signal_hub.settings import DEV_JWT_SECRET, Settings, load_settings
from tests.client import Api, assert_error, assert_no_secrets, new_email
from tests.procs import System

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def settings(system: System) -> Settings:
    """The settings the hub under test runs with (same environment, same defaults)."""
    settings = load_settings(system.env)
    if not system.env.get("JWT_SECRET"):
        assert str(settings.jwt_secret) == DEV_JWT_SECRET
    return settings


def forge(
    settings: Settings,
    *,
    key: str | None = None,
    exp: timedelta = timedelta(minutes=5),
    **claims: Any,
) -> str:
    """An HS256 token like the hub's own, with ``claims`` overriding and any ``key``."""
    now = datetime.now(UTC)
    payload: dict[str, Any] = {
        "typ": "access",
        "role": "subscriber",
        "jti": secrets.token_hex(8),
        "iat": now - timedelta(hours=1),
        "nbf": now - timedelta(hours=1),
        "exp": now + exp,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        **claims,
    }
    return jwt.encode(payload, key or str(settings.jwt_secret), algorithm="HS256")


def unsigned(settings: Settings, **claims: Any) -> str:
    """A token with ``alg: none`` and no signature, built by hand."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    payload = {
        "typ": "access",
        "role": "subscriber",
        "jti": secrets.token_hex(8),
        "iat": now - 60,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        **claims,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def signup(api: Api, **body: Any) -> Any:
    return api.http.post("/api/auth/signup", json=body)


def login(api: Api, email: str, password: str = PASSWORD) -> Any:
    return api.http.post("/api/auth/login", json={"email": email, "password": password})


def refresh(api: Api, token: str) -> Any:
    return api.http.post("/api/auth/refresh", json={"refresh_token": token})


# --- sign-up ---------------------------------------------------------------------------------


def test_signup_returns_user_and_working_tokens(api: Api) -> None:
    email = new_email("ada")
    r = signup(api, email=email, password=PASSWORD, role="provider", display_name="Ada L.")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"user", "access_token", "refresh_token"}
    user = body["user"]
    assert set(user) == {"id", "email", "role", "display_name"}
    assert (user["email"], user["role"], user["display_name"]) == (email, "provider", "Ada L.")
    assert user["id"]
    assert body["access_token"] != body["refresh_token"]
    assert_no_secrets(r, PASSWORD)

    me = api.with_token("GET", "/api/me", body["access_token"])
    assert me.status_code == 200, me.text
    assert me.json() == user
    assert_no_secrets(me, PASSWORD)


def test_signup_defaults_display_name_and_lowercases_email(api: Api) -> None:
    local = f"Mixed.Case-{uuid.uuid4().hex[:8]}"
    r = signup(api, email=f"{local}@Example.COM", password=PASSWORD, role="subscriber")
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert user["email"] == f"{local}@example.com".lower()
    assert user["display_name"] == local
    assert user["role"] == "subscriber"


def test_duplicate_email_is_a_conflict_whatever_its_case(api: Api) -> None:
    email = new_email("dup")
    first = signup(api, email=email, password=PASSWORD, role="subscriber")
    assert first.status_code == 201, first.text
    for variant in (email, email.upper(), email.capitalize()):
        r = signup(api, email=variant, password="another password", role="provider")
        assert_error(r, 409, "email_taken")
        assert_no_secrets(r, "another password")
    # The first account is untouched: its password and role still hold.
    r = login(api, email)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["role"] == "subscriber"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"password": PASSWORD, "role": "admin"}, "role admin"),
        ({"password": PASSWORD, "role": "root"}, "unknown role"),
        ({"password": PASSWORD}, "no role"),
        ({"password": "short12", "role": "subscriber"}, "password under 8"),
        ({"password": "x" * 257, "role": "subscriber"}, "password over 256"),
        ({"role": "subscriber"}, "no password"),
        ({"password": 12345678, "role": "subscriber"}, "password not a string"),
        ({"password": PASSWORD, "role": "subscriber", "display_name": ""}, "empty name"),
        ({"password": PASSWORD, "role": "subscriber", "display_name": "n" * 81}, "long name"),
        ({"password": PASSWORD, "role": "subscriber", "is_admin": True}, "extra field"),
    ],
)
def test_signup_refuses_bad_input_and_creates_nothing(
    api: Api, body: dict[str, Any], why: str
) -> None:
    email = new_email("bad")
    r = signup(api, email=email, **body)
    error = assert_error(r, 422, "validation_error")
    assert PASSWORD not in error["message"], why
    # Nothing was created: the email is still free.
    again = signup(api, email=email, password=PASSWORD, role="subscriber")
    assert again.status_code == 201, (why, again.text)


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "no-at-sign.example.com", "two@@example.com", "a@", "@example.com", "", 42],
)
def test_signup_refuses_bad_email(api: Api, email: Any) -> None:
    r = signup(api, email=email, password=PASSWORD, role="subscriber")
    assert_error(r, 422, "validation_error")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a@example.com", "password": ',
        b"not json at all",
        b"",
        b"[]",
        b'"a string"',
        b"null",
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
        b'{"email": "a@example.com", "password": NaN, "role": "subscriber"}',
        b'{"email": "a@example.com", "password": Infinity, "role": "subscriber"}',
        b'{"email": "a@example.com", "password": 1e400, "role": "subscriber"}',
    ],
    ids=[
        "truncated",
        "text",
        "empty",
        "array",
        "string",
        "null",
        "binary",
        "deeply-nested",
        "nan",
        "infinity",
        "overflow",
    ],
)
def test_signup_refuses_invalid_json(api: Api, raw: bytes) -> None:
    r = api.http.post("/api/auth/signup", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")


def test_password_is_kept_exactly_as_given(api: Api) -> None:
    """Spaces around a password are part of it: what signed up is what logs in."""
    email = new_email("spaces")
    password = "  spaced out password  "
    r = signup(api, email=email, password=password, role="subscriber")
    assert r.status_code == 201, r.text
    ok = login(api, email, password)
    assert ok.status_code == 200, ok.text
    assert_error(login(api, email, password.strip()), 401, "invalid_credentials")


# --- login -----------------------------------------------------------------------------------


def test_login_returns_user_and_fresh_tokens(api: Api) -> None:
    user = api.signup("provider", display_name="Grace")
    for email in (user.email, user.email.upper()):
        r = login(api, email)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"user", "access_token", "refresh_token"}
        assert body["user"] == {
            "id": user.id,
            "email": user.email,
            "role": "provider",
            "display_name": "Grace",
        }
        assert body["refresh_token"] != user.refresh_token
        assert_no_secrets(r, PASSWORD)
        me = api.with_token("GET", "/api/me", body["access_token"])
        assert me.status_code == 200 and me.json()["id"] == user.id


def test_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    user = api.signup("subscriber")
    wrong = login(api, user.email, "not the password")
    unknown = login(api, new_email("nobody"), "not the password")
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()
    assert_no_secrets(wrong, "not the password")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "x@example.com"},
        {"password": PASSWORD},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "x@example.com", "password": ""},
        {"email": "x@example.com", "password": PASSWORD, "remember": True},
    ],
)
def test_login_refuses_malformed_input(api: Api, body: dict[str, Any]) -> None:
    assert_error(api.http.post("/api/auth/login", json=body), 422, "validation_error")


def test_login_refuses_invalid_json(api: Api) -> None:
    r = api.http.post("/api/auth/login", content=b"{nope", headers={"Content-Type": "text/plain"})
    assert_error(r, 400, "invalid_json")


def test_login_is_rate_limited_per_email(api: Api, settings: Settings) -> None:
    limit = settings.login_rate_limit_per_min
    if limit <= 0:
        pytest.skip("login rate limiting is off")
    user = api.signup("subscriber")
    for _ in range(limit):
        r = login(api, user.email, "wrong password")
        assert_error(r, 401, "invalid_credentials")
    assert_error(login(api, user.email, "wrong password"), 429, "rate_limited")
    # Past the limit even the right password waits: the limit is checked before the password.
    assert_error(login(api, user.email), 429, "rate_limited")
    # Another email from the same client is not affected.
    other = api.signup("subscriber")
    assert login(api, other.email).status_code == 200


def test_login_rate_limit_also_covers_unknown_emails(api: Api, settings: Settings) -> None:
    limit = settings.login_rate_limit_per_min
    if limit <= 0:
        pytest.skip("login rate limiting is off")
    email = new_email("ghost")
    for _ in range(limit):
        assert_error(login(api, email, "guess"), 401, "invalid_credentials")
    assert_error(login(api, email, "guess"), 429, "rate_limited")


# --- who am I, and every way a token can be bad ----------------------------------------------


def test_me_with_access_token(api: Api) -> None:
    user = api.signup("subscriber", display_name="Sub Scriber")
    r = api.call("GET", "/api/me", user)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": user.id,
        "email": user.email,
        "role": "subscriber",
        "display_name": "Sub Scriber",
    }
    assert_no_secrets(r, PASSWORD)
    lower = api.call("GET", "/api/me", headers={"Authorization": f"bearer {user.access_token}"})
    assert lower.status_code == 200, lower.text


def test_a_well_forged_token_is_accepted(api: Api, settings: Settings) -> None:
    """The control for the tests below: the forging itself matches what the hub expects."""
    user = api.signup("subscriber")
    r = api.with_token("GET", "/api/me", forge(settings, sub=user.id))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == user.id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token abc.def.ghi"},
    ],
    ids=["none", "empty", "bearer-only", "basic", "other-scheme"],
)
def test_me_without_a_bearer_token(api: Api, headers: dict[str, str]) -> None:
    assert_error(api.call("GET", "/api/me", headers=headers), 401, "missing_token")


def test_me_with_bad_tokens(api: Api, settings: Settings) -> None:
    user = api.signup("subscriber")
    cases = {
        "garbage": ("garbage", "invalid_token"),
        "three garbage parts": ("aaa.bbb.ccc", "invalid_token"),
        "expired": (forge(settings, sub=user.id, exp=timedelta(seconds=-30)), "token_expired"),
        "long expired": (forge(settings, sub=user.id, exp=-timedelta(days=2)), "token_expired"),
        "other secret": (
            forge(settings, sub=user.id, key=f"not-{DEV_JWT_SECRET}"),
            "invalid_token",
        ),
        "alg none": (unsigned(settings, sub=user.id), "invalid_token"),
        "wrong audience": (forge(settings, sub=user.id, aud="someone-else"), "invalid_token"),
        "wrong issuer": (forge(settings, sub=user.id, iss="evil"), "invalid_token"),
        "no sub": (forge(settings), "invalid_token"),
        "refresh typ": (forge(settings, sub=user.id, typ="refresh"), "invalid_token"),
        "refresh token": (user.refresh_token, "invalid_token"),
        "tampered": (user.access_token[:-4] + "AAAA", "invalid_token"),
    }
    for what, (token, code) in cases.items():
        r = api.with_token("GET", "/api/me", token)
        assert r.status_code == 401, (what, r.text)
        assert_error(r, 401, code)


def test_alg_none_with_an_admin_role_is_refused_everywhere(api: Api, settings: Settings) -> None:
    provider = api.signup("provider")
    token = unsigned(settings, sub=provider.id, role="admin")
    assert_error(api.with_token("GET", "/api/me", token), 401, "invalid_token")
    r = api.with_token("POST", "/api/channels", token, json={"name": "sneaky"})
    assert_error(r, 401, "invalid_token")


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_family(api: Api) -> None:
    user = api.signup("subscriber")
    first = user.refresh_token

    r = refresh(api, first)
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"user", "access_token", "refresh_token"}
    assert pair["user"]["id"] == user.id
    assert pair["refresh_token"] != first
    me = api.with_token("GET", "/api/me", pair["access_token"])
    assert me.status_code == 200 and me.json()["id"] == user.id

    r = refresh(api, pair["refresh_token"])
    assert r.status_code == 200, r.text
    newest = r.json()
    assert api.with_token("GET", "/api/me", newest["access_token"]).status_code == 200

    # The spent one is refused, and presenting it revokes every token of its family...
    assert_error(refresh(api, first), 401, "token_reused")
    assert_error(refresh(api, pair["refresh_token"]), 401, "token_reused")
    # ...including the newest, never used until now.
    assert_error(refresh(api, newest["refresh_token"]), 401, "token_reused")


def test_reuse_in_one_family_leaves_other_sessions_alone(api: Api) -> None:
    user = api.signup("provider")
    other_session = login(api, user.email).json()["refresh_token"]

    assert refresh(api, user.refresh_token).status_code == 200
    assert_error(refresh(api, user.refresh_token), 401, "token_reused")

    r = refresh(api, other_session)
    assert r.status_code == 200, r.text
    # And after a revoked family, logging in again starts a fresh one.
    fresh = login(api, user.email).json()["refresh_token"]
    assert refresh(api, fresh).status_code == 200


def test_access_token_cannot_refresh_and_refresh_token_cannot_call_the_api(
    api: Api, settings: Settings
) -> None:
    user = api.signup("provider")
    assert_error(refresh(api, user.access_token), 401, "invalid_token")
    assert_error(api.with_token("GET", "/api/me", user.refresh_token), 401, "invalid_token")
    r = api.with_token("POST", "/api/channels", user.refresh_token, json={"name": "x"})
    assert_error(r, 401, "invalid_token")
    # The refresh token was not spent by any of this.
    r = refresh(api, user.refresh_token)
    assert r.status_code == 200, r.text


def test_refresh_refuses_bad_tokens_and_bodies(api: Api, settings: Settings) -> None:
    user = api.signup("subscriber")
    expired = forge(settings, sub=user.id, typ="refresh", exp=timedelta(seconds=-30))
    assert_error(refresh(api, expired), 401, "token_expired")
    other_key = forge(
        settings, sub=user.id, typ="refresh", key="another-secret-entirely-of-its-own-0123456789"
    )
    assert_error(refresh(api, other_key), 401, "invalid_token")
    assert_error(refresh(api, unsigned(settings, sub=user.id, typ="refresh")), 401, "invalid_token")
    assert_error(refresh(api, "garbage"), 401, "invalid_token")
    # Well signed, but never issued: there is no record of it to spend.
    never_issued = forge(settings, sub=user.id, typ="refresh", jti="never-issued")
    assert_error(refresh(api, never_issued), 401)

    assert_error(api.http.post("/api/auth/refresh", json={}), 422, "validation_error")
    assert_error(
        api.http.post("/api/auth/refresh", json={"refresh_token": ""}), 422, "validation_error"
    )
    assert_error(
        api.http.post("/api/auth/refresh", json={"refresh_token": 5}), 422, "validation_error"
    )
    r = api.http.post(
        "/api/auth/refresh", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")
    # None of that touched the real token.
    assert refresh(api, user.refresh_token).status_code == 200

"""Passwords, tokens and who is asking.

- Passwords: argon2id (argon2-cffi's defaults), hashed off the event loop.
- Access tokens: JWT HS256, about 15 minutes, ``typ=access``.
- Refresh tokens: JWT HS256 with a ``jti`` recorded in the store; each is single-use. Refreshing
  marks it used and issues a new pair in the same family; presenting a used one again (a stolen
  copy, or a replay) revokes the whole family.
- The algorithm is pinned and ``exp``, ``iat``, ``iss``, ``aud`` and ``typ`` are required, so an
  access token cannot refresh and a refresh token cannot call the API.
- Sessions end: an access token names its refresh family (``fam``). Logging out, or a reused
  refresh token, revokes the family in the store and marks it revoked in Redis for as long as its
  access tokens live, so every hub refuses them at once (REST and Socket.IO alike) instead of
  letting them run out their quarter of an hour. A suspended user is marked in Redis likewise
  (until an operator lifts it); both marks are read in one ``MGET`` per request.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import anyio.to_thread
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from core import keys
from signal_hub.errors import Forbidden, Unauthorized
from signal_hub.settings import Settings
from signal_hub.store import Store, utcnow

ALGORITHM = "HS256"
Role = Literal["provider", "subscriber", "admin"]
TokenType = Literal["access", "refresh"]

_hasher = PasswordHasher()


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


# A hash to verify against when the email is unknown, so both answers take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


async def burn_password_check(password: str) -> None:
    await verify_password(_DUMMY_HASH, password)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, as an access token says: the user, its role, the session (refresh family)
    the token belongs to, and when the token lapses (epoch seconds)."""

    user_id: str
    role: Role
    family: str
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class Tokens:
    def __init__(self, settings: Settings, store: Store, redis: Redis) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self._key = str(settings.jwt_secret)

    def _encode(self, claims: dict[str, Any], ttl_s: int) -> str:
        now = utcnow()
        payload = {
            **claims,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=ttl_s),
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def _decode(self, token: str, expected: TokenType, verify_exp: bool = True) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub", "typ", "jti"],
                    "verify_exp": verify_exp,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.", "token_expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The token is not valid.", "invalid_token") from None
        if claims.get("typ") != expected:
            raise Unauthorized(f"An {expected} token is required here.", "invalid_token")
        return claims

    def access_token(self, user_id: str, role: str, family: str) -> str:
        claims = {
            "sub": user_id,
            "role": role,
            "typ": "access",
            "jti": secrets.token_hex(8),
            "fam": family,
        }
        return self._encode(claims, self.settings.access_token_ttl_s)

    async def issue(self, user_id: str, role: str, family: str | None = None) -> dict[str, str]:
        """A new access token and a new recorded refresh token (in ``family``, or a new one)."""
        jti = secrets.token_hex(16)
        family = family or secrets.token_hex(16)
        ttl = self.settings.refresh_token_ttl_s
        await self.store.refresh_tokens.insert_one(
            {
                "_id": jti,
                "user_id": user_id,
                "family": family,
                "used_at": None,
                "revoked": False,
                "expires_at": utcnow() + timedelta(seconds=ttl),
            }
        )
        refresh = self._encode({"sub": user_id, "typ": "refresh", "jti": jti}, ttl)
        return {"access_token": self.access_token(user_id, role, family), "refresh_token": refresh}

    async def refresh(self, refresh_token: str, role_of: Any) -> dict[str, str]:
        """Rotate: spend ``refresh_token`` once and return a new pair.

        ``role_of`` is an async callable giving the user's current role (or None if the user is
        gone), so a role change shows in the next access token.
        """
        claims = self._decode(refresh_token, "refresh")
        spent = await self.store.refresh_tokens.find_one_and_update(
            {"_id": claims["jti"], "used_at": None, "revoked": False},
            {"$set": {"used_at": utcnow()}},
        )
        if spent is None:
            record = await self.store.refresh_tokens.find_one({"_id": claims["jti"]})
            if record is not None:
                await self.revoke_family(record["family"])
            raise Unauthorized("This refresh token was already used or revoked.", "token_reused")
        role = await role_of(claims["sub"])
        if role is None:
            raise Unauthorized("The account no longer exists.", "invalid_token")
        return await self.issue(claims["sub"], role, family=spent["family"])

    async def revoke(self, refresh_token: str) -> tuple[str, str] | None:
        """Log out: revoke the family of ``refresh_token`` (even an expired one, if genuine).
        Returns ``(user_id, family)``, or None when the token is not one of ours."""
        try:
            claims = self._decode(refresh_token, "refresh", verify_exp=False)
        except Unauthorized:
            return None
        record = await self.store.refresh_tokens.find_one({"_id": claims["jti"]})
        if record is None:
            return None
        await self.revoke_family(record["family"])
        return record["user_id"], record["family"]

    async def revoke_user(self, user_id: str) -> None:
        """End every session of a user (a suspension): its refresh tokens are spent."""
        await self.store.refresh_tokens.update_many(
            {"user_id": user_id}, {"$set": {"revoked": True}}
        )

    async def revoke_family(self, family: str) -> None:
        """End a session everywhere: no refresh in the store, no access token on any hub."""
        await self.store.refresh_tokens.update_many({"family": family}, {"$set": {"revoked": True}})
        await self.redis.set(keys.revoked_family(family), 1, ex=self.settings.access_token_ttl_s)

    def subject(self, refresh_token: str) -> str | None:
        """The user a genuine refresh token names (lapsed or spent alike), else None."""
        try:
            sub: str = self._decode(refresh_token, "refresh", verify_exp=False)["sub"]
        except Unauthorized:
            return None
        return sub

    def principal(self, token: str) -> Principal:
        """The token's principal, checked offline (signature, type, expiry); see :meth:`live`."""
        claims = self._decode(token, "access")
        return Principal(
            user_id=claims["sub"],
            role=claims["role"],
            family=str(claims.get("fam", "")),
            expires_at=float(claims["exp"]),
        )

    async def live(self, principal: Principal) -> Principal:
        """``principal``, unless its token lapsed or its session was ended (one Redis read)."""
        if principal.expired(time.time()):
            raise Unauthorized("The token has expired.", "token_expired")
        revoked, suspended = await self.redis.mget(
            keys.revoked_family(principal.family), keys.suspended_user(principal.user_id)
        )
        if suspended:
            raise Forbidden("This account is suspended by the operators.", "account_suspended")
        if revoked:
            raise Unauthorized("This session has ended; log in again.", "session_ended")
        return principal

    async def authenticate(self, token: str) -> Principal:
        return await self.live(self.principal(token))


def bearer_token(conn: HTTPConnection) -> str:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <access token>'.", "missing_token")
    return token.strip()


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Forbidden(f"This needs a {' or '.join(roles)} account.", "wrong_role")

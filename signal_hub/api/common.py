"""What every endpoint needs: the hub, the caller, a validated body, JSON out."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from signal_hub.auth import Principal, Role, bearer_token, require_role
from signal_hub.errors import BadRequest
from signal_hub.hub import Hub
from signal_hub.validation import validate

ModelT = TypeVar("ModelT", bound=BaseModel)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def caller(request: Request, *roles: Role) -> Principal:
    """The authenticated caller, whose session has not ended; with ``roles``, one of those
    roles is required."""
    principal = await hub_of(request).tokens.authenticate(bearer_token(request))
    if roles:
        require_role(principal, *roles)
    return principal


async def optional_caller(request: Request) -> Principal | None:
    """The caller when the request carries a token (which must then be good), else None."""
    return await caller(request) if "authorization" in request.headers else None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


async def body(request: Request, model: type[ModelT]) -> ModelT:
    raw = await request.body()
    try:
        # NaN, Infinity and 1e400 (= inf) are no JSON numbers and would be stored, then fail to
        # render; a deeply nested body raises RecursionError rather than a ValueError.
        data = json.loads(raw, parse_constant=_not_json, parse_float=_finite) if raw else None
    except (ValueError, RecursionError):
        raise BadRequest("The body is not valid JSON.", "invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", "invalid_json")
    return validate(model, data, model.__name__)


def plain(value: Any) -> Any:
    """A store document as JSON: ``_id`` becomes ``id``, datetimes ISO-8601."""
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):  # the embedded store hands back naive UTC datetimes
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.isoformat().replace("+00:00", "Z")
    return value


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(plain(data), status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["_id"],
        "email": user["email"],
        "role": user["role"],
        "display_name": user.get("display_name"),
    }


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def query_limit(request: Request, page: tuple[int, int]) -> int:
    """The ``limit`` query parameter within ``page`` = (default, maximum)."""
    default, maximum = page
    raw = request.query_params.get("limit", str(default))
    # isdigit() alone lets through "²" and 5000-digit strings, on which int() raises.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= maximum):
        raise BadRequest(f"limit must be a whole number from 1 to {maximum}.", "invalid_limit")
    return int(raw)

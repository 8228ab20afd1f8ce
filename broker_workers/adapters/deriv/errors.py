"""Deriv's error codes as our error tree (:mod:`broker_workers.adapters.base`)."""

from __future__ import annotations

from broker_workers.adapters.base import (
    BrokerError,
    FatalBrokerError,
    RateLimitedError,
    RejectedError,
)

# Deriv error code -> the contract's reason for a rejected trade. RateLimit is retried instead.
REJECT_REASONS: dict[str, str] = {
    "InvalidToken": "invalid_token",
    "AuthorizationRequired": "invalid_token",
    "InsufficientBalance": "insufficient_balance",
    "MarketIsClosed": "market_closed",
    "ContractBuyValidationError": "invalid_contract",
    "OfferingsValidationError": "invalid_contract",
    "InputValidationFailed": "invalid_contract",
    "InvalidContractProposal": "invalid_contract",
    "PriceMoved": "price_moved",
    "ContractCreationFailure": "broker_error",
}

# Codes that say our side is misconfigured (the app id, or calls made as an account the session
# is not logged in as): no order can succeed until someone fixes it.
FATAL_CODES = frozenset({"InvalidAppID", "PermissionDenied"})


class NoAnswer(Exception):
    """A request may have left this process and no reply came: the broker may have acted."""


def error_of(code: str, message: str) -> BrokerError:
    """A Deriv error answer as our error tree (the message is Deriv's, which holds no token)."""
    if code == "RateLimit":
        return RateLimitedError(f"Deriv {code}: {message}")
    if code in FATAL_CODES:
        return FatalBrokerError(f"Deriv {code}: {message}")
    return RejectedError(
        f"Deriv {code}: {message}", reason=REJECT_REASONS.get(code, "broker_error")
    )

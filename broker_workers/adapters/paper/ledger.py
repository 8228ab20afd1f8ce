"""The paper broker's ledger in Redis: balances, orders and contracts, kept by two scripts.

Keys of its own (``paper:*``), as a remote broker's books would be its own; it shares the hot
path's Redis only for convenience.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from broker_workers.adapters.base import Fence
from core import keys
from core.scripts import Script

BALANCES = "paper:balance"  # HASH account -> cents
ORDERS = "paper:orders"  # HASH client order id -> contract id
CONTRACTS = "paper:contracts"  # HASH contract id -> JSON
SEQUENCE = "paper:contract_seq"

BUY = Script("buy", Path(__file__).parent)
SETTLE = Script("settle", Path(__file__).parent)


def cents(amount: Decimal | float | str) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


@dataclass(frozen=True, slots=True)
class LedgerOrder:
    client_order_id: str
    account_id: str
    start_cents: int  # the account's balance if it has bought nothing yet
    stake_cents: int
    deadline_ms: int
    asset: str
    direction: str
    expiry_seconds: int


async def buy(
    redis: Redis,
    orders: Sequence[LedgerOrder],
    fence: Fence | None = None,
    *,
    check_lease: bool = True,
) -> list[str]:
    """Per order, its contract (JSON: bought now or before, with the worker that bought it) or
    ``status:reason``; with a ``fence`` and ``check_lease``, every order ``lost:lease_lost``
    unless the worker's lease key, on this same Redis, still holds its token (the ledger checks
    the lease itself)."""
    checked = fence is not None and check_lease
    lease_key = [keys.worker_heartbeat(fence.worker_id)] if fence is not None and checked else []
    token = fence.token if fence is not None and checked else ""
    args: list[Any] = [token, fence.worker_id if fence is not None else ""]
    for o in orders:
        args += [
            o.client_order_id, o.account_id, o.start_cents, o.stake_cents, o.deadline_ms,
            o.asset, o.direction, o.expiry_seconds,
        ]  # fmt: skip
    replies: list[str] = await BUY(redis, [BALANCES, ORDERS, CONTRACTS, SEQUENCE, *lease_key], args)
    return replies


async def settle(
    redis: Redis,
    *,
    contract_id: str,
    outcome: str,
    profit_cents: int,
    settled_ms: int,
    credit_cents: int,
) -> str:
    """Settle the contract once (a second call changes nothing); its JSON."""
    raw: str = await SETTLE(
        redis,
        [CONTRACTS, BALANCES],
        [contract_id, outcome, profit_cents, settled_ms, credit_cents],
    )
    return raw

"""Seeding a benchmark's subscribers straight into the store, in bulk, before the hub starts.

Signing up N subscribers through the REST API costs N argon2 hashes and 3N requests; here the
same documents are written with the project's own :class:`~signal_hub.store.Store` (the embedded
store's journal, or MongoDB when ``MONGODB_URL`` is set) in ``insert_many`` batches: one
provider, its channel, N subscribers with one shared password hash, their broker accounts
(credentials sealed with :class:`~signal_hub.crypto.CredentialsBox`, the hub's own key) and
subscriptions, split round-robin across the brokers. The hub's start-up then rebuilds the Redis
directory from the store, as it would after any restart. Deriv accounts are also opened on the
simulator, in bulk.

Optionally a second channel (``like_n``) copies only the first ``like_n`` subscribers, for the
like-with-like comparison with the RQ-alone baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from argon2 import PasswordHasher

from signal_hub.auth import Tokens
from signal_hub.connections import redis_client
from signal_hub.crypto import CredentialsBox
from signal_hub.settings import Settings
from signal_hub.store import Store, new_id, utcnow

BATCH = 5000
STAKE = 1  # every subscriber stakes 1 (fixed): the minimum on paper, above Deriv's
DERIV_BALANCE = 10**6
BENCH_PASSWORD = "bench-subscriber-password"  # benchmark users only


@dataclass
class Channel:
    id: str
    subscriptions: dict[str, list[str]] = field(default_factory=dict)  # broker -> ids, in order

    @property
    def size(self) -> int:
        return sum(len(ids) for ids in self.subscriptions.values())


@dataclass
class Seeded:
    provider_id: str
    provider_token: str  # an access token of the provider, signed with the hub's key
    channel: Channel
    like_channel: Channel | None
    deriv_tokens: list[str]


def deriv_token(i: int) -> str:
    return f"bench-{i:07d}"


def _chunks(items: Sequence[dict[str, Any]], size: int = BATCH) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


async def _insert(collection: Any, docs: Sequence[dict[str, Any]]) -> None:
    for chunk in _chunks(docs):
        await collection.insert_many(chunk)


def _channel(provider_id: str, name: str, max_delay_ms: int) -> dict[str, Any]:
    return {
        "_id": new_id(),
        "name": name,
        "description": "Seeded by bench.fanout.",
        "provider_id": provider_id,
        "assets": None,
        "max_signal_delay_ms": max_delay_ms,
        "traders": [],
        "created_at": utcnow(),
    }


def _subscription(channel_id: str, account: dict[str, Any]) -> dict[str, Any]:
    return {
        "_id": new_id(),
        "channel_id": channel_id,
        "user_id": account["user_id"],
        "broker_account_id": account["_id"],
        "broker": account["broker"],
        "stake": {"mode": "fixed", "amount": STAKE},
        "limits": {},
        "paused": False,
        "created_at": account["created_at"],
    }


async def seed_store(
    settings: Settings, n: int, brokers: list[str], like_n: int, max_delay_ms: int
) -> Seeded:
    """Write the provider, channel(s), users, accounts and subscriptions; nothing else runs yet."""
    store = Store.open(settings)
    box = CredentialsBox(settings)
    password_hash = PasswordHasher().hash(BENCH_PASSWORD)  # one hash shared by every user
    now = utcnow()
    provider_id = new_id()
    provider = {
        "_id": provider_id,
        "email": f"bench-provider-{new_id()}@bench.example.com",
        "password_hash": password_hash,
        "role": "provider",
        "display_name": "Bench Desk",
        "created_at": now,
    }
    channel = _channel(provider_id, "bench fan-out", max_delay_ms)
    like = _channel(provider_id, f"bench fan-out, first {like_n}", max_delay_ms)
    paper_sealed = box.seal({})  # same plaintext for every paper account: seal it once
    users, accounts, deriv_tokens = [], [], []
    for i in range(n):
        user_id = new_id()
        users.append(
            {
                "_id": user_id,
                "email": f"bench-{i}-{user_id}@bench.example.com",
                "password_hash": password_hash,
                "role": "subscriber",
                "display_name": f"bench subscriber {i}",
                "created_at": now,
            }
        )
        broker = brokers[i % len(brokers)]
        sealed = paper_sealed
        if broker == "deriv":
            deriv_tokens.append(deriv_token(i))
            sealed = box.seal({"token": deriv_token(i)})
        accounts.append(
            {
                "_id": new_id(),
                "user_id": user_id,
                "broker": broker,
                "label": f"{broker} account",
                "currency": "USD",
                "credentials_sealed": sealed,
                "created_at": now,
            }
        )
    subs = [_subscription(channel["_id"], a) for a in accounts]
    like_subs = [_subscription(like["_id"], a) for a in accounts[:like_n]] if like_n else []

    await store.users.insert_one(provider)
    await store.channels.insert_one(channel)
    if like_subs:
        await store.channels.insert_one(like)
    await _insert(store.users, users)
    await _insert(store.broker_accounts, accounts)
    await _insert(store.subscriptions, subs + like_subs)
    # After the bulk inserts: an index over existing documents is built in one pass, whereas
    # the embedded store checks a unique index on each insert by a scan.
    await store.ensure_indexes()
    await store.close()

    def by_broker(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {b: [] for b in brokers}
        for doc in docs:
            out[doc["broker"]].append(doc["_id"])
        return {b: ids for b, ids in out.items() if ids}

    return Seeded(
        provider_id=provider_id,
        provider_token=Tokens(settings, store, redis_client(settings.redis_url)).access_token(
            provider_id, "provider", family="bench"
        ),
        channel=Channel(channel["_id"], by_broker(subs)),
        like_channel=Channel(like["_id"], by_broker(like_subs)) if like_subs else None,
        deriv_tokens=deriv_tokens,
    )


def seed_simulator(sim_url: str, tokens: list[str], balance: int = DERIV_BALANCE) -> None:
    """Open every Deriv account on the simulator, a batch per request."""
    with httpx.Client(base_url=sim_url, timeout=120) as http:
        for start in range(0, len(tokens), BATCH):
            accounts = [
                {"token": t, "balance": balance, "currency": "USD"}
                for t in tokens[start : start + BATCH]
            ]
            http.post("/_sim/accounts", json={"accounts": accounts}).raise_for_status()

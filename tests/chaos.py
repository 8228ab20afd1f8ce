"""The fault-injection harness shared by ``tests/test_faults.py`` and the soak (``tests/soak.py``).

It runs the real processes with short leases, sends signals to a channel with subscribers on
both brokers, breaks something (a worker SIGKILLed at a kill point or at a moment, a hub killed,
Redis connections cut, the broker dropping connections after the debit), and then checks the
invariants from the outside, per subscriber:

- the store holds exactly one terminal trade record for every subscriber the ack counted;
- the broker (the paper ledger, the Deriv simulator's own purchase log) holds at most one
  purchase for each (signal, subscriber), and one exactly when the record says ``placed``;
- the provider's live feed carried each record once (while the hub stayed up).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis as sync_redis

from core import keys
from core.connections import sync_redis_client
from tests.client import Api, Live, User, live
from tests.procs import Proc, System, children, wait_until

TERMINAL = {"placed", "rejected", "skipped", "failed"}

# Short leases and timers so that a case settles in seconds; the logic is the production one.
CHAOS_ENV = {
    "FAULT_INJECTION": "1",
    "CLAIM_LEASE_S": "1",
    "WORKER_HEARTBEAT_S": "0.2",
    "RECONCILE_AFTER_MS": "500",
    "REAPER_INTERVAL_MS": "100",
    "REDRIVE_STALL_MS": "400",
    "PAPER_LATENCY_MS": "80",
    "DRAIN_BATCH_SIZE": "4",
    "DRAIN_CONCURRENCY": "2",
    "LOG_LEVEL": "INFO",
}
SIM_FAULTS = {"latency_ms": 60, "jitter_ms": 20}


@dataclass
class Verdict:
    """What one signal ended as, seen from outside."""

    counted: int
    records: int = 0
    missing: int = 0
    duplicate_records: int = 0
    duplicate_purchases: int = 0
    placed_without_purchase: int = 0
    purchase_without_placed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.duplicate_records
            or self.duplicate_purchases
            or self.placed_without_purchase
            or self.purchase_without_placed
        )


@dataclass
class Chaos:
    system: System
    api: Api
    provider: User
    channel_id: str
    paper_subs: int
    deriv_subs: int
    redis: sync_redis.Redis = field(init=False)
    ledger: sync_redis.Redis = field(init=False)  # the paper broker's books (PAPER_REDIS_URL)
    pools: dict[str, Proc] = field(default_factory=dict)
    hub: Proc | None = None

    def __post_init__(self) -> None:
        self.redis = sync_redis_client(self.system.redis_url, decode_responses=True)
        ledger_url = self.system.env.get("PAPER_REDIS_URL")
        self.ledger = (
            sync_redis_client(ledger_url, decode_responses=True) if ledger_url else self.redis
        )

    @classmethod
    def start(cls, system: System, paper: int = 12, deriv: int = 8, workers: int = 2) -> Chaos:
        hub = system.start_hub()
        system.start_deriv_sim()
        httpx.post(f"{system.sim_url}/_sim/faults", json=SIM_FAULTS).raise_for_status()
        pools = {broker: system.start_pool(broker, workers) for broker in ("paper", "deriv")}
        system.start_reaper()
        api = Api(httpx.Client(base_url=system.base_url, timeout=20))
        provider, channel_id = new_channel(system, api, paper, deriv)
        return cls(system, api, provider, channel_id, paper, deriv, pools=pools, hub=hub)

    @property
    def total(self) -> int:
        return self.paper_subs + self.deriv_subs

    async def watcher(self, checked: bool = False, reconnect: bool = False) -> Live:
        return await live(self.system.base_url, "/provider", self.provider, checked, reconnect)

    async def send(self, watcher: Live, channel_id: str | None = None) -> dict[str, Any]:
        """A signal to the harness's channel (or ``channel_id``), acknowledged."""
        ack = await watcher.emit("signal", signal_to(channel_id or self.channel_id))
        assert ack["ok"] is True, ack
        return ack  # type: ignore[no-any-return]

    # -- breaking things ----------------------------------------------------------------------

    def arm(self, point: str, nth: int) -> None:
        """The nth passage of ``point`` by any worker SIGKILLs that worker."""
        self.redis.delete(keys.FAULT_COUNT)
        self.redis.set(keys.FAULT_ARMED, f"{point}:{nth}")

    def disarm(self) -> None:
        self.redis.delete(keys.FAULT_ARMED, keys.FAULT_COUNT)

    def kill_a_worker(self, broker: str, sig: int = signal.SIGKILL) -> int:
        pids = children(self.pools[broker].popen.pid)
        assert pids, f"no {broker} workers"
        pid = random.choice(pids)
        os.kill(pid, sig)
        return pid

    def cut_redis_connections(self) -> int:
        """Every ordinary client connection of this system's database dropped at once (not this
        one's, and none of other databases: other work may share the server)."""
        me = self.redis.client_id()
        victims = [
            c["id"]
            for c in self.redis.client_list(_type="normal")
            if int(c["db"]) == self.system.db and int(c["id"]) != me
        ]
        for client_id in victims:
            self.redis.client_kill_filter(_id=client_id)
        return len(victims)

    def kill_hub(self, sig: int = signal.SIGKILL) -> None:
        assert self.hub is not None
        self.hub.stop(sig)

    def restart_hub(self) -> None:
        self.hub = self.system.start_hub()

    def wait_for_workers(self, broker: str, count: int = 2) -> None:
        wait_until(
            lambda: (
                len(children(self.pools[broker].popen.pid)) >= count
                and self._live_workers(broker) >= count
            ),
            timeout=30,
            what=f"{count} {broker} workers back",
        )

    def _live_workers(self, broker: str) -> int:
        ids: Any = self.redis.smembers(keys.workers(broker))
        return sum(1 for w in ids if self.redis.exists(keys.worker_heartbeat(w)))

    # -- checking -----------------------------------------------------------------------------

    def trades(self, signal_id: str, provider: User | None = None) -> list[dict[str, Any]]:
        return self.api.ok(  # type: ignore[no-any-return]
            "GET", f"/api/trades?signal_id={signal_id}&limit=10000", provider or self.provider
        )["items"]

    def purchases(self, signal_id: str) -> Counter[str]:
        """Purchases at the brokers, by trade id, from the brokers' own books."""
        bought: Counter[str] = Counter()
        for raw in self.ledger.hvals("paper:contracts"):
            coid = str(_json(raw).get("client_order_id", ""))
            if coid.startswith(f"{signal_id}-"):
                bought[coid] += 1
        made = httpx.get(f"{self.system.sim_url}/_sim/purchases", timeout=10).json()["purchases"]
        for p in made:
            passthrough = p.get("passthrough") or {}
            if passthrough.get("signal_id") != signal_id:
                continue
            if "subscription_ids" in passthrough:
                sub_id = passthrough["subscription_ids"][p["token_index"]]
                bought[f"{signal_id}-{sub_id}"] += 1
            else:
                bought[passthrough["client_order_id"]] += 1
        return bought

    def verify(
        self,
        signal_id: str,
        counted: int,
        watcher: Live | None = None,
        timeout: float = 30,
        provider: User | None = None,
        feed_repeats: bool = False,
    ) -> Verdict:
        """The invariants for one signal, checked once every record arrived (or ``timeout``).
        ``feed_repeats``: the live feed may carry a record again (a hub taken over re-emits
        what the dead one had stored; a client drops the repeat by ``trade_id``), but never one
        the store does not hold."""
        verdict = Verdict(counted)
        trades: list[dict[str, Any]] = []

        def settled() -> bool:
            trades[:] = self.trades(signal_id, provider)
            return len(trades) >= counted and all(t["status"] in TERMINAL for t in trades)

        with contextlib.suppress(TimeoutError):  # what is missing is counted below
            wait_until(settled, timeout=timeout, what=f"{counted} records of {signal_id}")
        time.sleep(0.3)  # a late duplicate would land within this
        trades = self.trades(signal_id, provider)
        by_trade = Counter(t["trade_id"] for t in trades)
        verdict.records = len(trades)
        verdict.missing = max(0, counted - len(by_trade))
        verdict.duplicate_records = sum(n - 1 for n in by_trade.values())
        if watcher is not None:
            seen = Counter(e["trade_id"] for e in watcher.executions if e["signal_id"] == signal_id)
            if not feed_repeats:
                verdict.duplicate_records += sum(n - 1 for n in seen.values())
            verdict.missing += len(set(seen) - set(by_trade))  # in the feed, not in the store
        verdict.statuses = Counter(
            f"{t['status']}/{t['reason']}" if t.get("reason") else t["status"] for t in trades
        )
        bought = self.purchases(signal_id)
        verdict.duplicate_purchases = sum(n - 1 for n in bought.values() if n > 1)
        placed = {t["trade_id"] for t in trades if t["status"] == "placed"}
        verdict.placed_without_purchase = len(placed - set(bought))
        verdict.purchase_without_placed = len(set(bought) - placed)
        return verdict


def signal_to(channel_id: str) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": "R_100", "direction": "CALL", "expiry_seconds": 60}


def new_channel(
    system: System, api: Api, paper: int, deriv: int, **fields: Any
) -> tuple[User, str]:
    """A provider and its channel with ``paper`` and ``deriv`` subscribers staking 1."""
    provider = api.signup("provider")
    channel_id = str(api.channel(provider, **fields)["id"])
    stake = {"mode": "fixed", "amount": 1}
    for _ in range(paper):
        api.subscriber(channel_id, stake)
    for i in range(deriv):
        token = f"chaos-{uuid.uuid4().hex[:8]}-{i}"
        account = {"token": token, "balance": 10_000, "currency": "USD"}
        httpx.post(f"{system.sim_url}/_sim/accounts", json=account).raise_for_status()
        api.subscriber(channel_id, stake, "deriv", {"token": token})
    return provider, channel_id


def _json(raw: Any) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}

"""Several hubs on one Redis, as real processes: they share the Socket.IO rooms (the Redis
manager), split the results stream (one consumer group), run one schedule, and take over the
results a killed hub held.

What the hubs share here, and what they cannot: every hub reads the same Redis, so the directory,
the results stream, presence, sessions and the schedule are common, and a socket authenticates on
any hub with a token another hub issued (the token is checked offline, its session in Redis).
The store is not common without MongoDB: the embedded store lives inside one hub process, so
users, channels and the trades a hub's relay writes stay in that hub. Hence:

- everything is set up through hub A (users, channels, subscriptions in A's store);
- the provider watches on hub A (its channel rooms come from A's store at connect), subscribers
  watch on hubs B and C (a subscriber's room needs only its token);
- the live feeds are checked by ``trade_id``: each execution once, none missing, whichever hub's
  relay wrote and emitted it;
- what needs one store for every hub (a provider watching on hub B, every event in the store of
  the hub the client reads when it arrives, the trades of all relays in one ``GET /api/trades``)
  runs only with ``MONGODB_URL`` set: the same fixtures, then against a real MongoDB.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis

from core import keys
from signal_hub.presence import Presence
from signal_hub.relay import Relay, ensure_group, records_of
from tests.client import Api, Live, User, live
from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import HubProc, System, redis_url, running_system, wait_until

HUBS_DB = UNIT_DB + 4
SHARED_STORE = bool(os.environ.get("MONGODB_URL"))
needs_shared_store = pytest.mark.skipif(
    not SHARED_STORE,
    reason="needs MONGODB_URL: without MongoDB each hub has an embedded store of its own "
    "(it lives in the hub's process), so hubs share no users, channels or trades",
)

# Batches of one and a slower paper broker: a signal's results reach the stream as many entries
# over a few hundred ms, so every hub gets some and a stopped hub is handed some.
HUBS_ENV = {"DRAIN_BATCH_SIZE": "1", "DRAIN_CONCURRENCY": "2", "PAPER_LATENCY_MS": "60"}

pytestmark = pytest.mark.timeout(180)


@dataclass
class Hubs:
    system: System
    a: HubProc
    b: HubProc
    c: HubProc
    api: Api  # on hub A
    redis: redis.Redis

    @property
    def all(self) -> list[HubProc]:
        return [self.a, self.b, self.c]


@pytest.fixture(scope="module")
def hubs() -> Iterator[Hubs]:
    with running_system(HUBS_DB, LOG_DIR / "hubs", **HUBS_ENV) as system:
        a, b, c = system.start_hubs(["hub_a", "hub_b", "hub_c"])
        system.start_pool("paper", workers=2)
        system.start_reaper()
        r = redis.Redis.from_url(redis_url(HUBS_DB), decode_responses=True)
        with httpx.Client(base_url=a.base_url, timeout=10) as http:
            yield Hubs(system, a, b, c, Api(http), r)
        r.close()


def signal_to(channel_id: str, **extra: Any) -> dict[str, Any]:
    return {"channel_id": channel_id, "asset": "EURUSD", "direction": "CALL",
            "expiry_seconds": 60, **extra}  # fmt: skip


def new_channel(api: Api, subscribers: int, **fields: Any) -> tuple[User, str, list[User]]:
    provider = api.signup("provider")
    channel_id = str(api.channel(provider, **fields)["id"])
    users = [
        api.subscriber(channel_id, {"mode": "fixed", "amount": 1})[0] for _ in range(subscribers)
    ]
    return provider, channel_id, users


def feed(watcher: Live, signal_ids: set[str]) -> Counter[str]:
    """How many times each trade of ``signal_ids`` reached ``watcher``."""
    return Counter(e["trade_id"] for e in watcher.executions if e["signal_id"] in signal_ids)


def executions_relayed(hub: HubProc) -> int:
    """The copies this hub's relay handled (its ``ctc_executions_total``)."""
    text = httpx.get(f"{hub.base_url}/metrics", timeout=5).text
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ctc_executions_total{")
        )
    )


async def wait_for_trades(watcher: Live, trades: int, signal_ids: set[str], what: str) -> None:
    await watcher.wait_for(what, lambda: len(feed(watcher, signal_ids)) >= trades, timeout=30)


async def test_provider_and_subscribers_on_different_hubs_see_each_event_once(
    hubs: Hubs,
) -> None:
    """The provider on hub A, subscribers on hubs B and C, results split between the three
    relays: every execution reaches the channel's room and the subscriber's room exactly once,
    whichever hub relayed it, and the hubs' counts add up to the whole (no record relayed twice)."""
    provider, channel_id, users = new_channel(hubs.api, 12)
    before = sum(executions_relayed(h) for h in hubs.all)
    watcher = await live(hubs.a.base_url, "/provider", provider)
    mine = [
        await live((hubs.b if i % 2 else hubs.c).base_url, "/subscriber", user)
        for i, user in enumerate(users[:8])
    ]
    sent: list[str] = []
    try:
        # Until at least two hubs relayed something: which hub's XREADGROUP gets an entry is
        # Redis's choice, not ours.
        relayed: list[int] = [0, 0, 0]
        while len(sent) < 3 or (sum(1 for n in relayed if n) < 2 and len(sent) < 10):
            ack = await watcher.emit("signal", signal_to(channel_id))
            assert ack["ok"] and ack["fanout"]["total"] == 12, ack
            sent.append(ack["signal_id"])
            await wait_for_trades(watcher, 12 * len(sent), set(sent), "every execution")
            relayed = [executions_relayed(h) for h in hubs.all]
        await asyncio.sleep(0.5)  # a repeat would land within this
        for sub in mine:
            await sub.wait_for("own executions", lambda s=sub: len(feed(s, set(sent))) >= len(sent))
    finally:
        await watcher.close()
        for sub in mine:
            await sub.close()

    seen = feed(watcher, set(sent))
    assert len(seen) == 12 * len(sent), f"missing: {12 * len(sent) - len(seen)}"
    assert max(seen.values()) == 1, {t: n for t, n in seen.items() if n > 1}
    assert {e["status"] for e in watcher.executions} == {"placed"}
    for user, sub in zip(users, mine, strict=False):
        own = feed(sub, set(sent))
        assert len(own) == len(sent) and max(own.values()) == 1, own
        assert {e["subscriber_id"] for e in sub.executions} == {user.id}
    assert sum(1 for n in relayed if n) >= 2, f"one hub relayed everything: {relayed}"
    assert sum(relayed) - before == 12 * len(sent), relayed


@needs_shared_store
async def test_hubs_share_the_store(hubs: Hubs) -> None:
    """With MongoDB: a channel made through hub A is watched on hub B (its rooms come from the
    store at connect), subscribers sign up through hub C, and whichever hub relays a record, it
    is in the store when its event arrives, on every hub's REST."""
    provider, channel_id, _ = new_channel(hubs.api, 4)
    with httpx.Client(base_url=hubs.c.base_url, timeout=10) as http:
        api_c = Api(http)
        users = [api_c.subscriber(channel_id, {"mode": "fixed", "amount": 1})[0] for _ in range(4)]
    watcher = await live(hubs.b.base_url, "/provider", provider, checked=True)
    own = await live(hubs.a.base_url, "/subscriber", users[0])
    try:
        sent: list[str] = []
        for _ in range(3):
            ack = await watcher.emit("signal", signal_to(channel_id))
            assert ack["ok"] and ack["fanout"]["total"] == 8, ack
            sent.append(ack["signal_id"])
        await wait_for_trades(watcher, 24, set(sent), "every execution")
        await own.wait_for("own executions", lambda: len(feed(own, set(sent))) >= 3)
        await asyncio.sleep(0.5)
    finally:
        await watcher.close()
        await own.close()
    seen = feed(watcher, set(sent))
    assert len(seen) == 24 and max(seen.values()) == 1, seen
    assert watcher.unstored == [], watcher.unstored
    for hub in hubs.all:
        for signal_id in sent:
            r = httpx.get(
                f"{hub.base_url}/api/trades?signal_id={signal_id}&limit=100",
                headers=provider.headers,
                timeout=10,
            )
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 8, (hub.proc.name, r.json())
        r = httpx.get(f"{hub.base_url}/api/trades?mine=1", headers=users[0].headers, timeout=10)
        assert r.status_code == 200, r.text
        assert {t["signal_id"] for t in r.json()["items"]} == set(sent), (hub.proc.name, r.json())


async def test_a_scheduled_signal_fires_once_with_three_hubs(hubs: Hubs) -> None:
    """Every hub runs the scheduler; signals scheduled for one instant fan out once each: one
    hub says it fired each, and each subscriber is bought once per signal."""
    provider, channel_id, _ = new_channel(hubs.api, 3)
    watcher = await live(hubs.a.base_url, "/provider", provider)
    instant = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    try:
        acks = [await watcher.emit("signal", signal_to(channel_id, at=instant)) for _ in range(8)]
        assert all(a["ok"] and a["status"] == "scheduled" for a in acks), acks
        sent = {a["signal_id"] for a in acks}
        await wait_for_trades(watcher, 3 * len(sent), sent, "every scheduled execution")
        await asyncio.sleep(0.5)
    finally:
        await watcher.close()
    seen = feed(watcher, sent)
    assert len(seen) == 3 * len(sent) and max(seen.values()) == 1, seen
    fired: Counter[str] = Counter()
    for hub in hubs.all:
        log = hub.proc.log.read_text(errors="replace")
        fired.update(m for m in re.findall(r"scheduled signal (\w+) fired", log) if m in sent)
    assert fired == Counter(dict.fromkeys(sent, 1)), fired
    assert hubs.redis.zcard(keys.SCHEDULED) == 0


def held_by(r: redis.Redis, consumer: str) -> dict[str, set[str]]:
    """The results a consumer took and has not acknowledged: entry id -> its trade ids."""
    pending: Any = r.xpending_range(
        keys.RESULTS, keys.RESULTS_GROUP, "-", "+", 10_000, consumername=consumer
    )
    held: dict[str, set[str]] = {}
    for p in pending:
        entries: Any = r.xrange(keys.RESULTS, p["message_id"], p["message_id"])
        for entry_id, fields in entries:
            held[entry_id] = {x["trade_id"] for x in records_of(fields) if "trade_id" in x}
    return held


async def test_a_hub_killed_with_results_pending_is_taken_over(hubs: Hubs) -> None:
    """Hub C is stopped while it waits on the results stream, so Redis hands it entries it never
    handles; then it is SIGKILLed. A live hub takes them over once C's heartbeat is gone: every
    execution reaches the provider (on A) and its subscriber (on B), and only a trade C held may
    arrive twice (C may have emitted a record it had not yet acknowledged; ``trade_id`` lets a
    client drop the repeat)."""
    provider, channel_id, users = new_channel(hubs.api, 16, max_signal_delay_ms=10_000)
    watcher = await live(hubs.a.base_url, "/provider", provider)
    mine = [await live(hubs.b.base_url, "/subscriber", u) for u in users]
    victim = hubs.c
    sent: list[str] = []
    held: dict[str, set[str]] = {}
    try:
        # Redis hands each new entry to the hub that has waited longest in XREADGROUP, stopped or
        # not, and a stopped hub's read stays open for its BLOCK (500 ms): C, stopped as the
        # workers' results begin to arrive one batch (of one) at a time, is mostly handed one.
        for _ in range(12):
            await asyncio.sleep(0.3)
            ack = await watcher.emit("signal", signal_to(channel_id))
            assert ack["ok"] and ack["fanout"]["total"] == 16, ack
            sent.append(ack["signal_id"])
            os.kill(victim.proc.popen.pid, signal.SIGSTOP)
            await asyncio.sleep(0.8)  # C's read has timed out: it is handed no more
            held = held_by(hubs.redis, victim.consumer)
            if any(held.values()):
                break
            os.kill(victim.proc.popen.pid, signal.SIGCONT)
            await wait_for_trades(watcher, 16 * len(sent), set(sent), "every execution")
        assert any(held.values()), "hub C was never handed an execution while stopped"
        victim.proc.stop(signal.SIGKILL)

        def taken_over() -> bool:
            consumers: Any = hubs.redis.xinfo_consumers(keys.RESULTS, keys.RESULTS_GROUP)
            return victim.consumer not in {str(c["name"]) for c in consumers}

        await asyncio.to_thread(wait_until, taken_over, 20, 0.1, "C's results taken over")
        await wait_for_trades(watcher, 16 * len(sent), set(sent), "every execution")
        for sub in mine:
            await sub.wait_for("own executions", lambda s=sub: len(feed(s, set(sent))) >= len(sent))
        await asyncio.sleep(0.5)
    finally:
        await watcher.close()
        for sub in mine:
            await sub.close()

    held_trades = set().union(*held.values())
    assert held_trades, held
    seen = feed(watcher, set(sent))
    assert len(seen) == 16 * len(sent), f"missing: {16 * len(sent) - len(seen)}"
    repeats = {t for t, n in seen.items() if n > 1}
    assert repeats <= held_trades, repeats - held_trades
    assert max(seen.values()) <= 2, seen
    assert held_trades <= set(seen)
    for user, sub in zip(users, mine, strict=True):
        own = feed(sub, set(sent))
        assert len(own) == len(sent), (user.id, own)
        assert {t for t, n in own.items() if n > 1} <= held_trades, own
    wait_until(
        lambda: hubs.redis.xpending(keys.RESULTS, keys.RESULTS_GROUP)["pending"] == 0,
        what="nothing left pending",
    )
    if SHARED_STORE:  # every record, whichever hub wrote it, in the one store
        for signal_id in sent:
            items = hubs.api.ok("GET", f"/api/trades?signal_id={signal_id}&limit=100", provider)[
                "items"
            ]
            assert len(items) == 16, items


class _Recording(Relay):
    """A relay whose handling only records which entries it was given, and acknowledges them."""

    def __init__(self, redis: Redis, consumer: str, handled: list[str]) -> None:
        hub: Any = SimpleNamespace(
            redis=redis, settings=SimpleNamespace(log_level="INFO"), presence=Presence(redis)
        )
        super().__init__(hub, consumer)
        self.handled = handled

    async def handle(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        await asyncio.sleep(0.01)  # writing to the store, emitting
        self.handled += [entry_id for entry_id, _ in entries]
        await self.redis.xack(keys.RESULTS, keys.RESULTS_GROUP, *[i for i, _ in entries])


def in_step(client: Redis, arrived: list[str]) -> Redis:
    """``client``, whose reads of a consumer's pending records wait (a moment at most) until
    the other hub's client has read them too: two hubs that looked at the same instant."""
    read = client.xpending_range

    async def xpending_range(*args: Any, **kwargs: Any) -> Any:
        pending = await read(*args, **kwargs)
        arrived.append("read")
        for _ in range(50):
            if len(arrived) >= 2:
                break
            await asyncio.sleep(0.01)
        return pending

    client.xpending_range = xpending_range  # type: ignore[method-assign]
    return client


async def test_two_hubs_take_a_dead_hubs_results_over_once(
    redis: Redis, unit_redis_url: str
) -> None:
    """Two live hubs notice the same dead one at the same instant: its pending results are
    handled by one of them, once, not by both (each would emit them again)."""
    await ensure_group(redis)
    for i in range(40):
        await redis.xadd(keys.RESULTS, {"kind": "signal", "data": f'{{"n": {i}}}'})
    await redis.xreadgroup(keys.RESULTS_GROUP, "dead", {keys.RESULTS: ">"}, count=100)
    handled: list[str] = []
    arrived: list[str] = []
    clients = [
        in_step(Redis.from_url(unit_redis_url, decode_responses=True), arrived) for _ in range(2)
    ]
    a, b = (_Recording(c, f"hub-{n}", handled) for n, c in zip("ab", clients, strict=True))
    try:
        await a._beat()
        await b._beat()  # both alive
        await asyncio.gather(a._claim_from_dead_hubs(), b._claim_from_dead_hubs())
    finally:
        for client in clients:
            await client.aclose()
    assert len(handled) == 40 and len(set(handled)) == 40, Counter(handled).most_common(3)
    consumers: Any = await redis.xinfo_consumers(keys.RESULTS, keys.RESULTS_GROUP)
    assert "dead" not in {c["name"] for c in consumers}


async def test_a_hub_started_beside_live_ones_leaves_their_directory_alone(hubs: Hubs) -> None:
    """A hub that starts while others run (a rolling deploy) does not rebuild the directory from
    the store: the live hubs keep it in step, and a rebuild would race their writes (read the
    store, then replace the sets: a subscription removed in between would come back). Here the
    new hub's store is even empty (embedded, its own), so a rebuild would also empty the gauge
    of active subscriptions."""
    _, channel_id, _ = new_channel(hubs.api, 3)
    directory = keys.directory(channel_id, "paper")
    before = (hubs.redis.smembers(directory), hubs.redis.smembers(keys.active_subscribers("paper")))
    assert len(before[0]) == 3 and before[0] <= before[1]
    (late,) = hubs.system.start_hubs(["hub_d"])
    try:
        after = (
            hubs.redis.smembers(directory),
            hubs.redis.smembers(keys.active_subscribers("paper")),
        )
        assert after == before
        assert "not rebuilt" in late.proc.log.read_text()
    finally:
        late.proc.stop()

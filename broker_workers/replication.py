"""The sending mark must be on a replica before the broker is called (DESIGN.md, invariant 6).

Redis replicates asynchronously: a mark the master acknowledged can still be lost with it. If the
master dies and Sentinel promotes a replica that never got the mark (or the claim before it),
the subscriber is unclaimed again on the new master, another drain buys it, and the broker sees
two purchases. So after the gate marks a batch ``sending`` and before anything is bought, the
worker asks Redis to ``WAIT`` until ``REDIS_WAIT_REPLICAS`` replicas confirm its writes, for at
most ``REDIS_WAIT_MS``.

``WAIT`` counts the writes of the connection it runs on, and a pooled client may run the mark on
another one; so the worker writes a probe key (``replprobe:{W}``) and waits for that, on one
connection, in one round trip. Replication is one ordered stream: a replica that has the probe
has every write acknowledged before it, the mark included.

A batch not confirmed in time is not sent. Its subscribers stay marked ``sending`` by this
worker (so no one else may buy them) and are listed in ``unreplicated:{S}``; the drain hands them
to the reaper with its other unanswered ones, and after the deadline, when nothing more can be
bought, the reaper asks the broker: nothing is found (we never sent), so each ends
``skipped``/``not_replicated`` - or, if the failover did lose the claim and another worker bought
it on the new master, the reaper finds that purchase and records it ``placed``. Either way one
record and at most one purchase.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import keys
from core.clock import now_ms

PROBE_TTL_MS = 10_000


async def replicated(redis: Redis, probe_key: str, replicas: int, timeout_ms: int) -> bool:
    """True when at least ``replicas`` replicas hold every write this process made before the
    call (0 replicas: always, without asking). A Redis that cannot answer is a no. ``probe_key``:
    the worker's ``replprobe:{W}`` on the shard whose writes are asked about."""
    if replicas <= 0:
        return True
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(probe_key, now_ms(), px=PROBE_TTL_MS)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            _, acknowledged = await pipe.execute()
    except RedisError:
        return False
    return int(acknowledged) >= replicas


async def hold(redis: Redis, key: str, subscription_ids: Sequence[str]) -> None:
    """Remember why these marked subscribers were not sent, for the reaper's record (best
    effort: lost, the record says ``expired``, which is also true). ``key``: the signal's
    ``unreplicated:{S}`` on the shard of the marks."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, *subscription_ids)
            pipe.expire(key, keys.SIGNAL_TTL_S)
            await pipe.execute()
    except RedisError:
        pass

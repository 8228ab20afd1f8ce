"""The hot path's Redis shards: which Redis holds a subscriber's work, and under which hash tag.

One Redis core caps the system (every claim, gate and finish of every copy runs there), so the hot
path can be split over K shards. A shard is a Redis client and a hash tag (:class:`Shard`); every
hot-path key of that shard carries the tag first (:func:`core.keys.on_shard`), so all the keys a
script touches share one slot and a shard can be one master of a Redis Cluster.

- ``REDIS_SHARDS=url1,url2,url3``: K plain Redis servers, shard ``i`` on ``url i``, tag ``s<i>``.
- ``REDIS_CLUSTER=redis://host:port`` (any node of a Redis Cluster): one shard per master (or
  ``REDIS_CLUSTER_SHARDS`` of them, spread over the masters in turn), each under a tag chosen at
  start-up so that its slot is served by that master (:func:`cluster_tags`). Every process reads
  the same layout, so they all choose the same tags; re-sharding the cluster while signals are in
  flight is not supported.
- Neither (the default): one shard, the ``REDIS_URL`` server, no tag: the layout and the scripts
  are exactly those of an unsharded deployment.

A subscription lives on the shard of its broker account, ``crc32(account id) mod K``
(:func:`shard_index`): all of an account's subscriptions share one shard, so its daily risk
counters and its recorded contracts (which the reconciliation of a lost answer reads) are whole on
one shard. The channel's directory (``dir:``, ``dirspare:``, ``subs:``) is split the same way;
the channel entry (``chan:``) is on every shard. Shard 0 is the home shard: a signal's checks,
resend answer, scheduling and record on the results stream are there. Everything that is not the
hot path (RQ's queues, sessions, presence, worker registry, health) stays on ``REDIS_URL``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from core import keys
from core.connections import redis_client
from core.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class Shard:
    """A Redis client and the hash tag of the hot-path keys it holds (``""``: unsharded)."""

    redis: Redis
    tag: str = ""
    index: int = 0
    cluster: bool = False  # a Redis Cluster client: no MULTI across the pipeline

    def key(self, key: str) -> str:
        return keys.on_shard(self.tag, key)


def shard_index(account_id: str, count: int) -> int:
    """The shard of a broker account's subscriptions: stable across processes and restarts."""
    if count <= 1:
        return 0
    return zlib.crc32(account_id.encode()) % count


@dataclass(frozen=True)
class Shards:
    """Every shard of the deployment, in order; shard 0 is the home shard."""

    all: tuple[Shard, ...]

    @property
    def home(self) -> Shard:
        return self.all[0]

    @property
    def sharded(self) -> bool:
        """False for the default single, untagged shard (the scripts' unsharded paths)."""
        return bool(self.all[0].tag)

    def of_account(self, account_id: str) -> Shard:
        return self.all[shard_index(account_id, len(self.all))]

    def __getitem__(self, index: int) -> Shard:
        return self.all[index]

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self) -> Iterator[Shard]:
        return iter(self.all)

    async def aclose(self) -> None:
        """Close the shards' own clients (not the unsharded shard's, which is ``REDIS_URL``'s)."""
        if not self.sharded:
            return
        closed: set[int] = set()
        for shard in self.all:
            if id(shard.redis) not in closed:
                closed.add(id(shard.redis))
                await shard.redis.aclose()


def unsharded(redis: Redis) -> Shards:
    return Shards((Shard(redis),))


def open_shards(settings: CommonSettings, main: Redis) -> Shards:
    """The shards ``settings`` name; ``main`` (``REDIS_URL``'s client) serves the unsharded one."""
    if settings.redis_cluster:
        client = RedisCluster.from_url(settings.redis_cluster, decode_responses=True)
        tags = cluster_tags(settings.redis_cluster, settings.redis_cluster_shards)
        return Shards(
            tuple(Shard(cast(Redis, client), tag, i, cluster=True) for i, tag in enumerate(tags))
        )
    if settings.redis_shards:
        return Shards(
            tuple(
                Shard(redis_client(url), f"s{i}", i) for i, url in enumerate(settings.redis_shards)
            )
        )
    return unsharded(main)


def cluster_tags(url: str, count: int = 0) -> list[str]:
    """One hash tag per shard, shard ``i`` on the ``i``-th master (by its first slot, in turn when
    there are more shards than masters): the first of ``s<i>-0``, ``s<i>-1``, ... whose slot that
    master serves. ``count`` 0: one shard per master."""
    masters = cluster_masters(url)
    tags = []
    for i in range(count or len(masters)):
        ranges = masters[i % len(masters)]
        n = 0
        while not any(lo <= key_slot(f"s{i}-{n}".encode()) <= hi for lo, hi in ranges):
            n += 1
        tags.append(f"s{i}-{n}")
    return tags


def cluster_masters(url: str) -> list[list[tuple[int, int]]]:
    """The slot ranges of each master of the cluster ``url`` belongs to, by their first slot."""
    node = SyncRedis.from_url(url)
    try:
        layout: Any = node.execute_command("CLUSTER SLOTS")
    finally:
        node.close()
    by_master: dict[str, list[tuple[int, int]]] = {}
    for entry in layout:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        by_master.setdefault(str(master[2]), []).append((start, end))
    return sorted((sorted(r) for r in by_master.values()), key=lambda r: r[0][0])


async def daily_counters(shards: Shards, subs: list[dict[str, Any]], day: str) -> list[Any]:
    """Each subscription's risk counters of ``day`` (``keys.daily``), read on the shard of its
    account (store documents: ``_id``, ``broker_account_id``)."""
    replies = []
    for sub in subs:
        shard = shards.of_account(sub.get("broker_account_id") or "")
        replies.append(await shard.redis.hgetall(shard.key(keys.daily(sub["_id"], day))))
    return replies

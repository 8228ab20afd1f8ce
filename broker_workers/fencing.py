"""A worker's lease on its claims, known locally, and the fencing that follows from it.

DESIGN invariant 6: a worker host cut off from the network must not complete a purchase whose
claim it lost. The reaper takes a worker's claims once its lease key (``keys.worker_heartbeat``)
has expired in Redis; a worker cut off from Redis cannot learn that, and a purchase it writes to
a TCP socket during the cut is retransmitted by the kernel when the link returns. So:

- **A lease is a token with a local deadline.** Taking a lease writes a new random token with a
  TTL; renewing it (``core/lua/renew_lease.lua``) extends the TTL only while the key still holds
  that token. The worker knows until when its lease is surely valid without asking Redis: the
  instant it *sent* its last successful renewal, plus the TTL, less ``LEASE_MARGIN_MS``. Redis
  received that renewal later than it was sent, so the key lives at least until
  ``sent + TTL``; the margin covers a Redis clock running fast against ours (rate drift, a few
  hundred ppm at worst with NTP, i.e. a few ms over a 5 s TTL) and a request's one-way trip to
  the broker. A lease that lapsed locally is never renewed: the worker takes a new one under a
  new token, so that nothing marked or sent under the old token passes as the new lease.
- **Nothing is sent past the local deadline.** The send gate (``mark_sending.lua``) checks the
  token, and every order carries its lease (:class:`LeaseTicket`); adapters call
  :func:`broker_workers.adapters.base.ensure_fenced` right before a purchase's bytes go out.
- **Connections are aborted when the lease is lost.** At the local deadline the worker aborts its
  broker connections and its own Redis connections (:func:`abort_transport`: ``SO_LINGER`` 0, then
  the transport's ``abort``): the kernel discards unsent bytes and answers the peer with a reset,
  so nothing written during a cut goes out when the link returns. New connections are opened
  as usual; they carry no order of the old lease.
- **A lease counts only once a replica holds it** (with ``REDIS_WAIT_REPLICAS``, as the sending
  mark does, :mod:`broker_workers.replication`): a renewal acknowledged by a master that then
  dies is not on the promoted replica, where the key would lapse (and the reaper adopt the
  claims) before a deadline reckoned from that renewal.
- **The paper ledger checks the lease itself** (``buy.lua``: its buy refuses when the worker's
  lease key does not hold the order's token): fencing at the broker.

Why the reaper cannot act too early: it adopts a worker's claims only once the lease key is gone
from Redis, at least ``TTL`` after the last renewal was sent, i.e. at least ``LEASE_MARGIN_MS``
after the worker's local deadline, when the worker has stopped sending and aborted its
connections; and it reconciles an orphaned purchase only after the signal's deadline plus
``RECONCILE_AFTER_MS`` as well (docs/failover.md, "A worker host cut off").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger
from redis.asyncio import Redis

from broker_workers.adapters.base import LeaseLost
from broker_workers.replication import replicated
from core import keys, scripts
from core.shards import Shard

_LINGER_ZERO = struct.pack("ii", 1, 0)


def _disconnect(fd: int) -> None:
    """``connect(AF_UNSPEC)`` on a TCP socket (Linux): the connection itself is reset and its
    queues purged, whoever else holds a descriptor of it (a forked child)."""
    if _LIBC is None:
        return
    address = ctypes.create_string_buffer(struct.pack("=H", socket.AF_UNSPEC), 16)
    _LIBC.connect(fd, address, len(address))


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def abort_transport(transport: Any) -> None:
    """Close an asyncio transport at once, discarding what the kernel has not sent yet: with
    ``SO_LINGER`` 0 a close resets the connection instead of delivering the send buffer, and
    the connection is reset first in any case, so that a copy of the descriptor in another
    process cannot keep it (and its unsent bytes) alive."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            _disconnect(sock.fileno())
    transport.abort()


def abort_redis(redis: Redis) -> int:
    """Abort every connection of a redis-py asyncio client's pool (:func:`abort_transport`); a
    command waiting on one fails and is retried on a new connection. How many were aborted."""
    pool = redis.connection_pool
    connections = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    aborted = 0
    for connection in connections:
        writer = getattr(connection, "_writer", None)
        if writer is not None and not writer.transport.is_closing():
            abort_transport(writer.transport)
            aborted += 1
    return aborted


class LeaseNotReplicated(Exception):
    """A new lease that no replica confirmed in time: not taken (tried again)."""


@dataclass(frozen=True, slots=True, eq=False)
class LeaseTicket:
    """One lease of a worker, as the orders marked under it carry it (:class:`~broker_workers.
    adapters.base.Fence`)."""

    lease: Lease
    token: str

    @property
    def worker_id(self) -> str:
        return self.lease.worker_id

    def check(self) -> None:
        if not self.lease.holds(self.token):
            raise LeaseLost(f"the lease of worker {self.worker_id} is no longer surely held")


class Lease:
    """A worker's lease: taken at start, renewed every ``renew_every_s``, lost when its local
    deadline passes without a renewal; then ``on_lost`` runs (once per lease) and a new lease is
    taken as soon as Redis answers."""

    def __init__(
        self,
        redis: Redis,
        worker_id: str,
        broker: str,
        *,
        ttl_ms: int,
        margin_ms: int,
        renew_every_s: float,
        on_lost: Callable[[], None] = lambda: None,
        wait_replicas: int = 0,
        wait_ms: int = 100,
        shards: Sequence[Shard] = (),
    ) -> None:
        if margin_ms < 0 or margin_ms + renew_every_s * 1000 >= ttl_ms:
            raise ValueError(
                f"a lease of {ttl_ms} ms cannot be renewed every {renew_every_s} s with a "
                f"margin of {margin_ms} ms"
            )
        self.redis = redis
        self.worker_id = worker_id
        self.broker = broker
        self.ttl_ms = ttl_ms
        self.margin_s = margin_ms / 1000
        self.renew_every_s = renew_every_s
        self.on_lost = on_lost
        self.wait_replicas, self.wait_ms = wait_replicas, wait_ms
        # The hot-path shards (sharded only): each gate reads the lease beside the claims on its
        # shard, so the lease is written, renewed and confirmed on every one, and held only
        # while it holds on all of them.
        self.shards = tuple(shards)
        self.token = ""
        self.valid_until = 0.0  # time.monotonic(): the local deadline
        self.lost = 0  # leases lost in this process

    def held(self) -> bool:
        """Is the current lease surely valid now?"""
        return bool(self.token) and time.monotonic() < self.valid_until

    def holds(self, token: str) -> bool:
        return token == self.token and self.held()

    def ticket(self) -> LeaseTicket | None:
        """The current lease, for the orders marked under it; ``None`` when none is held."""
        return LeaseTicket(self, self.token) if self.held() else None

    def remaining_s(self) -> float:
        return max(0.0, self.valid_until - time.monotonic()) if self.token else 0.0

    async def take(self) -> None:
        """A new lease under a new token, then the worker listed for the reaper (never listed
        without a lease: the reaper would take it for dead)."""
        token = secrets.token_hex(12)
        sent = time.monotonic()
        heartbeat = keys.worker_heartbeat(self.worker_id)
        await self.redis.set(heartbeat, token, px=self.ttl_ms)
        for shard in self.shards:
            await shard.redis.set(shard.key(heartbeat), token, px=self.ttl_ms)
        if not await self._replicated():
            raise LeaseNotReplicated(f"no replica confirmed the lease of {self.worker_id}")
        self.token, self.valid_until = token, self._deadline(sent)
        await self._listed()

    async def renew(self) -> bool:
        """Extend the current lease; False if Redis no longer holds it."""
        token, sent = self.token, time.monotonic()
        renewed = True
        places: list[scripts.Target] = [self.redis, *self.shards]
        for place in places:  # every copy, even after one was lost
            renewed = renewed & await scripts.renew_lease(
                place, worker_id=self.worker_id, token=token, ttl_ms=self.ttl_ms
            )
        if renewed and not await self._replicated():
            return True  # held, but not extended: the next renewal may be confirmed
        if renewed and token == self.token and self.held():
            self.valid_until = max(self.valid_until, self._deadline(sent))
            await self._listed()
        return renewed

    async def _replicated(self) -> bool:
        """Do the replicas asked for hold the lease's last write (always, with none asked)?"""
        probe = keys.replication_probe(self.worker_id)
        if not await replicated(self.redis, probe, self.wait_replicas, self.wait_ms):
            return False
        for shard in self.shards:
            if not await replicated(
                shard.redis, shard.key(probe), self.wait_replicas, self.wait_ms
            ):
                return False
        return True

    async def _listed(self) -> None:
        """In the broker's worker set, again with each renewal: a reaper that found the lease
        lapsed forgets the worker after releasing its claims, and may do so just after the
        worker took a new lease."""
        await self.redis.sadd(keys.workers(self.broker), self.worker_id)

    def _deadline(self, sent: float) -> float:
        return sent + self.ttl_ms / 1000 - self.margin_s

    def lose(self, why: str) -> None:
        """Forget the current lease (its token never comes back) and fence: ``on_lost``."""
        if not self.token:
            return
        logger.warning("worker {} lost its lease ({}); fencing", self.worker_id, why)
        self.token, self.valid_until = "", 0.0
        self.lost += 1
        try:
            self.on_lost()
        except Exception:
            logger.exception("fencing after a lost lease failed")

    async def keep(self) -> None:
        """Renew while held (each attempt bounded by the time the lease has left), lose it at its
        local deadline, take a new one once Redis answers again. Runs for the life of the
        worker."""
        while True:
            if self.token and not self.held():
                self.lose("its local deadline passed without a renewal")
            timeout = min(self.renew_every_s, self.remaining_s()) if self.token else None
            try:
                if self.token:
                    if not await asyncio.wait_for(self.renew(), max(0.01, timeout or 0)):
                        self.lose("Redis no longer holds it")
                        continue
                else:
                    await asyncio.wait_for(self.take(), self.renew_every_s)
                    logger.info("worker {} took a new lease", self.worker_id)
            except Exception as exc:  # Redis unreachable, a timeout: the lease has slack
                logger.warning("lease renewal failed: {}", type(exc).__name__)
            pause = self.renew_every_s
            if self.token:
                pause = min(pause, self.remaining_s())
            await asyncio.sleep(pause)

"""Scheduled signals: each fans out at its instant, from whichever hub gets there first.

Every hub runs :func:`run_scheduler`. Taking a due signal out of the ``scheduled`` set is the first
step of the expansion script, so with several hubs each signal still fans out once. A signal whose
hub was down at its instant fires when one comes back; its deadline counts from the instant it was
scheduled for, so if that has passed every subscriber ends ``skipped``/``expired``.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from redis.asyncio import Redis

from core import keys
from core.clock import now_ms
from core.shards import Shard
from signal_hub.intake import Intake

POLL_S = 0.02
BATCH = 100


async def fire_due(redis: Redis | Shard, intake: Intake) -> float:
    """Fire what is due; return how long to sleep before looking again (s). While nothing is
    due, one look at the earliest entry is the whole cost of a pass. ``redis``: where the
    ``scheduled`` set is (the home shard, sharded)."""
    shard = redis if isinstance(redis, Shard) else Shard(redis)
    redis, scheduled = shard.redis, shard.key(keys.SCHEDULED)
    upcoming = await redis.zrange(scheduled, 0, 0, withscores=True)
    if not upcoming:
        return POLL_S
    wait_ms = float(upcoming[0][1]) - now_ms()
    if wait_ms > 0:
        return min(POLL_S, wait_ms / 1000)
    due = await redis.zrangebyscore(scheduled, "-inf", now_ms(), start=0, num=BATCH)
    for signal_id in due:
        ack = await intake.fire(str(signal_id))
        if ack is not None:
            logger.info("scheduled signal {} fired: {}", signal_id, ack["fanout"])
    return 0.0


async def run_scheduler(redis: Redis | Shard, intake: Intake) -> None:
    while True:
        try:
            await asyncio.sleep(await fire_due(redis, intake))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("scheduler pass failed; retrying")
            await asyncio.sleep(0.5)

"""Kill points for the fault-injection suite.

With ``FAULT_INJECTION=1`` a worker asks Redis, at each named point of a batch, whether a test
armed that point (``SET ctc:fault:kill <point>:<nth>``); the process that reaches it
the nth time, counted across all workers, kills itself with SIGKILL there and then: no cleanup,
no goodbye, the way a crashed host or the OOM killer ends it. Disarmed after firing, so a
restarted worker lives. Without ``FAULT_INJECTION`` every point is a no-op.
"""

from __future__ import annotations

import os
import signal

from redis.asyncio import Redis

from core import scripts

POINTS = ("after_claim", "after_gate", "after_send", "after_finish")


class KillPoints:
    def __init__(self, redis: Redis, enabled: bool) -> None:
        self.redis = redis
        self.enabled = enabled

    async def reached(self, point: str) -> None:
        if self.enabled and await scripts.fault_reached(self.redis, point=point):
            os.kill(os.getpid(), signal.SIGKILL)

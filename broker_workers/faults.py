"""Kill points for the fault-injection suite.

With ``FAULT_INJECTION=1`` a worker asks Redis, at each named point of a batch, whether a test
armed that point (``SET ctc:fault:kill <point>:<nth>``); the process that reaches it the nth time,
counted across all workers, kills itself with SIGKILL there and then: no cleanup, no goodbye, the
way a crashed host or the OOM killer ends it. Disarmed after firing, so a restarted worker lives.
Without ``FAULT_INJECTION`` every point is a no-op.
"""

from __future__ import annotations

import os
import signal

from redis.asyncio import Redis

from signal_hub import keys

ARMED = keys.PREFIX + "fault:kill"
COUNTER = keys.PREFIX + "fault:count"

POINTS = ("after_claim", "after_gate", "after_send", "after_finish")

REACHED = """
local spec = redis.call('GET', KEYS[1])
if not spec then return 0 end
local point, nth = string.match(spec, '^([%w_]+):(%d+)$')
if point ~= ARGV[1] then return 0 end
if redis.call('INCR', KEYS[2]) >= tonumber(nth) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


class KillPoints:
    def __init__(self, redis: Redis, enabled: bool) -> None:
        self.enabled = enabled
        self._reached = redis.register_script(REACHED)

    async def reached(self, point: str) -> None:
        if self.enabled and await self._reached(keys=[ARMED, COUNTER], args=[point]):
            os.kill(os.getpid(), signal.SIGKILL)


async def arm(redis: Redis, point: str, nth: int = 1) -> None:
    """Make the nth passage of ``point`` (by any worker) kill that worker."""
    if point not in POINTS:
        raise ValueError(f"unknown kill point {point!r}; one of {POINTS}")
    await redis.delete(COUNTER)
    await redis.set(ARMED, f"{point}:{nth}")

"""Purchases as the brokers recorded them, with the brokers' own acceptance timestamps.

- paper: the ledger in Redis (:mod:`broker_workers.adapters.paper`). Contract ids come from one
  counter, so the contracts bought after a :class:`Mark` are ids ``seq+1 ..``; each contract holds
  its client order id (``<signal>-<subscription>``) and ``bought_ms``, Redis' clock in the buy
  script.
- deriv: the simulator's purchase log (``GET /_sim/purchases?since=n``), each with the request's
  passthrough (which names the signal) and ``time``, the simulator's clock at the debit.

Both clocks are this machine's, as is the benchmark's, so times can be subtracted directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from broker_workers.adapters.paper.ledger import CONTRACTS, SEQUENCE

_FAR = 10**12  # a ``since`` beyond any purchase: the answer is just the count
_CHUNK = 10_000


def connect(url: str) -> Redis:
    """A client that rides out dropped connections (a test elsewhere on the server may kill
    every client) rather than end the benchmark."""
    return Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 20),
        retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
    )


@dataclass(frozen=True)
class Mark:
    paper_seq: int
    sim_count: int


class Ledger:
    def __init__(self, redis: Redis, sim_url: str | None) -> None:
        self.redis = redis
        self.sim = httpx.AsyncClient(base_url=sim_url, timeout=120) if sim_url else None

    async def close(self) -> None:
        if self.sim is not None:
            await self.sim.aclose()

    async def _paper_seq(self) -> int:
        return int(await self.redis.get(SEQUENCE) or 0)

    async def _sim_purchases(self, since: int) -> tuple[int, list[dict[str, Any]]]:
        if self.sim is None:
            return 0, []
        r = await self.sim.get("/_sim/purchases", params={"since": since})
        r.raise_for_status()
        body = r.json()
        return int(body["count"]), list(body["purchases"])

    async def mark(self) -> Mark:
        return Mark(await self._paper_seq(), (await self._sim_purchases(_FAR))[0])

    async def counts(self, since: Mark) -> dict[str, int]:
        """Purchases made on each broker since the mark (whoever made them)."""
        return {
            "paper": await self._paper_seq() - since.paper_seq,
            "deriv": (await self._sim_purchases(_FAR))[0] - since.sim_count,
        }

    async def times(self, since: Mark, tag: str) -> dict[str, list[int]]:
        """Acceptance times (epoch ms) of the purchases made since the mark for ``tag`` (a
        signal id, or a baseline run's id), by broker."""
        paper: list[int] = []
        last = await self._paper_seq()
        for start in range(since.paper_seq + 1, last + 1, _CHUNK):
            ids = [str(i) for i in range(start, min(start + _CHUNK, last + 1))]
            for raw in await self.redis.hmget(CONTRACTS, ids):
                if raw:
                    contract = json.loads(raw)
                    if str(contract["client_order_id"]).startswith(f"{tag}-"):
                        paper.append(int(contract["bought_ms"]))
        _, purchases = await self._sim_purchases(since.sim_count)
        deriv = [
            int(p["time"])
            for p in purchases
            if (p.get("passthrough") or {}).get("signal_id") == tag
        ]
        return {"paper": paper, "deriv": deriv}

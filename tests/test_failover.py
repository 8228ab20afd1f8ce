"""A Redis failover in the middle of a fan-out buys nobody twice (DESIGN.md, invariants 1 and 6).

Real processes on a real Sentinel group (:mod:`tests.failover`, :mod:`tests.sentinels`): the
master is killed while the workers buy, after its replica missed the last second of its writes;
Sentinel promotes the replica and the rest of the signal runs there. Checked at the brokers' own
books and in the store, per subscriber: at most one purchase, exactly one terminal record.

The second test is the harness's own check: the same failover without ``WAIT`` does buy
subscribers twice (claims lost with the master are claimed again on the new one, by another
worker), so the first test's zero means something.
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import LOG_DIR
from tests.failover import failover_system

RUNS = 2

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="starts its own master, replica and sentinels: needs the redis-server binary",
    ),
]


def test_failover_mid_fanout_buys_nobody_twice() -> None:
    with failover_system(LOG_DIR / "failover" / "wait", wait_replicas=1) as failover:
        runs = [failover.run_once() for _ in range(RUNS)]
    for run in runs:
        assert 0 < run.bought_at_kill < run.counted, f"not mid-fan-out: {run.line()}"
        assert run.failover_s > 0
        assert run.verdict.ok, run.line()
        assert run.verdict.records == run.counted, run.line()
        assert run.doubles == 0, run.line()
        # both brokers bought: neither refused every purchase (the paper ledger, on its own
        # Redis, once refused them all for want of the worker's lease, and nothing failed)
        assert 0 < run.paper_purchases < run.purchases, run.line()
    assert len({run.signal_id for run in runs}) == RUNS


def test_without_wait_the_same_failover_buys_twice() -> None:
    with failover_system(LOG_DIR / "failover" / "nowait", wait_replicas=0) as failover:
        run = failover.run_once()
    assert 0 < run.bought_at_kill < run.counted, f"not mid-fan-out: {run.line()}"
    assert run.verdict.missing == 0, run.line()
    assert run.doubles > 0, f"the harness should see the double purchases: {run.line()}"

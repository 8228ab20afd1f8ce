"""Fixtures: a Redis database flushed per test, and a running system (hub + paper pool)."""

from __future__ import annotations

import os

# Development is an explicit choice (the published secrets stand in for missing ones); every
# process the tests start inherits it. Set before anything reads the settings.
os.environ["APP_ENV"] = "development"
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from broker_workers.deriv_sim.process import RunningSimulator, running_simulator
from tests.client import Api
from tests.procs import SIM_SEED, System, redis_url, running_system

UNIT_DB = int(os.environ.get("TEST_REDIS_DB", "11"))
SYSTEM_DB = UNIT_DB + 1
LOG_DIR = Path(os.environ.get("TEST_LOG_DIR", "/tmp/ctc-test-logs"))


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A Redis database of the tests' own, empty at the start of each test."""
    client = Redis.from_url(redis_url(UNIT_DB), decode_responses=True)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def unit_redis_url() -> str:
    return redis_url(UNIT_DB)


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    """Hub, paper and Deriv worker pools, the reaper and the Deriv simulator: real processes, one
    session.

    Tests share it and keep apart by creating their own users and channels.
    """
    with running_system(SYSTEM_DB, LOG_DIR / "system") as system:
        system.start_hub()
        system.start_pool("paper", workers=2)
        system.start_deriv_sim()
        system.start_pool("deriv", workers=1)
        system.start_reaper()
        yield system


@pytest.fixture
def api(system: System) -> Iterator[Api]:
    with httpx.Client(base_url=system.base_url, timeout=10) as http:
        yield Api(http)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    """A Deriv simulator of the module's own, on a free port."""
    with running_simulator({"PRICE_SEED": str(SIM_SEED)}) as running:
        yield running


@pytest.fixture
async def http(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's control API, reset before each test."""
    async with httpx.AsyncClient(base_url=sim.http_url, timeout=10) as client:
        assert (await client.post("/_sim/reset")).status_code == 200
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    for as long as it lives, and no async test can run beside it."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)

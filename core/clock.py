"""Wall-clock helpers: milliseconds since the epoch, and the UTC day risk counters are kept by."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_day(ms: int | None = None) -> str:
    """The UTC calendar day (``yyyymmdd``) that daily risk counters are kept by."""
    return datetime.fromtimestamp((now_ms() if ms is None else ms) / 1000, UTC).strftime("%Y%m%d")


def datetime_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(ms: int | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, as the API writes instants."""
    return None if ms is None else datetime_of(ms).isoformat().replace("+00:00", "Z")

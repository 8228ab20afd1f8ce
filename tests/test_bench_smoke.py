"""The fan-out benchmark runs end to end on a small N: every announced purchase reaches the broker,
ours and the RQ-alone baseline's. No timing is asserted; the figures are the benchmark's job."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import LOG_DIR, UNIT_DB
from tests.procs import ROOT

N = 50
BASELINE_N = 10


def test_fanout_benchmark_buys_for_every_subscriber() -> None:
    argv = [
        sys.executable, "-m", "bench.fanout", "--subscribers", str(N), "--signals", "2",
        "--brokers", "paper,deriv", "--workers-per-broker", "1", "--broker-latency-ms", "20",
        "--baseline-subscribers", str(BASELINE_N), "--redis-db", str(UNIT_DB + 2),
        "--log-dir", str(LOG_DIR / "bench"), "--json",
    ]  # fmt: skip
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["subscribers"] == N and result["brokers"] == ["paper", "deriv"]
    assert result["fanout"] == [N, N]
    assert result["purchases"]["per_signal"] == [N, N]
    for key in ("ack_ms", "expand_ms", "first_purchase_ms", "last_purchase_ms", "p99_ms"):
        assert all(v is not None for v in result[key]["per_signal"]), key
    assert result["rss_mb"]["hub"] and result["rss_mb"]["workers"]
    baseline = result["baseline"]
    assert baseline["subscribers"] == BASELINE_N
    assert baseline["purchases"] == BASELINE_N
    assert baseline["purchases_by_broker"] == {"paper": BASELINE_N // 2, "deriv": BASELINE_N // 2}
    assert result["speedup"] is not None

"""What the benchmark reads about processes on this machine: peak memory, CPU, profiles."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def command_of(pid: int) -> str:
    """The process's command name, or "" when there is none such here."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``) so far, in MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


class Profiles:
    """``py-spy record`` on some processes, raw (collapsed) stacks, one file per process."""

    def __init__(self, directory: Path, pids: dict[str, int], rate: int = 100) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        directory.mkdir(parents=True, exist_ok=True)
        self.procs = []
        for name, pid in pids.items():
            argv = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                    "--nonblocking", "--output", str(directory / f"{name}.txt")]  # fmt: skip
            with (directory / f"{name}.log").open("wb") as log:
                self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far, in seconds; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """CPU seconds used by named groups of processes between :meth:`start` and :meth:`read`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start: dict[int, float] = {}

    def _now(self) -> dict[int, float]:
        return {
            pid: used
            for pids in self.groups.values()
            for pid in pids
            if (used := cpu_s(pid)) is not None
        }

    def start(self) -> None:
        self._start = self._now()

    def read(self) -> dict[str, float]:
        now = self._now()
        return {
            name: round(sum(now.get(p, 0.0) - self._start.get(p, 0.0) for p in pids), 2)
            for name, pids in self.groups.items()
        }

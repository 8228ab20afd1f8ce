"""Building the app before publishing it, only when the build is missing or out of date.

Publishing an old ``dist`` by mistake is the failure this guards against: the build is redone when
any source file is newer than ``dist/index.html`` (the last file Vite writes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from infra.publish.errors import BuildError

Runner = Callable[[Sequence[str], Path], int]
"""Runs a command in a directory and returns its exit status (injectable, so tests need no npm)."""

_SOURCE_DIRS = ("src", "public")
"""Vite's inputs: these folders and the files at the top of the app (package.json, its lock,
vite.config.*, index.html, .env*); tests, reports and node_modules are not."""


def run_command(command: Sequence[str], cwd: Path) -> int:
    """Run ``command`` with its output on the operator's terminal."""
    try:
        return subprocess.run(list(command), cwd=cwd, check=False).returncode
    except FileNotFoundError:
        raise BuildError(f"{command[0]} is not installed: install Node.js 20+ and npm") from None


def _sources(frontend: Path) -> list[Path]:
    if not frontend.is_dir():
        return []
    files = [path for path in frontend.iterdir() if path.is_file()]
    for folder in _SOURCE_DIRS:
        files += [path for path in (frontend / folder).rglob("*") if path.is_file()]
    return files


def build_reason(frontend: Path, dist: Path) -> str | None:
    """Why ``dist`` must be (re)built from ``frontend``, or None when it is up to date."""
    index = dist / "index.html"
    if not index.is_file():
        return f"{dist} has no index.html"
    built = index.stat().st_mtime
    if any(path.stat().st_mtime > built for path in _sources(frontend)):
        return f"{frontend} has sources newer than {index}"
    return None


def _needs_install(frontend: Path) -> bool:
    installed = frontend / "node_modules" / ".package-lock.json"
    lock = frontend / "package-lock.json"
    if not installed.is_file():
        return True
    return lock.is_file() and lock.stat().st_mtime > installed.stat().st_mtime


def ensure_built(frontend: Path, dist: Path, run: Runner = run_command) -> str:
    """Build the app when it needs it; returns what was done, for the command's first lines."""
    reason = build_reason(frontend, dist)
    if reason is None:
        return "up to date"
    if not (frontend / "package.json").is_file():
        raise BuildError(f"{reason}, and {frontend} has no package.json to build it from")
    commands = [["npm", "ci"]] if _needs_install(frontend) else []
    commands.append(["npm", "run", "build"])
    for command in commands:
        status = run(command, frontend)
        if status != 0:
            raise BuildError(
                f"`{' '.join(command)}` in {frontend} failed with exit status {status}"
            )
    if build_reason(frontend, dist) is not None:
        raise BuildError(f"`npm run build` in {frontend} did not write {dist / 'index.html'}")
    return f"built ({reason})"

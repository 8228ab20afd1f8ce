"""Building the web app (``frontend/`` → ``frontend/dist``) when it is missing or stale.

Used by the demo (the hub serves ``dist``) and by the publishing command (S3 serves it). Stale
means a source file (``src/``, ``public/``, ``index.html``, the package and build configuration)
is newer than ``dist/index.html``. ``npm ci`` runs first when ``node_modules`` is missing or older
than ``package-lock.json``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "frontend"
DIST = FRONTEND / "dist"
_SOURCES = ("src", "public", "index.html", "package.json", "package-lock.json", "vite.config.ts")


class BuildError(RuntimeError):
    """The app could not be built (no npm, or the build failed); the message says which."""


def _newest(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            newest = max([newest, *(p.stat().st_mtime for p in path.rglob("*") if p.is_file())])
    return newest


def is_stale(frontend: Path = FRONTEND) -> bool:
    built = frontend / "dist" / "index.html"
    if not built.is_file():
        return True
    return _newest([frontend / name for name in _SOURCES]) > built.stat().st_mtime


def ensure_built(frontend: Path = FRONTEND, quiet: bool = False) -> bool:
    """Build ``frontend/dist`` if it is missing or stale; True if a build ran."""
    if not (frontend / "package.json").is_file() or not is_stale(frontend):
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm is not installed: install Node.js 20 and npm to build the web app")
    modules, lock = frontend / "node_modules", frontend / "package-lock.json"
    output = subprocess.DEVNULL if quiet else None
    steps = [[npm, "run", "build"]]
    if not modules.is_dir() or (lock.is_file() and lock.stat().st_mtime > modules.stat().st_mtime):
        steps.insert(0, [npm, "ci", "--no-audit", "--no-fund"])
    for step in steps:
        if subprocess.run(step, cwd=frontend, stdout=output, check=False).returncode != 0:
            raise BuildError(f"`{' '.join(step[1:])}` failed in {frontend}")
    return True

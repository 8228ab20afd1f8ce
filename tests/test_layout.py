"""The layout's one rule, kept true: dependencies run one way.

``core`` holds what the hub and the workers share and imports neither; ``signal_hub`` and
``broker_workers`` import ``core`` and never each other; no module of the three imports itself
back through others (``TYPE_CHECKING`` imports count: a cycle is a cycle). ``bench``, ``infra``
and ``tests`` are tools and may import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.procs import ROOT

PACKAGES = ("core", "signal_hub", "broker_workers")
MAY_IMPORT = {
    "core": set(),
    "signal_hub": {"core"},
    "broker_workers": {"core"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module or ``module.name``) for every import of the file, wherever it is."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def graph() -> dict[str, set[str]]:
    """Module -> the modules of our packages it imports."""
    known = modules()
    return {
        name: {target for _, target in imports_of(path) if target in known and target != name}
        for name, path in known.items()
    }


def test_packages_depend_one_way() -> None:
    wrong = []
    for name, path in modules().items():
        package = name.split(".")[0]
        for line, target in imports_of(path):
            other = target.split(".")[0]
            if other in PACKAGES and other != package and other not in MAY_IMPORT[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == [], "\n".join(wrong)


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "\n".join(cycles)


def test_the_hub_reads_the_broker_catalogue_not_the_adapters() -> None:
    """The hub learns what brokers support from ``core.brokers``, as data; it cannot even
    reach an adapter (the rule above), and the catalogue names each adapter by its path only."""
    from core.brokers import CATALOGUE

    for name, entry in CATALOGUE.items():
        module, _, cls = entry.adapter.partition(":")
        assert module.startswith("broker_workers.adapters.") and cls, name
        assert name in module

"""The registry of broker adapters, by name.

A new broker is one module here, one line in :data:`ADAPTERS`, and one ``worker_<name>`` line in the
Procfile. An out-of-tree adapter can be named by its dotted path (``package.module:ClassName``).
"""

from __future__ import annotations

import importlib
from typing import Any

from broker_workers.adapters.base import BrokerAdapter

ADAPTERS: dict[str, str] = {
    "paper": "broker_workers.adapters.paper:PaperBroker",
    "deriv": "broker_workers.adapters.deriv:DerivBroker",
}


class UnknownBroker(LookupError):
    pass


def register_adapter(name: str, path: str) -> None:
    """Add an adapter under ``name``; a name already taken is an error, not a silent override."""
    if name in ADAPTERS:
        raise ValueError(f"broker adapter {name!r} is already registered")
    ADAPTERS[name] = path


def resolve_adapter(name_or_path: str) -> type[BrokerAdapter]:
    """The adapter class for a registered name or a ``module:Class`` dotted path."""
    path = ADAPTERS.get(name_or_path, name_or_path)
    module_name, sep, class_name = path.partition(":")
    if not sep:
        raise UnknownBroker(f"unknown broker {name_or_path!r}")
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UnknownBroker(f"cannot load broker adapter {path!r}") from exc
    return cls  # type: ignore[no-any-return]


def broker_names() -> list[str]:
    return sorted(ADAPTERS)

"""Broker adapters, one module or package each, found through the broker catalogue.

The catalogue (:data:`core.brokers.CATALOGUE`) names each broker's adapter class by its dotted
path; a worker imports only its own broker's. A new broker: its adapter here (start from
``_template.py``), its entry in the catalogue, a ``worker_<name>`` line in the Procfile, and
``tests/test_adapter_conformance.py`` green for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from broker_workers.adapters.base import BrokerAdapter
from core.brokers import broker


def resolve_adapter(name: str) -> type[BrokerAdapter]:
    """The adapter class of the catalogue's broker ``name`` (:class:`core.brokers.UnknownBroker`
    if there is none)."""
    module_name, _, class_name = broker(name).adapter.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    return cls  # type: ignore[no-any-return]

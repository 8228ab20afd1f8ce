"""The audit log: every operator action, who did it, to what, when. Written to the store's
``audit`` collection, never changed afterwards, read in the admin console."""

from __future__ import annotations

from typing import Any

from signal_hub.store import Store, new_id, utcnow

OPERATOR_CLI = {"id": "cli", "email": "operator (command line)"}


async def record(
    store: Store,
    actor: dict[str, Any],
    action: str,
    target_type: str,
    target_id: str,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry = {
        "_id": new_id(),
        "at": utcnow(),
        "actor_id": actor["id"],
        "actor_email": actor["email"],
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "detail": detail or {},
    }
    await store.audit.insert_one(entry)
    return entry

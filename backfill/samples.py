"""A bounded reservoir of (source vector, target vector, text) pairs, kept in the state store.

The query adapter and score calibration need pairs of vectors of the same text under model A
and model B; the backfill sees every such pair once, so it keeps a uniform sample of them
(Algorithm R) of at most ``capacity`` items. Each daemon keeps its own reservoir (kind
``samples``, key ``"<migration>/<owner>"``) and saves it now and then; :func:`load` merges them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.backfill")
KIND = "samples"
DEFAULT_CAPACITY = 256
#: Seconds between saves of a changed reservoir (and once more when the daemon stops): a full
#: reservoir is a few MB of JSON, too much to rewrite with every progress update.
SAVE_EVERY = 30.0


@dataclass(slots=True)
class Reservoir:
    """Algorithm R over offered pairs; ``rng`` injected for tests."""

    capacity: int = DEFAULT_CAPACITY
    seen: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    changes: int = 0  # items put so far: lets the owner save only a changed reservoir

    def offer(self, item: dict[str, Any]) -> None:
        slot = self.slot()
        if slot is not None:
            self.put(slot, item)

    def slot(self) -> int | None:
        """Count one more item seen; where it goes in the sample, or None if it is not kept.

        Split from :meth:`put` so a caller builds only the items that are kept (the backfill
        reads source vectors for those alone)."""
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append({})
            return len(self.items) - 1
        j = self.rng.randrange(self.seen)
        return j if j < self.capacity else None

    def put(self, slot: int, item: dict[str, Any]) -> None:
        self.items[slot] = item
        self.changes += 1

    def to_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "seen": self.seen, "items": self.items}


def pair(point_id: int | str, text: str, a: Any, b: Sequence[float]) -> dict[str, Any]:
    return {"id": point_id, "text": text, "a": [float(x) for x in a] if a is not None else None,
            "b": [float(x) for x in b]}


async def save(store: StateStore, migration_id: str, owner: str, r: Reservoir) -> None:
    await store.upsert(KIND, f"{migration_id}/{owner}", r.to_dict())


async def save_and_refit(store: StateStore, migration_id: str, owner: str, r: Reservoir) -> str | None:
    """Save ``r``; refit the migration's adapters when :func:`adapter_store.refit_reason` says
    so. Returns the refit's reason, or ``None``. A failed refit is logged and does not stop the
    backfill (the readers keep the last record)."""
    from switchyard.proxy.dataplane import adapter_store

    await save(store, migration_id, owner, r)
    pairs = sum(1 for it in r.items if it.get("a") is not None and it.get("b") is not None)
    env = await store.get(adapter_store.KIND, migration_id)
    reason = adapter_store.refit_reason(env.data if env is not None else None, pairs, r.seen)
    if reason is None:
        return None
    try:
        rec = await adapter_store.refit(store, migration_id, seen=r.seen)
    except Exception as exc:  # noqa: BLE001 - the adapter is an aid; the backfill goes on
        log.warning("adapter refit for %s failed (%s): %s", migration_id, reason, exc)
        return None
    log.info("adapter refit for %s: %s; %s", migration_id, reason, rec.get("reason"))
    return reason


async def load(store: StateStore, migration_id: str) -> list[dict[str, Any]]:
    """Every daemon's pairs for ``migration_id``."""
    out: list[dict[str, Any]] = []
    for env in await store.list(KIND):
        if env.key.startswith(migration_id + "/"):
            out.extend(env.data.get("items") or [])
    return out

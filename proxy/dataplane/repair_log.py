"""The repair log: point ids (and filters) whose mirrored write to the target failed.

Records live in the state store. Kind ``repair``, key ``"<migration>/<point id>"``, data
``{"migration", "point_id", "reason", "at"}``: the target may be wrong for that one id. Kind
``repair_filter``, key ``"<migration>/<uuid>"``, data ``{"migration", "filter", "reason", "at"}``:
a filter-based delete or update failed, so any point may be wrong and only a full verify pass
with repair settles it. The proxy writes them; the backfill daemon drains them by re-reading
the source (:mod:`backfill.daemon`), deleting each record after its repair, unless it changed
meanwhile (a newer failure of the same id then stays for the next drain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.state.store import Envelope, StateStore

REPAIR_KIND = "repair"
REPAIR_FILTER_KIND = "repair_filter"


@dataclass(frozen=True, slots=True)
class RepairEntry:
    """One pending repair: a point id, or a filter (then ``point_id`` is ``None``)."""

    key: str
    kind: str
    migration: str
    point_id: int | str | None
    filter: Mapping[str, Any] | None
    reason: str
    at: float
    rev: int

    @classmethod
    def from_envelope(cls, env: Envelope) -> RepairEntry:
        d = env.data
        pid = d.get("point_id")
        return cls(env.key, env.kind, str(d.get("migration") or env.key.split("/", 1)[0]),
                   pid if isinstance(pid, int | str) else None,
                   d.get("filter") if isinstance(d.get("filter"), Mapping) else None,
                   str(d.get("reason") or ""), float(d.get("at") or 0.0), env.rev)


async def pending(store: StateStore, migration_id: str) -> list[RepairEntry]:
    """Every repair record (point and filter) of ``migration_id``, point records first."""
    out: list[RepairEntry] = []
    for kind in (REPAIR_KIND, REPAIR_FILTER_KIND):
        out.extend(RepairEntry.from_envelope(e) for e in await store.list(kind)
                   if e.key.startswith(migration_id + "/"))
    return out


async def resolve(store: StateStore, entry: RepairEntry) -> bool:
    """Delete ``entry`` once repaired, unless it was rewritten since it was read (then ``False``)."""
    current = await store.get(entry.kind, entry.key)
    if current is None:
        return True
    if current.rev != entry.rev:
        return False
    await store.delete(entry.kind, entry.key)
    return True

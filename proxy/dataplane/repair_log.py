"""The repair log: point ids (and filters) whose mirrored write to the target failed.

Records live in the state store. Kind ``repair``, key ``"<migration>/<point id>"``, data
``{"migration", "point_id", "reason", "at"}``: the target may be wrong for that one id. Kind
``repair_filter``, key ``"<migration>/<uuid>"``, data ``{"migration", "filter", "reason", "at"}``:
a filter-based delete or update failed, so any point may be wrong and only a full verify pass
with repair settles it. The proxy writes them; the backfill daemon drains them by re-reading
the source (:mod:`switchyard.backfill.daemon`), deleting each record after its repair, unless it changed
meanwhile (a newer failure of the same id then stays for the next drain).

Past the proxy's append bound, per-id records give way to one *coarse* entry per migration
(key ``"<migration>/coarse"``, filter ``{}``, with ``since`` and ``dropped``): the whole
collection needs a verify. :func:`size` and :func:`view` read the log itself (counts in the
store), which is what ``migrate status`` shows and the phase guards refuse on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchyard.proxy.state.store import Envelope, StateStore

REPAIR_KIND = "repair"
REPAIR_FILTER_KIND = "repair_filter"
COARSE = "coarse"


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


@dataclass(frozen=True, slots=True)
class Coarse:
    """The coarse entry: appends exceeded the bound ``since`` then; ``dropped`` records so far."""

    reason: str
    since: float
    dropped: int
    at: float
    filter: Mapping[str, Any]


async def size(store: StateStore, migration_id: str) -> int:
    """How many repair records (point and filter) ``migration_id`` has: the log's true size."""
    return sum([await store.count(kind, {"migration": migration_id})
                for kind in (REPAIR_KIND, REPAIR_FILTER_KIND)])


async def coarse(store: StateStore, migration_id: str) -> Coarse | None:
    env = await store.get(REPAIR_FILTER_KIND, f"{migration_id}/{COARSE}")
    if env is None:
        return None
    d = env.data
    flt = d.get("filter")
    return Coarse(str(d.get("reason") or ""), float(d.get("since") or 0), int(d.get("dropped") or 0),
                  float(d.get("at") or 0), flt if isinstance(flt, Mapping) else {})


async def view(store: StateStore, migration_id: str) -> dict[str, Any]:
    """The repair log of a migration as status shows it: sizes and the coarse entry, if any."""
    points = await store.count(REPAIR_KIND, {"migration": migration_id})
    filters = await store.count(REPAIR_FILTER_KIND, {"migration": migration_id})
    c = await coarse(store, migration_id)
    return {"size": points + filters, "points": points, "filters": filters,
            "coarse": None if c is None else {"reason": c.reason, "since": c.since,
                                               "dropped": c.dropped, "at": c.at}}

"""Late hot partitions: documents that became hot after the backfill planned its partitions.

The plan's hot partition (:func:`switchyard.backfill.leases.ensure_plan`) is fixed when the first
daemon plans. Counts the proxies flush later -- a backfill started before traffic arrived, or
traffic that shifted -- would otherwise wait for their id range. So, while a backfill runs
whose order may be hot (``--order hot``, or the default, which is hot once counts exist), each
daemon re-reads the counts at most every ``DaemonConfig.hot_recheck`` seconds (and once when the
daemon starts) and, when some of the hottest ids are in no hot partition yet and not in a
finished part of an id range (a done range, or below a range's checkpoint), appends one more
hot partition with them to the plan: a compare-and-set on the plan record, as its creation is;
a daemon that loses the race re-reads the plan and decides again, so no id is in two hot
partitions. Then it creates the partition's lease record (a daemon killed in between leaves
nothing behind: every re-check, and ``ensure_plan`` when a session starts, create the lease
record of any partition of the plan that has none).

:func:`~switchyard.backfill.partitions.pick` takes hot partitions before any id range, so each
daemon visits the late hot ids at its next partition boundary; the id ranges later skip them as
already current (the copier's digest check), exactly as for the plan's own hot partition, so
every point is still embedded once and resume works as for any partition. An id a range
reaches first is skipped by the hot partition the same way.

Bounded: at most :attr:`Caps.per_recheck` ids per added partition, at most
:attr:`Caps.partitions` hot partitions in a plan (its own included), and only ids among the
:attr:`Caps.considered` hottest (the hot set the plan itself would take now). The plan record
keeps the reason it was planned with (``planned_reason``), the late additions (``late_hot``)
and, in ``order_reason`` (what ``migrate status`` shows), both: ``id order: no read counts
yet; hot: 40 more ids from counts flushed after the plan``.

:func:`late_hot_ids` is the decision (pure, a table test covers it); :func:`recheck` does the
reads and the compare-and-set.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.backfill import partitions as parts
from switchyard.backfill.leases import of_migration, read_counts
from switchyard.backfill.outage import classify_all
from switchyard.backfill.partitions import HOT, Lease, Partition, PointId
from switchyard.backfill.settings import DaemonConfig, clamp_hot_recheck
from switchyard.proxy.dataplane import hot_docs
from switchyard.proxy.errors import Conflict
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.backfill")

#: compare-and-set attempts on the plan record per re-check (each loss re-reads and re-decides)
CAS_TRIES = 5


@dataclass(frozen=True, slots=True)
class Caps:
    """Bounds of the re-check (module docstring)."""

    per_recheck: int = 256
    partitions: int = 8
    considered: int = hot_docs.DEFAULT_HOT_LIMIT


@dataclass(frozen=True, slots=True)
class Late:
    """What one re-check adds (``ids``, hottest first; empty: nothing) and why not, if not."""

    ids: tuple[PointId, ...]
    why_not: str = ""


def rechecks(requested: Any, kind: str) -> bool:
    """Whether a backfill of this order option and kind re-reads the counts: the order is hot or
    may become hot (the default), and the kind's copier reads hot partitions (reembed, copy)."""
    return requested in (None, "hot") and kind in ("reembed", "copy")


def point_id(key: str) -> PointId | None:
    """A counted key as a point id (digits: an integer id; else a UUID), ``None`` if neither."""
    if key.isdigit():
        return int(key)
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return None


def covered(pid: PointId, ranges: Sequence[Lease]) -> bool:
    """Whether ``pid`` lies in a finished part of an id range: a done range, or below the
    checkpoint (the next id to copy) of one in progress."""
    for lease in ranges:
        p = lease.partition
        if p.kind == HOT or not p.contains(pid):
            continue
        if lease.done:
            return True
        cursor = lease.cursor
        return cursor is not None and parts.id_kind(cursor) == p.kind and \
            parts.id_int(pid) < parts.id_int(cursor)
    return False


def late_hot_ids(counts: Mapping[str, int], hot: Sequence[Partition], ranges: Sequence[Lease],
                 caps: Caps = Caps()) -> Late:
    """The ids one re-check appends as a new hot partition (pure; module docstring): among the
    ``caps.considered`` hottest counted ids (ties by key, as the plan orders them), those in no
    partition of ``hot`` and not :func:`covered` by ``ranges``, hottest first, at most
    ``caps.per_recheck``; none once ``hot`` holds ``caps.partitions`` partitions."""
    if len(hot) >= caps.partitions:
        return Late((), f"hot partitions at their cap ({caps.partitions})")
    planned = {pid for p in hot for pid in p.ids}
    live = sorted(((k, c) for k, c in counts.items() if c > 0), key=lambda kv: (-kv[1], kv[0]))
    out: list[PointId] = []
    for key, _ in live[:max(0, caps.considered)]:
        pid = point_id(key)
        if pid is None or pid in planned or covered(pid, ranges):
            continue
        planned.add(pid)  # "7" and "007" count as one id
        out.append(pid)
        if len(out) >= caps.per_recheck:
            break
    return Late(tuple(out))


def late_reason(planned_reason: str, late: Sequence[Mapping[str, Any]]) -> str:
    """The plan's ``order_reason`` once hot partitions were added after it (pure)."""
    n = sum(int(x.get("ids") or 0) for x in late)
    more = f"hot: {n} more ids from counts flushed after the plan"
    if len(late) > 1:
        more += f" ({len(late)} late hot partitions)"
    return f"{planned_reason}; {more}" if planned_reason else more


def appended(plan: Mapping[str, Any], new: Partition, now: float) -> dict[str, Any]:
    """The plan record with ``new`` appended, its order ``hot`` and the reason saying why (pure)."""
    planned = str(plan.get("planned_reason") if "planned_reason" in plan else plan.get("order_reason") or "")
    late = [*(plan.get("late_hot") or []), {"index": new.index, "ids": len(new.ids), "at": now}]
    return {**plan, "partitions": [*plan["partitions"], new.to_dict()], "order": "hot",
            "planned_reason": planned, "late_hot": late, "order_reason": late_reason(planned, late)}


async def recheck(store: StateStore, m: Migration, caps: Caps = Caps(),
                  clock: Callable[[], float] = time.time) -> str:
    """One re-check (module docstring): appends a hot partition when :func:`late_hot_ids` finds
    ids; returns the plan's new reason then, else ``""``. A lost compare-and-set re-reads the
    plan and decides again (at most :data:`CAS_TRIES` times; the next re-check tries again)."""
    if not rechecks((m.options or {}).get("order"), m.kind):
        return ""
    for _ in range(CAS_TRIES):
        env = await store.get(parts.PLAN_KIND, m.id)
        if env is None:  # not planned yet: the plan will take the counts itself
            return ""
        plan = [Partition.from_dict(d) for d in env.data["partitions"]]
        leases = await of_migration(store, m.id)
        await _lease_records(store, m.id, plan, leases)
        counts = (await read_counts(store, m.id)).counts
        got = late_hot_ids(counts, [p for p in plan if p.kind == HOT],
                           [x for x in leases if x.partition.kind != HOT], caps)
        if not got.ids:
            return ""
        new = parts.hot_partition(max((p.index for p in plan), default=-1) + 1, got.ids)
        data = appended(env.data, new, clock())
        try:
            await store.put(parts.PLAN_KIND, m.id, data, env.rev)
        except Conflict:
            continue
        await _lease_records(store, m.id, [new], leases)
        log.info("backfill %s: %s", m.id, data["order_reason"])
        return str(data["order_reason"])
    return ""


async def _lease_records(store: StateStore, migration_id: str, plan: Sequence[Partition],
                         have: Sequence[Lease]) -> None:
    """Create the lease record of each hot partition of ``plan`` that has none yet (one appended
    by a daemon killed before it created the record; a lost create means another did)."""
    keys = {x.key for x in have}
    for p in plan:
        lease = Lease(migration_id, p)
        if p.kind == HOT and lease.key not in keys:
            with contextlib.suppress(Conflict):
                await store.create(parts.LEASE_KIND, lease.key, lease.to_dict())


class Rechecker:
    """A daemon's re-checks: at most every ``config.hot_recheck`` seconds (clamped; 0: never),
    the first one when the daemon's control loop first runs (a restarted daemon looks at once)."""

    def __init__(self, config: DaemonConfig, clock: Callable[[], float] = time.time) -> None:
        self.every, self.clock = clamp_hot_recheck(config.hot_recheck), clock
        self.caps = Caps(config.hot_recheck_ids, config.hot_partitions)
        self.last = float("-inf")

    async def maybe(self, store: StateStore, m: Migration, owner: str) -> str:
        """:func:`recheck` when one is due; the plan's new reason when it added a partition.
        Only transient failures are raised (the control loop waits them out): the re-check is
        an optimisation, a malformed counts record must not stop the backfill."""
        now = self.clock()
        if not self.every or now - self.last < self.every:
            return ""
        self.last = now
        try:
            return await recheck(store, m, self.caps, self.clock)
        except Exception as exc:  # noqa: BLE001 -- classified
            if classify_all(exc)[0].transient:
                raise
            log.warning("%s: hot-document re-check skipped: %s", owner, exc)
            return ""

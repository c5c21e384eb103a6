"""The ``verify`` record: a verification's progress while it runs, and its outcome after.

One record per migration (kind ``verify``, key the migration id). While the merge-join runs,
``backfill/verify.py`` checkpoints it: the cursor, the counts so far, the stage (``scan``,
``confirm``, ``repair``, ``recheck``), ``checked`` (source points compared so far) and ``at``.
The migration service adds who runs it (``owner``), whether it repairs and when it started
(:func:`claim`), and at the end the outcome — ``clean``, ``refused``, ``failed`` or
``cancelled`` — with the reason and the counts (:func:`finish`).

Every proxy's status reads this record (:func:`view`), so a verify running in one proxy (or in
``switchyard verify``) is visible from all of them. A record without an outcome that has not
been written for :data:`STALE_AFTER` seconds is shown as ``abandoned``: its runner died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from proxy.errors import Conflict
from proxy.state.store import StateStore

KIND = "verify"
#: A running verify writes its record at least once per page or chunk; silent longer = dead.
STALE_AFTER = 60.0
OUTCOMES = ("clean", "refused", "failed", "cancelled")

log = logging.getLogger("switchyard.verify")


def view(data: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The record as ``migrate status`` shows it (pure): no id lists, only counts.

    ``state`` is ``running``, ``abandoned`` or one of :data:`OUTCOMES`."""
    if data is None:
        return None
    outcome = str(data.get("outcome") or "")
    at = float(data.get("at") or 0.0)
    running = not outcome and now - at <= STALE_AFTER
    diff = data.get("diff") or {}
    checked = int(data.get("checked") or diff.get("source") or 0)
    return {"state": outcome or ("running" if running else "abandoned"), "running": running,
            "repair": bool(data.get("repair")), "owner": str(data.get("owner") or ""),
            "stage": str(data.get("stage") or ""), "checked": checked,
            "stage_done": int(data.get("stage_done") or 0),
            "stage_total": int(data.get("stage_total") or 0),
            "started_at": data.get("started_at"), "at": at, "ended_at": data.get("ended_at"),
            "reason": str(data.get("reason") or ""),
            "counts": {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}}


def busy_reason(data: Mapping[str, Any] | None, migration_id: str, owner: str,
                now: float) -> str | None:
    """Why ``owner`` may not start a verify now: another live runner holds the record (pure)."""
    v = view(data, now)
    if v is None or not v["running"] or not v["owner"] or v["owner"] == owner:
        return None
    kind = "with repair" if v["repair"] else "without repair"
    return (f"a verify {kind} of migration `{migration_id}` is already running on {v['owner']} "
            f"(stage {v['stage'] or 'starting'}, {v['checked']} points checked); wait for it to end "
            "(`switchyard migrate status`) and run verify again if needed")


async def claim(store: StateStore, migration_id: str, owner: str, repair: bool,
                now: float) -> dict[str, Any]:
    """Mark a verify by ``owner`` as running; :class:`Conflict` while another runner's is live.

    Returns the fields every later write of this run carries (owner, repair, start time).
    The claim is a compare-and-set on the record's revision: of two processes starting at the
    same instant, one gets the record and the other the :class:`Conflict` with its reason."""
    env = await store.get(KIND, migration_id)
    why = busy_reason(env.data if env else None, migration_id, owner, now)
    if why:
        raise Conflict(why)
    fields = {"owner": owner, "repair": repair, "started_at": now}
    try:
        await store.put(KIND, migration_id, {**fields, "stage": "starting", "checked": 0, "at": now},
                        expected_rev=env.rev if env else 0)
    except Conflict as exc:
        latest = await store.get(KIND, migration_id)
        raise Conflict(busy_reason(latest.data if latest else None, migration_id, owner, now)
                       or f"another verify of migration `{migration_id}` started just now; "
                          "run verify again once it ends") from exc
    return fields


async def finish(store: StateStore, migration_id: str, fields: Mapping[str, Any], outcome: str,
                 reason: str, counts: Mapping[str, int], now: float) -> None:
    """Record the outcome of the run ``fields`` describes (the checkpoint is dropped)."""
    await store.upsert(KIND, migration_id, {
        **fields, "stage": "done", "finished": True, "outcome": outcome, "reason": reason,
        "counts": dict(counts), "checked": int(counts.get("source", 0)), "at": now, "ended_at": now})


async def finish_quietly(store: StateStore, migration_id: str, fields: Mapping[str, Any],
                         outcome: str, reason: str, timeout: float = 2.0) -> None:
    """Best-effort :func:`finish` for a run that ends abnormally (failure, shutdown): bounded by
    ``timeout`` so a stopping proxy never waits on a slow store; a lost write shows as
    ``abandoned`` once the record is older than :data:`STALE_AFTER`."""
    try:
        await asyncio.wait_for(finish(store, migration_id, fields, outcome, reason, {}, time.time()),
                               timeout)
    except Exception as exc:  # noqa: BLE001 - best effort; the record then ages into `abandoned`
        log.warning("verify of %s ended (%s) but its record was not updated: %s",
                    migration_id, outcome, exc)

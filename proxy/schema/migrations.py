"""Driving one online migration step of a revision through the admin API (I/O).

The step's plan request goes to ``POST /switchyard/v1/migrations``; the migration is then
driven from whatever phase it is in (so a resumed upgrade continues it instead of planning a
second one): ``start`` -> backfill (a :class:`switchyard.backfill.daemon.Daemon` in this
process, ``once``) -> verify -> ``switch_reads`` -> ``switch_writes`` -> ``complete``.
``through="reads-switched"`` stops after ``switch_reads`` and leaves the cut-over to a person;
the step then stays the run's intent and the next ``schema upgrade`` continues from there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.schema.planner import Step
from switchyard.proxy.schema.qdrant_http import QdrantHttp

ADMIN = "/switchyard/v1/migrations"
ORDER = ("planned", "dual_write", "verified", "reads_switched", "writes_switched", "complete")


class Paused(SwitchyardError):
    """The upgrade stopped where ``--through`` asked it to."""


async def find(http: QdrantHttp, logical: str, since: float) -> str | None:
    """The id of a non-cancelled migration of ``logical`` planned at or after ``since`` (the
    step's intent time): the one an interrupted run created before it could note its id."""
    found = await http.request("GET", ADMIN)
    items = found.get("migrations", found) if isinstance(found, dict) else found
    best: tuple[float, str] | None = None
    for m in items or []:
        m = m.get("migration", m)
        if m.get("logical") != logical or m.get("phase") == "cancelled":
            continue
        at = float(m.get("created_at") or 0)
        if at >= since - 1 and (best is None or at > best[0]):
            best = (at, str(m["id"]))
    return best[1] if best else None


async def plan(http: QdrantHttp, step: Step) -> str:
    result = await http.send(step.calls[0])
    m = result.get("migration", result)
    return str(m["id"])


async def phase(http: QdrantHttp, mid: str) -> str:
    status = await http.request("GET", f"{ADMIN}/{mid}")
    return str(status.get("migration", status).get("phase"))


async def drive(http: QdrantHttp, mid: str, through: str,
                backfill: Callable[[str], Awaitable[None]], say: Callable[[str], None]) -> None:
    """Move migration ``mid`` forward to ``complete`` (or ``reads_switched``)."""
    stop = "reads_switched" if through == "reads-switched" else "complete"
    while True:
        cur = await phase(http, mid)
        say(f"  migration {mid}: {cur}")
        if cur == stop or cur == "complete":
            if cur != "complete":
                raise Paused(f"migration {mid} is at {cur} (--through {through}): switch writes "
                             f"and complete it (`switchyard migrate complete {mid}`), then rerun "
                             "`switchyard schema upgrade`", raw=True)
            return
        if cur == "planned":
            await _transition(http, mid, "start")
        elif cur == "dual_write":
            await backfill(mid)
            await http.request("POST", f"{ADMIN}/{mid}/verify?wait=true", {"repair": True})
        elif cur == "verified":
            await _transition(http, mid, "switch_reads")
        elif cur == "reads_switched":
            await _transition(http, mid, "switch_writes")
        elif cur == "writes_switched":
            await _transition(http, mid, "complete")
        else:
            raise SwitchyardError(f"migration {mid} is {cur}: the schema step cannot continue it",
                                  raw=True)


#: the inverse step out of each phase, toward ``cancelled``
BACK = {"writes_switched": "switch_writes_back", "reads_switched": "switch_reads_back",
        "verified": "cancel", "dual_write": "cancel", "planned": "cancel"}


async def rollback(http: QdrantHttp, mid: str, say: Callable[[str], None]) -> str:
    """Undo migration ``mid`` with its own inverse steps (never blocked by lag or stale
    verification) down to ``cancelled``; returns the final phase (``complete`` is left alone:
    after it, a revision's ``downgrade()`` runs instead)."""
    for _ in range(len(ORDER) + 1):
        cur = await phase(http, mid)
        if cur not in BACK:
            return cur
        say(f"  migration {mid}: {cur}, rolling back ({BACK[cur]})")
        await _transition(http, mid, BACK[cur])
    return await phase(http, mid)


async def _transition(http: QdrantHttp, mid: str, name: str) -> None:
    await http.request("POST", f"{ADMIN}/{mid}/transition", {"name": name})

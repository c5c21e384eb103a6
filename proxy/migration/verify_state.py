"""Verify runs: every verification has its own record, and the migration points at them.

A run record (kind ``verify_run``, key ``<migration>/<run id>``) holds who started it
(``owner``: the proxy's instance id or the backfill daemon's owner id; ``starter``: ``proxy``
or ``daemon``), whether it repairs, when it started, and while it runs its stage (``starting``,
``scan``, ``confirm``, ``repair``, ``recheck``), ``checked`` (source points compared so far), the
merge-join's checkpoint (cursor, counts) and ``at``; at the end its outcome -- ``clean``,
``refused``, ``failed`` or ``cancelled`` -- with the reason and the counts (:func:`finish`).
``backfill/verify.py`` writes the progress; nothing else ever writes a run's record, so two
verifications running at once (a proxy's verify job and a daemon's full-verify pass) never mix
their progress.

The migration record lists its recent runs (``verify_runs``, newest last, at most
:data:`RUNS_KEPT`); the newest is "the latest verify" that every proxy's status shows
(:func:`views`). :func:`claim` adds a run with a compare-and-set on the migration record: of
two processes starting a verify at the same instant one gets it and the other a
:class:`Conflict` naming the winner. A proxy's (or ``switchyard verify``'s) run is exclusive:
it refuses while another process's exclusive run is live. A daemon's pass is not: it runs
beside an operator's verify (each in its own record) and never blocks one.

A run without an outcome whose record went unwritten for :data:`STALE_AFTER` seconds shows as
``abandoned``: its process died. Progress alone does not keep a record fresh (a repair can wait
on a slow embedding provider for minutes), so a running verify also holds :func:`kept_alive`,
which refreshes ``at`` every :data:`KEEPALIVE_EVERY` seconds while nothing else wrote it.

Layout 1 (before run records): one record per migration, kind ``verify``, key the migration
id, shared by every runner. A migration without ``verify_runs`` shows that record as its latest
run (id ``legacy``); the first claim copies it into a run record of its own (:func:`claim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.proxy.errors import Conflict, SwitchyardError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.state.store import StateStore

KIND = "verify_run"
#: Layout 1: the single shared record per migration (key: the migration id).
LEGACY_KIND = "verify"
LEGACY_ID = "legacy"
#: A running verify writes its record at least once per page or chunk; silent longer = dead.
STALE_AFTER = 60.0
#: How often a live run's record is refreshed when its progress wrote nothing meanwhile.
KEEPALIVE_EVERY = 15.0
OUTCOMES = ("clean", "refused", "failed", "cancelled")
STARTERS = ("proxy", "daemon")
#: Runs the migration record lists (older run records stay in the store, unlisted).
RUNS_KEPT = 20
#: Runs ``migrate status`` shows (newest first).
RUNS_SHOWN = 5

log = logging.getLogger("switchyard.verify")


@dataclass(frozen=True, slots=True)
class Run:
    """One verify run: its identity and the fields every write of its record carries."""

    migration_id: str
    id: str
    owner: str
    starter: str
    repair: bool
    started_at: float

    @property
    def key(self) -> str:
        return run_key(self.migration_id, self.id)

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "migration": self.migration_id, "owner": self.owner,
                "starter": self.starter, "repair": self.repair, "started_at": self.started_at}


def run_key(migration_id: str, run_id: str) -> str:
    return f"{migration_id}/{run_id}"


def new_run_id(now: float) -> str:
    """Sortable by start time (milliseconds, hex), unique by a random suffix."""
    return f"v{int(now * 1000):011x}-{uuid.uuid4().hex[:6]}"


def view(data: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:
    """A run as ``migrate status`` shows it (pure): no id lists, only counts.

    ``state`` is ``running``, ``abandoned`` or one of :data:`OUTCOMES`."""
    if data is None:
        return None
    outcome = str(data.get("outcome") or "")
    at = float(data.get("at") or 0.0)
    running = not outcome and now - at <= STALE_AFTER
    diff = data.get("diff") or {}
    checked = int(data.get("checked") or diff.get("source") or 0)
    return {"id": str(data.get("id") or LEGACY_ID), "starter": str(data.get("starter") or "proxy"),
            "state": outcome or ("running" if running else "abandoned"), "running": running,
            "repair": bool(data.get("repair")), "owner": str(data.get("owner") or ""),
            "stage": str(data.get("stage") or ""), "checked": checked,
            "stage_done": int(data.get("stage_done") or 0),
            "stage_total": int(data.get("stage_total") or 0),
            "started_at": data.get("started_at"), "at": at, "ended_at": data.get("ended_at"),
            "reason": str(data.get("reason") or ""),
            "counts": {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}}


def busy_reason(runs: Sequence[Mapping[str, Any]], migration_id: str, owner: str,
                now: float) -> str | None:
    """Why ``owner`` may not start an exclusive verify now (pure): another process's exclusive
    run is live. ``runs`` are the migration's recent run records, any order; daemon passes
    never block (they run in their own records)."""
    for data in runs:
        v = view(data, now)
        if v is None or not v["running"] or v["starter"] == "daemon" or not v["owner"] \
                or v["owner"] == owner:
            continue
        kind = "with repair" if v["repair"] else "without repair"
        return (f"a verify {kind} of migration `{migration_id}` is already running on "
                f"{v['owner']} (run {v['id']}, stage {v['stage'] or 'starting'}, {v['checked']} "
                "points checked); wait for it to end (`switchyard migrate status`) and run "
                "verify again if needed")
    return None


def listed(m: Migration, run_id: str) -> tuple[str, ...]:
    """``m``'s run list with ``run_id`` appended, bounded to the newest :data:`RUNS_KEPT` (pure)."""
    return (*(r for r in m.verify_runs if r != run_id), run_id)[-RUNS_KEPT:]


async def runs(store: StateStore, m: Migration) -> list[dict[str, Any]]:
    """The records of ``m``'s listed runs, newest first; a migration of layout 1 (no list) gets
    its shared ``verify`` record, as run ``legacy``, when it has one."""
    if not m.verify_runs:
        legacy = await store.get(LEGACY_KIND, m.id)
        return [{**legacy.data, "id": LEGACY_ID}] if legacy is not None else []
    found = await asyncio.gather(*(store.get(KIND, run_key(m.id, r)) for r in reversed(m.verify_runs)))
    return [{**env.data, "id": r} for env, r in zip(found, reversed(m.verify_runs)) if env is not None]


async def views(store: StateStore, m: Migration, now: float) -> list[dict[str, Any]]:
    """The newest :data:`RUNS_SHOWN` runs as ``migrate status`` shows them, newest first."""
    return [v for data in (await runs(store, m))[:RUNS_SHOWN] if (v := view(data, now)) is not None]


async def claim(store: StateStore, migration_id: str, owner: str, repair: bool, now: float, *,
                starter: str = "proxy", attempts: int = 10) -> Run:
    """Start a run: its record, then the migration's pointer to it (compare-and-set).

    An exclusive run (``starter`` ``proxy``) raises :class:`Conflict` while another process's
    exclusive run is live -- checked on the same revision of the migration record the pointer
    is written to, so two claims at once cannot both pass it. A lost compare-and-set (daemons
    move counters all the time) is re-read and re-checked, ``attempts`` times at most."""
    if starter not in STARTERS:
        raise ValueError(f"starter must be one of {STARTERS}, got {starter!r}")
    run = Run(migration_id, new_run_id(now), owner, starter, repair, now)
    created = False
    try:
        for _ in range(attempts):
            m = Migration.from_envelope(await store.require(Migration.KIND, migration_id))
            recent = await runs(store, m)
            why = busy_reason(recent, migration_id, owner, now) if starter != "daemon" else None
            if why:
                raise Conflict(why)
            if not created:
                await store.create(KIND, run.key, {**run.fields(), "stage": "starting",
                                                   "checked": 0, "at": now})
                created = True
            pointers = listed(m, run.id)
            if not m.verify_runs and recent:  # layout 1: keep the shared record as a run
                await store.upsert(KIND, run_key(migration_id, LEGACY_ID), recent[0])
                pointers = (LEGACY_ID, *pointers)
            try:
                await store.put(Migration.KIND, m.id,
                                dataclasses.replace(m, verify_runs=pointers).stored(), m.rev)
                return run
            except Conflict:
                await asyncio.sleep(0.02)
        raise Conflict(f"migration `{migration_id}` kept changing; run verify again")
    except BaseException:
        if created:  # an unlisted record nobody shows; drop it (best effort)
            with _quietly("dropping an unclaimed verify run"):
                await store.delete(KIND, run.key)
        raise


async def progress(store: StateStore, run: Run | None, fields: Mapping[str, Any]) -> None:
    """Rewrite ``run``'s record with its identity and ``fields`` (no-op without a run)."""
    if run is not None:
        await store.upsert(KIND, run.key, {**run.fields(), **fields, "at": time.time()})


async def keep_alive(store: StateStore, run: Run, every: float = KEEPALIVE_EVERY) -> None:
    """Refresh ``at`` on ``run``'s record every ``every`` seconds until it has an outcome.

    The rewrite is a compare-and-set on the revision just read, so it never undoes a progress
    or outcome write that landed in between (that write refreshed ``at`` itself). A failing
    store is logged and retried next time: the record then ages, as a dead run's does."""
    while True:
        await asyncio.sleep(every)
        try:
            env = await store.get(KIND, run.key)
            if env is None or env.data.get("outcome"):
                return
            if time.time() - float(env.data.get("at") or 0.0) < every / 2:
                continue  # progress wrote it just now
            await store.put(KIND, run.key, {**env.data, "at": time.time()}, env.rev)
        except Conflict:
            continue  # a progress write won the race
        except SwitchyardError as exc:
            log.warning("verify run %s of %s: its record could not be refreshed: %s",
                        run.id, run.migration_id, exc)


@contextlib.asynccontextmanager
async def kept_alive(store: StateStore, run: Run | None,
                     every: float = KEEPALIVE_EVERY) -> AsyncIterator[None]:
    """:func:`keep_alive` for ``run`` (if any) while the block runs; stopped on leaving it."""
    if run is None:
        yield
        return
    task = asyncio.get_running_loop().create_task(keep_alive(store, run, every),
                                                  name=f"verify-keepalive-{run.key}")
    try:
        yield
    finally:
        await stop_task(task)


async def checkpoint(store: StateStore, run: Run | None) -> Mapping[str, Any] | None:
    """``run``'s saved record (its merge-join checkpoint), if any."""
    if run is None:
        return None
    env = await store.get(KIND, run.key)
    return env.data if env is not None else None


async def finish(store: StateStore, run: Run, outcome: str, reason: str,
                 counts: Mapping[str, int], now: float) -> None:
    """Record the outcome of ``run`` (the checkpoint is dropped)."""
    await store.upsert(KIND, run.key, {
        **run.fields(), "stage": "done", "finished": True, "outcome": outcome, "reason": reason,
        "counts": dict(counts), "checked": int(counts.get("source", 0)), "at": now, "ended_at": now})


async def finish_quietly(store: StateStore, run: Run, outcome: str, reason: str,
                         timeout: float = 2.0) -> None:
    """Best-effort :func:`finish` for a run that ends abnormally (failure, shutdown): bounded by
    ``timeout`` so a stopping process never waits on a slow store; a lost write shows as
    ``abandoned`` once the record is older than :data:`STALE_AFTER`."""
    try:
        await asyncio.wait_for(finish(store, run, outcome, reason, {}, time.time()), timeout)
    except Exception as exc:  # noqa: BLE001 - best effort; the record then ages into `abandoned`
        log.warning("verify run %s of %s ended (%s) but its record was not updated: %s",
                    run.id, run.migration_id, outcome, exc)


class _quietly:
    """Log and swallow an exception of a best-effort step."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, Exception):
            log.warning("%s failed: %s", self.what, exc)
            return True
        return False

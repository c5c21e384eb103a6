"""The backfill daemon's control loop and the records it keeps about its migration.

:class:`DaemonControl` is the base class of :class:`~switchyard.backfill.daemon.Daemon`: it holds
the daemon's side of the migration record, its progress record, the read of the lease list
(:meth:`~DaemonControl.leases`) and the control loop that renews the leases held and publishes.
The plan, the claims and checkpoints (:class:`~switchyard.backfill.leases.LeaseHandle`) and the
repair log are written from ``daemon.py``.

* :meth:`~DaemonControl._refresh` re-reads the migration record: the operator's knobs (pause,
  throttle, the batch-size counter) and the reason of any limit. A record gone meanwhile raises
  :class:`~switchyard.backfill.outage.MigrationEnded` (``NotFound`` at start-up);
* :meth:`~DaemonControl._control` runs beside the copy loop for one session: every ``refresh``
  seconds it re-reads the record, renews the leases held, re-checks for late hot ids
  (:mod:`switchyard.backfill.hot_recheck`) and publishes (every 2 s). A transient failure is
  logged once per reason; a permanent one, or the migration's end, ends the session;
* :meth:`~DaemonControl._publish`, :meth:`~DaemonControl._put_progress` and
  :meth:`~DaemonControl.status`: this daemon's progress record (kind ``backfill_progress``),
  the record's counters, the gauges, and the sample reservoir now and then;
* :meth:`~DaemonControl._update_counters` and :meth:`~DaemonControl._set_backfill`:
  compare-and-set on the migration record, retried (these fields commute with everything else).

What is copied and when, and what becomes of a failure (sessions, outages, the partitions,
rate control, the repair log), is ``daemon.py``'s. A base class, not a separate object,
because both halves share the daemon's state: the copy loop's ``state``, ``waiting``,
``backoff`` and ``handles`` are what the control loop publishes and renews, ``_refresh`` sets
the batch size and operator rate the copy loop uses, and callers read and set these on the
daemon itself (the demo reads ``rate_window`` and ``status``; a test replaces
``daemon.reservoir`` before ``run``, and the reservoir published is the one it set). The
attributes are set by ``Daemon.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.backfill import hot_recheck, samples
from switchyard.backfill.metrics import DONE, PAUSED, RATE, TOTAL
from switchyard.backfill.settings import BATCH_COUNTER, DaemonConfig, clamp_batch
from switchyard.backfill.leases import LeaseHandle, LeaseLost, of_migration
from switchyard.backfill.outage import MigrationEnded, Waiting, classify_all, published_state
from switchyard.proxy.migration import progress
from switchyard.backfill.partitions import Lease
from switchyard.backfill.throttle import Backoff, operator_rate
from switchyard.proxy.dataplane import repair_log
from switchyard.proxy.errors import Conflict, NotFound
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.backfill")


class DaemonControl:
    """The control loop and the migration, progress and lease records (module docstring)."""

    store: StateStore
    id: str
    config: DaemonConfig
    client: AsyncQdrantClient
    owner: str
    clock: Callable[[], float]
    batch_size: int
    backoff: Backoff
    rate_window: progress.RateWindow
    reason: str
    state: str
    ended: str
    waiting: Waiting
    _last: tuple[int, int, dict[str, Any]]
    reservoir: samples.Reservoir
    _samples_saved: tuple[int, float]
    hot: hot_recheck.Rechecker
    handles: dict[str, LeaseHandle]
    m: Migration | None
    _op_rate: float
    _stop: asyncio.Event

    # -- records

    async def leases(self) -> list[Lease]:
        return await of_migration(self.store, self.id)

    @staticmethod
    def _ended_reason(m: Migration) -> str:
        return f"migration `{m.id}` is {m.phase}: the backfill has nothing left to do"

    # -- control loop

    async def _refresh(self, missing_ends: bool = True) -> Migration:
        """Re-read the record: knobs, reasons. A record gone meanwhile ends the daemon."""
        env = await self.store.get(Migration.KIND, self.id)
        if env is None:
            if missing_ends:
                raise MigrationEnded(f"migration `{self.id}` no longer exists: the backfill has nothing left to do")
            raise NotFound(f"migration `{self.id}` doesn't exist!")
        m = Migration.from_envelope(env)
        self._op_rate, op_reason = operator_rate(m.throttle, m.paused)
        if m.counter(BATCH_COUNTER):
            self.batch_size = clamp_batch(m.counter(BATCH_COUNTER))
        self.reason = op_reason or self.backoff.reason
        self.m = m
        PAUSED.labels(self.id).set(1 if self._op_rate == 0 else 0)
        return m

    async def _control(self) -> None:
        """Every ``refresh``: re-read the record, renew leases, publish (every 2 s). A
        transient failure here is logged (once per reason) and status is published as soon as
        the store answers again; a permanent one, or the migration's end, ends the session."""
        last_log = last_publish = 0.0
        down = ""  # the reason the store could not be reached, while it cannot
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.refresh)
            try:
                m = await self._refresh()
                if not m.active:
                    raise MigrationEnded(self._ended_reason(m))
                for handle in list(self.handles.values()):
                    with contextlib.suppress(LeaseLost):
                        await handle.renew(self.owner, self.clock(), self.config.lease_ttl)
                if not self._stop.is_set():  # ids made hot since the plan (hot_recheck)
                    await self.hot.maybe(self.store, m, self.owner)
                now = self.clock()
                if down or now - last_publish >= 2.0 or self._stop.is_set():
                    last_publish = now
                    await self._publish(now, log_line=now - last_log >= self.config.progress_interval)
                    if now - last_log >= self.config.progress_interval:
                        last_log = now
                if down:
                    log.warning("%s: state store reachable again (was: %s)", self.owner, down)
                    down = ""
            except Exception as exc:  # noqa: BLE001 -- classified
                verdict, _ = classify_all(exc)
                if not verdict.transient:
                    raise
                if verdict.reason != down:
                    log.warning("%s: control loop: %s; status is published once the store answers",
                                self.owner, verdict.reason)
                down = verdict.reason

    async def _publish(self, now: float, log_line: bool) -> None:
        leases = await self.leases()
        done = sum(lease.copied for lease in leases)
        assert self.m is not None
        total = max(done, (await self.client.count(self.m.source, exact=True)).count)
        self.rate_window.observe(now, done)
        rate = self.rate_window.rate()
        mine = {lease.key: {"cursor": lease.cursor, "done": lease.done, "copied": lease.copied}
                for lease in leases if lease.owner == self.owner}
        self._last = (done, total, mine)
        await self._put_progress(now)
        state, reason = self.status(now)
        pending = len(await repair_log.pending(self.store, self.id))
        await self._update_counters({"backfill_done": done, "backfill_total": total,
                                     "backfill_rate": int(rate), "repair_pending": pending})
        RATE.labels(self.id).set(rate)
        DONE.labels(self.id).set(done)
        TOTAL.labels(self.id).set(total)
        if self.reservoir.changes != self._samples_saved[0] and (
                now - self._samples_saved[1] >= samples.SAVE_EVERY or self._stop.is_set()):
            await samples.save_and_refit(self.store, self.id, self.owner, self.reservoir)
            self._samples_saved = (self.reservoir.changes, now)
        if log_line:
            log.info(progress.line(self.id, done, total, rate, state, reason))

    def status(self, now: float) -> tuple[str, str]:
        """(state, reason) as published (:func:`switchyard.backfill.outage.published_state`)."""
        return published_state(self.state, self.ended, self._op_rate == 0, self.reason, self.waiting, now)

    async def _put_progress(self, now: float) -> None:
        """This daemon's progress record, with its last known counts and its outage, if any."""
        done, total, mine = self._last
        state, reason = self.status(now)
        record = progress.record(self.owner, state, reason, done, total, self.rate_window.rate(), mine, now)
        await self.store.upsert(progress.KIND, f"{self.id}/{self.owner}",
                                {**record, "outage": self.waiting.record()})

    # -- migration record

    async def _update_counters(self, values: dict[str, int]) -> None:
        await self._change(lambda m: dataclasses.replace(m, counters={**m.counters, **values})
                           if any(m.counter(k) != v for k, v in values.items()) else None)

    async def _set_backfill(self, state: str, only_from: str | None = None) -> None:
        await self._change(lambda m: dataclasses.replace(m, backfill=state)
                           if m.backfill != state and (only_from is None or m.backfill == only_from)
                           else None)

    async def _change(self, fn: Callable[[Migration], Migration | None]) -> None:
        """CAS on the migration record, retried: these fields commute with everything else."""
        for _ in range(10):
            m = Migration.from_envelope(await self.store.require(Migration.KIND, self.id))
            new = fn(m)
            if new is None:
                return
            try:
                await self.store.put(Migration.KIND, m.id, new.stored(), m.rev)
                return
            except Conflict:
                await asyncio.sleep(0.05)
        log.warning("%s: migration record kept changing; update skipped", self.owner)

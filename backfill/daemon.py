"""The backfill daemon: claims partitions by lease, copies them, drains the repair log.

Any number of daemons (on any machines) share one migration: the first one splits the id
space into partitions (:mod:`switchyard.backfill.partitions`, one ``backfill_plan`` record created by
compare-and-set so everyone agrees), then each daemon repeatedly claims a free or expired
partition, copies it with :func:`switchyard.backfill.pipeline.run_partition` and checkpoints it through a
:class:`LeaseHandle` (compare-and-set: a daemon that lost its lease stops at its next
checkpoint). A control loop re-reads the migration record every ``refresh`` seconds (pause,
throttle, batch size), renews leases, and publishes progress and counters
(:mod:`switchyard.backfill.control_loop`, whose :class:`DaemonControl` is the daemon's base
class: it keeps the migration, progress and lease records; this module keeps the sessions,
the copy loop, rate control and the repair log). When every
partition is done the daemon replays the repair log and marks the backfill ``done``; with
``once`` it then exits, otherwise it keeps draining the repair log while the migration is
active.

Outages (:mod:`switchyard.backfill.outage`): every failure is classified. A transient one (upstream,
proxy or state store unreachable, 5xx/429, embedder down) is waited out with exponential
back-off and jitter, the reason published as the daemon's state ``waiting`` (or logged, and
published once the store is back, when the store is what is down): a failed partition is
retried from its checkpoint; a failure outside one partition (the store, the lease list) ends
the current *session* -- in-flight batches are dropped as if the daemon had been killed --
and a new session re-reads the record and re-claims its partitions by compare-and-set. A
permanent one ends :meth:`Daemon.run`: a migration that ended returns (nothing left to do),
anything else raises :class:`~switchyard.backfill.outage.Stopped` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.backfill import partitions as parts
from switchyard.backfill import hot_recheck, samples
from switchyard.backfill.control_loop import DaemonControl
from switchyard.backfill.metrics import POINTS
from switchyard.backfill.settings import BATCH_COUNTER, NEEDS_FULL_VERIFY, DaemonConfig, clamp_batch
from switchyard.backfill.leases import LeaseHandle, LeaseLost, ensure_plan
from switchyard.backfill.outage import (
    MigrationEnded, RetryPolicy, Stopped, Verdict, Waiting, classify_all, leaves,
)
from switchyard.proxy.migration import progress
from switchyard.backfill.partitions import PointId
from switchyard.backfill.pipeline import Copier, PartitionRun, Stats, copier_for, run_partition
from switchyard.backfill.texts import Fault, make_fetcher
from switchyard.backfill.throttle import UNTHROTTLED, Backoff, TokenBucket, latency_signal
from switchyard.backfill.verify import daemon_pass
from switchyard.proxy import registry
from switchyard.proxy.dataplane import repair_log
from switchyard.proxy.embedders import Embedder, make_embedder
from switchyard.proxy.errors import NotFound, RateLimited
from switchyard.proxy.intercept.planner import metadata_for
from switchyard.proxy.migration.record import PLANNED, Migration, Refused
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.backfill")
#: what callers import from here (the settings moved to their own module)
__all__ = ["BATCH_COUNTER", "NEEDS_FULL_VERIFY", "Daemon", "DaemonConfig", "clamp_batch"]

class Daemon(DaemonControl):
    def __init__(self, store: StateStore, migration_id: str, config: DaemonConfig = DaemonConfig(),
                 *, client: AsyncQdrantClient | None = None, owner: str | None = None,
                 fault: Fault | None = None, embedder: Embedder | None = None,
                 embedder_factory: Callable[[ModelSpec], Embedder] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``embedder``: used as given (the caller closes it); else the daemon builds B's with
        ``embedder_factory`` (default ``make_embedder``; ``--executor ray``: :mod:`switchyard.backfill.ray_executor`) and closes it."""
        self.store, self.id, self.config = store, migration_id, config
        self._factory = embedder_factory
        self.client = client or store.client
        self.owner = owner or f"backfill-{uuid.uuid4().hex[:8]}"
        self.fault, self._embedder, self.clock = fault, embedder, clock
        self.batch_size = clamp_batch(config.batch_size)
        self.bucket, self.backoff = TokenBucket(), Backoff()
        self.rate_window = progress.RateWindow()
        self.reason, self.state = "", "starting"
        self.retry, self.waiting, self._draw = RetryPolicy(config.retry_base, config.retry_max), Waiting(), random.random
        #: why :meth:`run` returned early (the migration ended), else ""
        self.ended = ""
        self._last: tuple[int, int, dict[str, Any]] = (0, 0, {})  # done, total, partitions
        self.stats = Stats()
        self.reservoir = samples.Reservoir()
        self._samples_saved = (0, 0.0)  # (reservoir.changes, when) of the last save
        self.hot = hot_recheck.Rechecker(config, clock)
        self.handles: dict[str, LeaseHandle] = {}
        self.m: Migration | None = None
        self._op_rate = UNTHROTTLED
        self._stop = asyncio.Event()

    # -- entry point

    async def run(self, once: bool = False) -> Stats:
        """Copy every partition and drain the repair log; with ``once`` return when done.

        Transient failures are waited out (module docstring). Returns early, with ``ended``
        set, when the migration is cancelled, completed or deleted meanwhile; raises
        :class:`Stopped` on any other permanent failure, and (as before) ``Refused`` /
        ``NotFound`` when the migration is not started or does not exist at start-up."""
        embedder: Embedder | None = None
        started = False
        try:
            while True:
                try:
                    if not started:
                        m = await self._refresh(missing_ends=False)
                        if m.phase == PLANNED or not m.active:
                            raise Refused("the backfill runs once the migration is started and active "
                                          f"(phase is {m.phase})")
                        started = True
                    assert self.m is not None
                    spec_b = await registry.get_model(self.store, self.m.model_b)
                    if embedder is None and not self.m.copy_vectors:
                        embedder = self._embedder or (self._factory or make_embedder)(spec_b)
                    await self._session(metadata_for(spec_b), embedder, once)
                    return self.stats
                except Exception as exc:  # noqa: BLE001 -- every failure is classified
                    if not started and isinstance(exc, Refused | NotFound):
                        raise  # start-up refusals keep their own error (rc 1, as always)
                    verdict, cause = classify_all(exc)
                    if verdict.transient:
                        await self._wait(verdict)
                        continue
                    return await self._stop_for(verdict, cause)
        finally:
            if embedder is not None and self._embedder is None:
                await embedder.aclose()

    async def _session(self, meta: dict[str, Any], embedder: Embedder | None, once: bool) -> None:
        """One connected stretch: re-read the record, (re-)claim partitions, copy, control."""
        m = await self._refresh()
        texts = make_fetcher(self.config.text_fetcher, m.text_field, m.doc_key)
        copier = copier_for(m)(self.client, m, meta, embedder, texts, fault=self.fault,
                        reservoir=self.reservoir, on_latency=self._latency)
        await ensure_plan(self.store, self.client, m, self.config.int_partitions,
                          self.config.uuid_partitions)
        await self._set_backfill("running", only_from="pending")
        self.waiting.succeed(self.clock())  # the store answers again: this outage is over
        self._stop = asyncio.Event()
        self.handles.clear()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._control())
            try:
                await self._work(copier, once)
            finally:
                self._stop.set()
        if self.state == "done":  # the control loop's last publish may have begun before `done`
            await self._publish(self.clock(), log_line=False)

    async def _wait(self, verdict: Verdict) -> None:
        """Wait out a transient failure outside any one partition: log, try to publish, sleep."""
        now = self.clock()
        delay = self.retry.delay(self.waiting.attempt + 1, self._draw())
        self.waiting.fail(verdict, now, delay)
        log.warning("%s: waiting: %s", self.owner, self.waiting.text(now))
        try:  # the store may be what is down: then the reason is published once it is back
            await asyncio.wait_for(self._put_progress(now), timeout=min(delay, 5.0))
        except Exception as exc:  # noqa: BLE001 -- best effort, the log line above has it
            log.debug("%s: could not publish the wait: %s", self.owner, exc)
        await asyncio.sleep(delay)

    async def _stop_for(self, verdict: Verdict, cause: BaseException) -> Stats:
        """A permanent failure: return if the migration has ended (the usual reason a
        collection or record vanishes), else raise :class:`Stopped`."""
        if verdict.kind != "gone":
            try:
                m = await self._refresh()
                if not m.active:
                    verdict = Verdict("gone", self._ended_reason(m))
            except MigrationEnded as exc:
                verdict = Verdict("gone", str(exc))
            except Exception as exc:  # noqa: BLE001 -- the first failure is the one to report
                log.debug("%s: re-reading the migration after %s: %s", self.owner, verdict.reason, exc)
        if verdict.kind != "gone":
            log.error("%s: stopping: %s", self.owner, verdict.reason)
            raise Stopped(verdict) from cause
        self.ended, self.state = verdict.reason, "ended"
        log.warning("%s: %s", self.owner, verdict.reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._put_progress(self.clock()), timeout=5.0)
        return self.stats

    # -- partitions

    async def _work(self, copier: Copier, once: bool) -> None:
        """Claim and copy partitions until none is left (``once``) or the migration ends.

        The next partition is claimed as soon as the current one is scrolled to its end, while
        its last batches are still written: the embedder never idles across a partition
        change. All partitions share one budget of prepared batches (``concurrency``), so a
        kill still throws away at most that many embedded batches."""
        slots = asyncio.Semaphore(max(1, self.config.concurrency))
        copies: set[asyncio.Task[None]] = set()
        async with asyncio.TaskGroup() as tg:
            while True:
                copies = {t for t in copies if not t.done()}
                if self.waiting.active and copies:  # in an outage, probe with one partition at a time
                    await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
                    continue
                leases = await self.leases()
                lease = parts.pick([x for x in leases if x.key not in self.handles], self.owner, self.clock())
                if lease is None:
                    if copies:  # a partition still being written may fail and become claimable
                        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if all(x.done for x in leases):
                        await self._drain_repairs(copier)
                        await self._finish()
                        if once or not (self.m and self.m.active):
                            return
                    self.state = "idle"
                    await asyncio.sleep(self.config.idle_poll)
                    continue
                try:
                    handle = LeaseHandle(self.store, lease)
                    await handle.put(parts.claim(lease, self.owner, self.clock(), self.config.lease_ttl))
                except LeaseLost:
                    continue
                scrolled = asyncio.Event()
                copies.add(tg.create_task(self._copy(copier, handle, slots, scrolled)))
                await scrolled.wait()

    async def _copy(self, copier: Copier, handle: LeaseHandle, slots: asyncio.Semaphore,
                    scrolled: asyncio.Event) -> None:
        """Copy one claimed partition; ``scrolled`` is set once nothing more is read from it
        (or it failed), which is when the daemon may claim the next one."""
        key = handle.lease.key
        self.handles[key] = handle

        async def checkpoint(cursor: PointId | None, stats: Stats) -> None:
            await handle.put(parts.advance(handle.lease, cursor, stats.written, self.clock(),
                                           self.config.lease_ttl))
            self._count(stats)

        async def gate(n: int) -> None:
            await self._gate(n)
            await handle.hold(self.owner, self.clock(), self.config.lease_ttl)  # never write on a lapsed lease

        run = PartitionRun(lambda: self.batch_size, self.config.concurrency, gate, checkpoint,
                           slots=slots, on_scrolled=scrolled.set)
        self.state = "running"
        try:
            await run_partition(copier, handle.lease.partition, handle.lease.resume_from(), run)
        except Exception as exc:  # noqa: BLE001 -- classified; run_partition wraps in groups
            lost = [e for e in leaves(exc) if isinstance(e, LeaseLost)]
            if lost:
                log.warning("%s: %s; moving on", self.owner, lost[0])
                return
            verdict, _ = classify_all(exc)
            if not verdict.transient:
                raise
            now = self.clock()
            delay = self.retry.delay(self.waiting.attempt + 1, self._draw())
            self.waiting.fail(verdict, now, delay)
            if self.waiting.attempt == 1 or isinstance(exc, RateLimited) or any(
                    isinstance(e, RateLimited) for e in leaves(exc)):
                # come back at a reduced rate: halved once per outage (not once per retry,
                # which would restart at 1/64), and on every "slow down" from the embedder
                self.backoff.signal(verdict.reason)
            log.warning("%s: partition %s: waiting: %s (then from its checkpoint)", self.owner, key,
                        self.waiting.text(now))
            scrolled.set()  # the daemon may claim another partition meanwhile (see _work)
            await asyncio.sleep(delay)
        finally:
            self.handles.pop(key, None)
            scrolled.set()

    def _count(self, stats: Stats) -> None:
        self.stats.add(stats)
        self.backoff.success()
        self.waiting.succeed(self.clock())
        for outcome in ("written", "vanished", "redone", "no_text"):
            POINTS.labels(self.id, outcome).inc(getattr(stats, outcome))

    # -- rate control

    async def _gate(self, n: int) -> None:
        """Wait until ``n`` points may be written under pause, throttle and back-off."""
        while True:
            rate = self._op_rate
            if self.backoff.factor < 1:
                base = rate if not math.isinf(rate) else max(self.rate_window.rate(), float(self.batch_size))
                rate = base * self.backoff.factor
            self.bucket.set_rate(rate)
            wait = self.bucket.delay(self.clock())
            if wait <= 0:
                self.bucket.take(n, self.clock())
                return
            await asyncio.sleep(min(wait, 0.2))

    def _latency(self, seconds: float) -> None:
        why = latency_signal(seconds, self.config.latency_threshold)
        if why:
            self.backoff.signal(why)

    # -- repair log and completion

    async def _drain_repairs(self, copier: Copier) -> None:
        entries = await repair_log.pending(self.store, self.id)
        ids = [e.point_id for e in entries if e.point_id is not None]
        for k in range(0, len(ids), self.batch_size):
            await self._gate(len(ids[k:k + self.batch_size]))
            self._count(await copier.redo(ids[k:k + self.batch_size]))  # type: ignore[arg-type]
        assert self.m is not None
        full = self.m.counter(NEEDS_FULL_VERIFY) > 0
        if full or any(e.point_id is None for e in entries):
            await daemon_pass(copier, self.store, self.m, self.owner, gate=self._gate)
        for e in entries:
            await repair_log.resolve(self.store, e)
        if full:
            await self._update_counters({NEEDS_FULL_VERIFY: 0})

    async def _finish(self) -> None:
        if self.m is not None and self.m.backfill != "done":
            await self._publish(self.clock(), log_line=True)
            await self._set_backfill("done")
            self.m = await self._refresh()
        self.state = "done"


def stats_dict(stats: Stats) -> dict[str, Any]:
    return dataclasses.asdict(stats)

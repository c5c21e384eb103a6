"""The backfill daemon: claims partitions by lease, copies them, drains the repair log.

Any number of daemons (on any machines) share one migration: the first one splits the id
space into partitions (:mod:`backfill.partitions`, one ``backfill_plan`` record created by
compare-and-set so everyone agrees), then each daemon repeatedly claims a free or expired
partition, copies it with :func:`backfill.pipeline.run_partition` and checkpoints it through a
:class:`LeaseHandle` (compare-and-set: a daemon that lost its lease stops at its next
checkpoint). A control loop re-reads the migration record every ``refresh`` seconds (pause,
throttle, batch size), renews leases, and publishes progress and counters. When every
partition is done the daemon replays the repair log and marks the backfill ``done``; with
``once`` it then exits, otherwise it keeps draining the repair log while the migration is
active.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from qdrant_client import AsyncQdrantClient

from backfill import partitions as parts
from backfill import samples
from proxy.migration import progress
from backfill.partitions import Lease, Partition, PointId
from backfill.pipeline import Copier, PartitionRun, Stats, run_partition
from backfill.texts import Fault, make_fetcher
from backfill.throttle import UNTHROTTLED, Backoff, TokenBucket, latency_signal, operator_rate
from backfill.verify import verify
from proxy import registry
from proxy.dataplane import repair_log
from proxy.embedders import Embedder, make_embedder
from proxy.errors import Conflict, EmbedderError, UpstreamError
from proxy.intercept.planner import metadata_for
from proxy.migration.record import ACTIVE_PHASES, PLANNED, Migration, Refused
from proxy.state.store import StateStore

log = logging.getLogger("switchyard.backfill")

BATCH_MIN, BATCH_MAX = 1, 1024
BATCH_COUNTER = "backfill_batch_size"
#: Set by the proxy's repair spool replay: the repair log may have missed changes.
NEEDS_FULL_VERIFY = "needs_full_verify"

POINTS = Counter("switchyard_backfill_points_total", "Points handled by the backfill.",
                 ["migration", "outcome"])
RATE = Gauge("switchyard_backfill_rate", "Backfill points per second (moving window).", ["migration"])
PAUSED = Gauge("switchyard_backfill_paused", "1 while the backfill is paused or throttled to 0.",
               ["migration"])
DONE = Gauge("switchyard_backfill_done_points", "Points copied so far (all daemons).", ["migration"])
TOTAL = Gauge("switchyard_backfill_total_points", "Points to copy (source count).", ["migration"])


def clamp_batch(n: int) -> int:
    """Batch sizes stay within ``[BATCH_MIN, BATCH_MAX]``."""
    return max(BATCH_MIN, min(BATCH_MAX, int(n)))


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    batch_size: int = 64
    concurrency: int = 2
    lease_ttl: float = 10.0
    refresh: float = 0.5
    progress_interval: float = 10.0
    int_partitions: int = 8
    uuid_partitions: int = 4
    latency_threshold: float = 5.0
    idle_poll: float = 0.5
    text_fetcher: str | None = None


class LeaseLost(Exception):
    """Our lease on a partition was taken over (it expired): stop working on it."""


class LeaseHandle:
    """Our current view of one lease record; every write is a CAS on its revision."""

    def __init__(self, store: StateStore, lease: Lease) -> None:
        self.store, self.lease, self.lock = store, lease, asyncio.Lock()

    async def put(self, new: Lease) -> None:
        async with self.lock:
            await self._put(new)

    async def _put(self, new: Lease) -> None:
        try:
            env = await self.store.put(parts.LEASE_KIND, new.key, new.to_dict(), self.lease.rev)
        except Conflict as exc:
            raise LeaseLost(f"lease {new.key} was taken over") from exc
        self.lease = Lease.from_dict(env.data, env.rev)

    async def renew(self, owner: str, now: float, ttl: float) -> None:
        async with self.lock:
            if self.lease.expires - now < ttl * 2 / 3:
                await self._put(parts.claim(self.lease, owner, now, ttl))


class Daemon:
    def __init__(self, store: StateStore, migration_id: str, config: DaemonConfig = DaemonConfig(),
                 *, client: AsyncQdrantClient | None = None, owner: str | None = None,
                 fault: Fault | None = None, embedder: Embedder | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.id, self.config = store, migration_id, config
        self.client = client or store.client
        self.owner = owner or f"backfill-{uuid.uuid4().hex[:8]}"
        self.fault, self._embedder, self.clock = fault, embedder, clock
        self.batch_size = clamp_batch(config.batch_size)
        self.bucket, self.backoff = TokenBucket(), Backoff()
        self.rate_window = progress.RateWindow()
        self.reason, self.state = "", "starting"
        self.stats = Stats()
        self.reservoir = samples.Reservoir()
        self._samples_saved = (0, 0.0)  # (reservoir.changes, when) of the last save
        self.handles: dict[str, LeaseHandle] = {}
        self.m: Migration | None = None
        self._op_rate = UNTHROTTLED
        self._stop = asyncio.Event()

    # -- entry point

    async def run(self, once: bool = False) -> Stats:
        """Copy every partition and drain the repair log; with ``once`` return when done."""
        m = await self._refresh()
        if m.phase == PLANNED or not m.active:
            raise Refused(f"the backfill runs once the migration is started and active (phase is {m.phase})")
        spec_b = await registry.get_model(self.store, m.model_b)
        embedder = None if m.copy_vectors else (self._embedder or make_embedder(spec_b))
        texts = make_fetcher(self.config.text_fetcher, m.text_field, m.doc_key)
        copier = Copier(self.client, m, metadata_for(spec_b), embedder, texts, fault=self.fault,
                        reservoir=self.reservoir, on_latency=self._latency)
        await self._ensure_partitions(m)
        await self._set_backfill("running", only_from="pending")
        try:
            async with asyncio.TaskGroup() as tg:
                control = tg.create_task(self._control())
                try:
                    await self._work(copier, once)
                finally:
                    self._stop.set()
                    await control
        finally:
            if embedder is not None and self._embedder is None:
                await embedder.aclose()
        return self.stats

    # -- partitions

    async def _ensure_partitions(self, m: Migration) -> None:
        if await self.store.get(parts.PLAN_KIND, m.id) is None:
            plan = parts.split(await self._max_int_id(m), self.config.int_partitions,
                               self.config.uuid_partitions)
            with contextlib.suppress(Conflict):
                await self.store.create(parts.PLAN_KIND, m.id, {"partitions": [p.to_dict() for p in plan]})
        env = await self.store.require(parts.PLAN_KIND, m.id)
        for d in env.data["partitions"]:
            lease = Lease(m.id, Partition.from_dict(d))
            if await self.store.get(parts.LEASE_KIND, lease.key) is None:
                with contextlib.suppress(Conflict):
                    await self.store.create(parts.LEASE_KIND, lease.key, lease.to_dict())

    async def _max_int_id(self, m: Migration) -> int | None:
        """The largest integer id in the source, by bisection over scroll offsets (~64 calls)."""
        async def int_at_or_after(x: int) -> int | None:
            recs, _ = await self.client.scroll(m.source, offset=x, limit=1, with_payload=False)
            return recs[0].id if recs and isinstance(recs[0].id, int) else None

        first = await int_at_or_after(0)
        if first is None:
            return None
        lo, hi = first, parts.INT_END  # an int exists at >= lo; none at >= hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            found = await int_at_or_after(mid)
            if found is None:
                hi = mid
            else:
                lo = found if found >= mid else mid
        return lo

    async def leases(self) -> list[Lease]:
        return [Lease.from_dict(e.data, e.rev) for e in await self.store.list(parts.LEASE_KIND)
                if e.key.startswith(self.id + "/")]

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

        run = PartitionRun(lambda: self.batch_size, self.config.concurrency, self._gate, checkpoint,
                           slots=slots, on_scrolled=scrolled.set)
        self.state = "running"
        try:
            await run_partition(copier, handle.lease.partition, handle.lease.resume_from(), run)
        except LeaseLost as exc:
            log.warning("%s: %s; moving on", self.owner, exc)
        except (EmbedderError, UpstreamError) as exc:
            self.backoff.signal(f"{type(exc).__name__}: {exc}")
            log.warning("%s: partition %s failed (%s); retrying from its checkpoint", self.owner, key, exc)
            scrolled.set()  # the daemon moves on while this partition backs off
            await asyncio.sleep(min(30.0, 0.5 / self.backoff.factor))
        finally:
            self.handles.pop(key, None)
            scrolled.set()

    def _count(self, stats: Stats) -> None:
        self.stats.add(stats)
        self.backoff.success()
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

    # -- control loop

    async def _refresh(self) -> Migration:
        m = Migration.from_envelope(await self.store.require(Migration.KIND, self.id))
        events = [e.action for e in m.history if e.action.startswith("throttle:")]
        self._op_rate, op_reason = operator_rate(m.throttle, m.paused, events)
        if m.counter(BATCH_COUNTER):
            self.batch_size = clamp_batch(m.counter(BATCH_COUNTER))
        self.reason = op_reason or self.backoff.reason
        self.m = m
        PAUSED.labels(self.id).set(1 if self._op_rate == 0 else 0)
        return m

    async def _control(self) -> None:
        last_log = last_publish = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.refresh)
            try:
                await self._refresh()
                for handle in list(self.handles.values()):
                    with contextlib.suppress(LeaseLost):
                        await handle.renew(self.owner, self.clock(), self.config.lease_ttl)
                now = self.clock()
                if now - last_publish >= 2.0 or self._stop.is_set():
                    last_publish = now
                    await self._publish(now, log_line=now - last_log >= self.config.progress_interval)
                    if now - last_log >= self.config.progress_interval:
                        last_log = now
            except (UpstreamError, Conflict) as exc:
                log.warning("%s: control loop: %s", self.owner, exc)

    async def _publish(self, now: float, log_line: bool) -> None:
        leases = await self.leases()
        done = sum(lease.copied for lease in leases)
        assert self.m is not None
        total = max(done, (await self.client.count(self.m.source, exact=True)).count)
        self.rate_window.observe(now, done)
        rate = self.rate_window.rate()
        state = "paused" if self._op_rate == 0 else ("throttled" if self.reason else self.state)
        mine = {lease.key: {"cursor": lease.cursor, "done": lease.done, "copied": lease.copied}
                for lease in leases if lease.owner == self.owner}
        await self.store.upsert(progress.KIND, f"{self.id}/{self.owner}",
                                progress.record(self.owner, state, self.reason, done, total, rate, mine, now))
        pending = len(await repair_log.pending(self.store, self.id))
        await self._update_counters({"backfill_done": done, "backfill_total": total,
                                     "backfill_rate": int(rate), "repair_pending": pending})
        RATE.labels(self.id).set(rate)
        DONE.labels(self.id).set(done)
        TOTAL.labels(self.id).set(total)
        if self.reservoir.changes != self._samples_saved[0] and (
                now - self._samples_saved[1] >= samples.SAVE_EVERY or self._stop.is_set()):
            await samples.save(self.store, self.id, self.owner, self.reservoir)
            self._samples_saved = (self.reservoir.changes, now)
        if log_line:
            log.info(progress.line(self.id, done, total, rate, state, self.reason))

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
            await verify(copier, self.store, self.m, repair=True, gate=self._gate, resume=False)
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

"""The write side of the repair log: batched, bounded per second, with a local spool.

A mirrored write that leaves the secondary behind never fails the client's request: the ids
it touched (or its filter, when they could not be resolved) become repair records in the state
store, which the backfill daemon drains (``repair_log.py``). Records:

- kind ``repair``, key ``<migration>/<point id>``: ``{"migration", "point_id", "reason", "at"}``
- kind ``repair_filter``, key ``<migration>/<uuid>``: ``{"migration", "filter", "reason", "at"}``
- kind ``repair_filter``, key ``<migration>/coarse`` (:data:`COARSE`): the filter ``{}`` (the
  whole collection needs a verify), with ``since`` and ``dropped``: written instead of per-id
  records while appends exceed the bound.

Group commit: :meth:`RepairLog.record` queues its records and returns once they are durable
(in the store, or in the local spool when the store fails); whoever finds the log idle writes
everything queued meanwhile in one store call. A token bucket (``rate`` records per second,
``burst``) bounds what reaches the store, so a flood cannot write faster than the backfill
drains (one bucket per migration: each has its own backfill); records past the bound are dropped for one coarse entry per migration, rewritten at
most every :data:`COARSE_EVERY` seconds while the flood lasts (a drain that deletes an older
coarse entry finds the next one). Records whose store write fails go to the spool (JSON lines,
fsync'd), replayed by :meth:`RepairLog.replay`; a replayed migration is marked
``needs_full_verify``, since the spool may have held records the drain should have seen sooner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.repair")

REPAIR_KIND = "repair"
REPAIR_FILTER_KIND = "repair_filter"
COARSE = "coarse"
COARSE_EVERY = 0.25
#: An overflow episode ends when no record was dropped for this long.
OVERFLOW_QUIET = 5.0
_CHUNK = 512
_MAX_ID = 1 << 64

APPENDED = Counter("switchyard_repair_log_appends_total", "Repair records written, by kind.",
                   ["migration", "kind"])
DROPPED = Counter("switchyard_repair_log_dropped_total",
                  "Repair records past the append bound, covered by the coarse entry.", ["migration"])
SPOOLED = Counter("switchyard_repair_spooled_total",
                  "Repair records written to the local spool because the state store failed.")
SPOOL_PENDING = Gauge("switchyard_repair_spool_pending", "Repair records waiting in the local spool.")

Record = tuple[str, str, dict[str, Any]]


def stored_id(point_id: Any) -> int | str:
    """A point id as a repair record can hold it: Qdrant's ids as they are, anything else
    (an int outside 0..2^64-1, a float, ...) as its text, so the record can always be written."""
    if isinstance(point_id, int) and not isinstance(point_id, bool) and 0 <= point_id < _MAX_ID:
        return point_id
    return point_id if isinstance(point_id, str) else str(point_id)


def records_for(migration_id: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]],
                reason: str, now: float) -> list[Record]:
    """The repair records of one failure (pure)."""
    out: list[Record] = []
    for pid in ids:
        sid = stored_id(pid)
        out.append((REPAIR_KIND, f"{migration_id}/{sid}",
                    {"migration": migration_id, "point_id": sid, "reason": reason, "at": now}))
    out += [(REPAIR_FILTER_KIND, f"{migration_id}/{uuid.uuid4().hex}",
             {"migration": migration_id, "filter": flt, "reason": reason, "at": now}) for flt in filters]
    return out


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (pure but for the clock passed in)."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, n: int, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if n <= self.tokens:
            self.tokens -= n
            return True
        return False


@dataclass(slots=True)
class Overflow:
    """One migration's records past the bound since ``since`` (wall clock)."""

    since: float
    dropped: int = 0
    last_drop: float = 0.0
    written: float = 0.0  # monotonic time of the last coarse write (0: not yet)
    waiting: list[asyncio.Future[None]] = field(default_factory=list)


def coarse_record(migration_id: str, o: Overflow, rate: float, now: float) -> Record:
    reason = (f"repair-log appends exceeded {rate:g} records/s since "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(o.since))} ({o.dropped} dropped); "
              "the whole collection needs a verify")
    return (REPAIR_FILTER_KIND, f"{migration_id}/{COARSE}",
            {"migration": migration_id, "filter": {}, "reason": reason, "at": now, "coarse": True,
             "since": o.since, "dropped": o.dropped})


class RepairLog:
    def __init__(self, store: StateStore, spool_path: str | os.PathLike[str], rate: float = 100.0,
                 burst: float = 1000.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.spool = Path(spool_path)
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, TokenBucket] = {}  # per migration: each has its own backfill draining it
        self.overflow: dict[str, Overflow] = {}
        self._clock = clock
        self._queue: list[tuple[list[Record], asyncio.Future[None]]] = []
        self._flush_lock = asyncio.Lock()
        self._replay_lock = asyncio.Lock()

    async def record(self, migration_id: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]],
                     reason: str) -> None:
        """Record ids / filters the secondary may be wrong for; returns once that is durable
        (store, coarse entry or local spool). Raises :class:`OSError` only when even the spool
        cannot be written (the caller's write-ahead intent then stays for the next start)."""
        records = records_for(migration_id, ids, filters, reason, time.time())
        if not records:
            return
        log.warning("migration %s: secondary may differ for %d id(s) and %d filter(s): %s",
                    migration_id, len(ids), len(filters), reason)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((records, done))
        while not done.done():
            async with self._flush_lock:
                if not done.done():
                    await self._flush()
            await asyncio.sleep(0)  # never spin: every flush answers what it took
        done.result()

    async def _flush(self) -> None:
        """Write everything queued (group commit): within the bound as records, past it as one
        coarse entry per migration; to the spool when the store fails."""
        queued, self._queue = self._queue, []
        now, wall = self._clock(), time.time()
        batch: list[Record] = []
        settled: list[asyncio.Future[None]] = []
        admitted: list[tuple[list[Record], asyncio.Future[None]]] = []
        for records, done in queued:
            mid = records[0][2]["migration"]
            bucket = self.buckets.setdefault(mid, TokenBucket(self.rate, self.burst))
            if bucket.take(len(records), now):
                batch += records
                settled.append(done)
                admitted.append((records, done))
                continue
            if mid not in self.overflow:
                log.error("migration %s: repair-log appends exceed %g records/s; writing one coarse entry "
                          "(the whole collection needs a verify) instead of per-id records", mid, self.rate)
            o = self.overflow.setdefault(mid, Overflow(since=wall))
            o.dropped, o.last_drop = o.dropped + len(records), now
            o.waiting.append(done)
            DROPPED.labels(mid).inc(len(records))
        try:
            await self._due_coarse(batch, settled)
        except BaseException:  # cancelled while batching a flood: the next flush takes them
            self._queue[:0] = [(r, d) for r, d in admitted if not d.done()]
            raise
        await self._durable(batch, settled)
        for mid in [m for m, o in self.overflow.items() if not o.waiting and now - o.last_drop > OVERFLOW_QUIET]:
            log.warning("migration %s: repair-log appends back under the bound", mid)
            del self.overflow[mid]

    async def _due_coarse(self, batch: list[Record], settled: list[asyncio.Future[None]]) -> None:
        """Add a coarse entry for each overflowing migration with waiting records, at most every
        :data:`COARSE_EVERY` seconds (the wait batches a flood's drops into one write)."""
        due = [m for m, o in self.overflow.items() if o.waiting]
        if not due:
            return
        wait = max(0.0, max(o.written for o in self.overflow.values()) + COARSE_EVERY - self._clock())
        if wait:
            await asyncio.sleep(wait)
        now = self._clock()
        for mid in due:
            o = self.overflow[mid]
            batch.append(coarse_record(mid, o, self.rate, time.time()))
            settled += o.waiting
            o.waiting, o.written = [], now

    async def _durable(self, batch: list[Record], settled: list[asyncio.Future[None]]) -> None:
        """Store, else spool; every waiter is answered whatever happens (an error only when
        even the spool failed: its write-ahead intent then stays for the next start)."""
        error: BaseException | None = None
        try:
            await self._write(batch)
        except Exception as exc:  # noqa: BLE001 - the store's or an encoding failure: spool it
            log.error("repair log unavailable (%s: %s); spooling %d record(s) to %s",
                      type(exc).__name__, exc, len(batch), self.spool)
            try:
                self._append_spool(batch)
            except Exception as spool_exc:  # noqa: BLE001 - answered to the waiters below
                log.critical("repair spool %s unwritable: %s", self.spool, spool_exc)
                error = spool_exc
        except BaseException as exc:  # cancelled mid-write: the waiters must not wait forever
            for done in settled:
                if not done.done():
                    done.set_exception(SwitchyardError(f"repair log write interrupted: {exc!r}"))
            raise
        for done in settled:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    async def _write(self, records: Sequence[Record]) -> None:
        for k in range(0, len(records), _CHUNK):
            chunk = records[k:k + _CHUNK]
            await self.store.upsert_many(chunk)
            for kind, _key, data in chunk:
                APPENDED.labels(data["migration"], kind).inc()

    def _append_spool(self, records: Sequence[Record]) -> None:
        if not records:
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("ab") as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        SPOOLED.inc(len(records))
        SPOOL_PENDING.inc(len(records))

    def absorb(self, raw: bytes) -> int:
        """Take over another (dead) proxy's spooled records into ours; returns how many."""
        records = [tuple(orjson.loads(ln)) for ln in raw.splitlines() if ln.strip()]
        self._append_spool(records)  # type: ignore[arg-type]
        return len(records)

    async def replay(self) -> int:
        """Move spooled records into the store; returns how many. Marks their migrations."""
        async with self._replay_lock:
            if not self.spool.exists():
                return 0
            lines = [ln for ln in self.spool.read_bytes().splitlines() if ln.strip()]
            records: list[Record] = [tuple(orjson.loads(ln)) for ln in lines]  # type: ignore[misc]
            await self._write(records)  # raises while the store is still down: try again later
            for migration_id in {r[2]["migration"] for r in records}:
                await self._mark_full_verify(migration_id)
            self.spool.unlink()
            SPOOL_PENDING.set(0)
            log.info("replayed %d spooled repair record(s)", len(records))
            return len(records)

    async def _mark_full_verify(self, migration_id: str) -> None:
        for _ in range(5):
            env = await self.store.get("migration", migration_id)
            if env is None:
                return
            data = dict(env.data)
            data["counters"] = {**data.get("counters", {}), "needs_full_verify": 1}
            try:
                await self.store.put("migration", migration_id, data, env.rev)
                return
            except SwitchyardError:
                await asyncio.sleep(0.05)

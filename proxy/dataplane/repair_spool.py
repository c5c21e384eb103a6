"""The write side of the repair log, with a local spool for when the state store is down.

A mirrored write that fails on the secondary never fails the client's request: the ids it
touched (or its filter, when they could not be resolved) become repair records in the state
store, which the backfill daemon drains (``repair_log.py``). Records:

- kind ``repair``, key ``<migration>/<point id>``: ``{"migration", "point_id", "reason", "at"}``
- kind ``repair_filter``, key ``<migration>/<uuid>``: ``{"migration", "filter", "reason", "at"}``

If even the store cannot be written, the records are appended to a local JSON-lines spool
file and replayed by :meth:`RepairLog.replay` (the proxy runs it periodically); a replayed
migration is marked ``needs_full_verify`` in its counters, since the window in which the spool
was the only record may have lost track of filter-shaped changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from proxy.errors import SwitchyardError
from proxy.state.store import StateStore

log = logging.getLogger("switchyard.repair")

REPAIR_KIND = "repair"
REPAIR_FILTER_KIND = "repair_filter"

APPENDED = Counter("switchyard_repair_log_appends_total", "Repair records written, by kind.",
                   ["migration", "kind"])
SPOOLED = Counter("switchyard_repair_spooled_total",
                  "Repair records written to the local spool because the state store failed.")
SPOOL_PENDING = Gauge("switchyard_repair_spool_pending", "Repair records waiting in the local spool.")


def _records(migration_id: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]],
             reason: str) -> list[tuple[str, str, dict[str, Any]]]:
    now = time.time()
    out = [(REPAIR_KIND, f"{migration_id}/{pid}",
            {"migration": migration_id, "point_id": pid, "reason": reason, "at": now}) for pid in ids]
    out += [(REPAIR_FILTER_KIND, f"{migration_id}/{uuid.uuid4().hex}",
             {"migration": migration_id, "filter": flt, "reason": reason, "at": now}) for flt in filters]
    return out


class RepairLog:
    def __init__(self, store: StateStore, spool_path: str | os.PathLike[str]) -> None:
        self.store = store
        self.spool = Path(spool_path)
        self._lock = asyncio.Lock()

    async def record(self, migration_id: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]],
                     reason: str) -> None:
        """Record ids / filters whose mirrored write failed; spools locally if the store fails."""
        records = _records(migration_id, ids, filters, reason)
        log.warning("migration %s: mirrored write failed for %d id(s) and %d filter(s): %s",
                    migration_id, len(ids), len(filters), reason)
        try:
            await self._write(records)
        except SwitchyardError as exc:
            log.error("repair log unavailable (%s); spooling %d record(s) to %s", exc, len(records), self.spool)
            self._append_spool(records)

    async def _write(self, records: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        for kind, key, data in records:
            await self.store.upsert(kind, key, data)
            APPENDED.labels(data["migration"], kind).inc()

    def _append_spool(self, records: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with self.spool.open("ab") as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        SPOOLED.inc(len(records))
        SPOOL_PENDING.inc(len(records))

    async def replay(self) -> int:
        """Move spooled records into the store; returns how many. Marks their migrations."""
        async with self._lock:
            if not self.spool.exists():
                return 0
            lines = [ln for ln in self.spool.read_bytes().splitlines() if ln.strip()]
            records = [tuple(orjson.loads(ln)) for ln in lines]
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

"""Per-migration records a proxy keeps in memory and writes to the state store now and then.

The hot-document counts (:mod:`hot_counts`) and the shadow-read query sample
(:mod:`query_sample`) are both updated on the read path and must never slow it or fail it: an
update is a dict change, and at most every ``every`` seconds, when a record changed, one owned
background task writes the changed records (kind ``kind``, key ``"<migration>/<proxy
instance>"``). A failed write is logged and retried at the next interval; :meth:`aclose` stops a
write in flight and writes once more. ``first_at_once`` lets the first change be written
without waiting an interval (the query sample: ``migrate eval`` can sample soon).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.flushed_records")


class Flushable(Protocol):
    changes: int  # changes since the last write; 0 after a write

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Flushable)


class FlushedRecords(Generic[R]):
    def __init__(self, store: StateStore, owner: str, kind: str, make: Callable[[], R], *,
                 every: float = 30.0, first_at_once: bool = False, what: str = "records") -> None:
        self._store, self.owner, self.kind, self.every = store, owner, kind, every
        self._make, self._what = make, what
        self.records: dict[str, R] = {}
        self._last = float("-inf") if first_at_once else time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def entry(self, migration_id: str) -> R:
        record = self.records.get(migration_id)
        if record is None:
            record = self.records[migration_id] = self._make()
        return record

    def changed(self) -> None:
        """Start a write unless one ran within ``every`` seconds or is still running."""
        now = time.monotonic()
        if now - self._last >= self.every and (self._task is None or self._task.done()):
            self._last = now
            self._task = asyncio.get_running_loop().create_task(self.flush(), name=f"{self.kind}-flush")

    async def flush(self) -> None:
        for mid, record in list(self.records.items()):
            if not record.changes:
                continue
            try:
                await self._store.upsert(self.kind, f"{mid}/{self.owner}", record.to_dict())
                record.changes = 0
            except Exception as exc:  # noqa: BLE001 - retried at the next interval
                log.warning("%s for %s not flushed: %s", self._what, mid, exc)

    async def aclose(self) -> None:
        """Stop a write in flight, then write once more (best effort)."""
        await stop_task(self._task)
        await self.flush()

"""The proxy's counts of which points its merged reads return, flushed to the state store.

One :class:`~switchyard.proxy.dataplane.hot_docs.HeavyHitters` sketch per migration (bounded
memory whatever the traffic); :meth:`HotCounts.record` is a dict update on the read path.
At most every ``every`` seconds, and only when something changed, one background flush writes
the sketches (kind ``hot_docs``, key ``"<migration>/<proxy instance>"``; the backfill merges
every proxy's record when it plans, ``backfill.leases.visiting_order``). A failed flush is
logged and retried at the next interval; it never affects a read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from switchyard.proxy.dataplane.hot_docs import KIND, HeavyHitters
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.hot_docs")


class HotCounts:
    def __init__(self, store: StateStore, owner: str, every: float = 30.0) -> None:
        self._store, self.owner, self.every = store, owner, every
        self.sketches: dict[str, HeavyHitters] = {}
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def record(self, migration_id: str, keys: Iterable[str]) -> None:
        """Count ``keys`` (canonical point ids) for ``migration_id``; maybe start a flush."""
        self.sketches.setdefault(migration_id, HeavyHitters()).offer(keys)
        now = time.monotonic()
        if now - self._last >= self.every and (self._task is None or self._task.done()):
            self._last = now
            self._task = asyncio.get_running_loop().create_task(self.flush(), name="hot-docs-flush")

    async def flush(self) -> None:
        for mid, sketch in list(self.sketches.items()):
            if not sketch.changes:
                continue
            try:
                await self._store.upsert(KIND, f"{mid}/{self.owner}", sketch.to_dict())
                sketch.changes = 0
            except Exception as exc:  # noqa: BLE001 - retried at the next interval
                log.warning("hot-document counts for %s not flushed: %s", mid, exc)

    async def aclose(self) -> None:
        """Stop a flush in flight, then flush once more (best effort)."""
        await stop_task(self._task)
        await self.flush()

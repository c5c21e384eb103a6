"""The proxy's counts of which points its merged reads return, flushed to the state store.

One :class:`~switchyard.proxy.dataplane.hot_docs.HeavyHitters` sketch per migration (bounded
memory whatever the traffic); :meth:`HotCounts.record` is a dict update on the read path.
At most every ``every`` seconds, and only when something changed, one background flush writes
the sketches (kind ``hot_docs``, key ``"<migration>/<proxy instance>"``; the backfill merges
every proxy's record when it plans, ``backfill.leases.visiting_order``, and re-reads them while
it runs, ``backfill.hot_recheck``). A failed flush is
logged and retried at the next interval; it never affects a read (:mod:`flushed_records`).
"""

from __future__ import annotations

from collections.abc import Iterable

from switchyard.proxy.dataplane.flushed_records import FlushedRecords
from switchyard.proxy.dataplane.hot_docs import KIND, HeavyHitters
from switchyard.proxy.state.store import StateStore


class HotCounts(FlushedRecords[HeavyHitters]):
    def __init__(self, store: StateStore, owner: str, every: float = 30.0) -> None:
        super().__init__(store, owner, KIND, HeavyHitters, every=every, what="hot-document counts")

    def record(self, migration_id: str, keys: Iterable[str]) -> None:
        """Count ``keys`` (canonical point ids) for ``migration_id``; maybe start a flush."""
        self.entry(migration_id).offer(keys)
        self.changed()

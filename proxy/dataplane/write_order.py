"""The order of mirrored writes in one proxy: the secondary sees writes to a point in the
primary's order.

Without it, two writes to the same id can reach the primary as A then B and the secondary as
B then A (each mirror runs after its own primary write, at its own pace: an embedding, a
re-read), which leaves a difference no repair record names. So a mirrored write holds, from
before its primary write until its secondary leg is done (or queued, in ``--mirror async``),

- its ids (shared with writes to other ids), or
- the whole migration, exclusively, when it has a filter or is not understood: a filter's
  points are only known by resolving it, and a point inserted between the resolution and the
  primary write would be missed.

Ids are taken in sorted order, so two writes never wait for each other in a cycle; the gate is
write-preferring, so a filter write is not starved by a stream of id writes. This orders the
writes of one process; writes to the same ids through different proxy processes can still
interleave (``docs/dataplane.md``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from switchyard.proxy.dataplane.writes import point_key


@dataclass(slots=True)
class _Gate:
    """A fair (first come, first served) readers-writer lock: readers are id writes, the
    writer a filter write. A waiting filter write holds back id writes that come after it."""

    readers: int = 0
    writer: bool = False
    waiters: deque[tuple[bool, asyncio.Future[None]]] = field(default_factory=deque)

    async def acquire(self, exclusive: bool) -> None:
        if not self.waiters and self._free(exclusive):
            self._take(exclusive)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((exclusive, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(exclusive)  # granted just as it was cancelled
            else:
                self.waiters.remove((exclusive, fut))
                self._wake()
            raise

    def release(self, exclusive: bool) -> None:
        if exclusive:
            self.writer = False
        else:
            self.readers -= 1
        self._wake()

    def _free(self, exclusive: bool) -> bool:
        return not self.writer and (self.readers == 0 if exclusive else True)

    def _take(self, exclusive: bool) -> None:
        if exclusive:
            self.writer = True
        else:
            self.readers += 1

    def _wake(self) -> None:
        while self.waiters:
            exclusive, fut = self.waiters[0]
            if fut.done():
                self.waiters.popleft()
                continue
            if not self._free(exclusive):
                return
            self.waiters.popleft()
            self._take(exclusive)
            fut.set_result(None)

    @property
    def idle(self) -> bool:
        return not self.readers and not self.writer and not self.waiters


class WriteOrder:
    """Per-id holds: a held id is a key of its migration's map, mapped to the writes waiting for
    it in arrival order (``None`` while nobody waits); releasing hands the id to the first of
    them. No lock object per id: a 1,024-point upsert holds 1,024 ids, and one ``asyncio.Lock``
    each cost ~2 ms of the proxy's CPU per write (``docs/proxy.md``). When none of a write's ids
    is held (the common case) they are taken in one ``dict.update``, with no await between the
    check and the take; otherwise one by one in sorted order (so no two writes wait in a cycle)."""

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}
        self._held: dict[str, dict[str, deque[asyncio.Future[None]] | None]] = {}

    @asynccontextmanager
    async def hold(self, migration: str, ids: Sequence[Any], exclusive: bool) -> AsyncIterator[None]:
        """Hold ``ids`` of ``migration`` (or all of it, ``exclusive``) for the block."""
        gate = self._gates.setdefault(migration, _Gate())
        held = self._held.setdefault(migration, {})
        keys: set[str] = set() if exclusive else set(map(point_key, ids))
        taken: list[str] = []  # ids this write holds
        entered = False
        try:
            await gate.acquire(exclusive)
            entered = True
            if held.keys().isdisjoint(keys):
                held.update(dict.fromkeys(keys))
                taken = list(keys)
            else:
                for key in sorted(keys):  # sorted only when some are held: no cycle (module doc)
                    if key in held:
                        await self._wait(held, key, taken)
                    else:
                        held[key] = None
                    taken.append(key)
            yield
        finally:
            for key in taken:
                self._release(held, key)
            if entered:
                gate.release(exclusive)
            if gate.idle and not held:
                self._gates.pop(migration, None)
                self._held.pop(migration, None)

    async def _wait(self, held: dict[str, deque[asyncio.Future[None]] | None], key: str, taken: list[str]) -> None:
        queue = held[key]
        if queue is None:
            queue = held[key] = deque()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                taken.append(key)  # handed over just as it was cancelled: ours to release
            raise

    @staticmethod
    def _release(held: dict[str, deque[asyncio.Future[None]] | None], key: str) -> None:
        queue = held[key]
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)  # the id passes to the next waiting write
                return
        del held[key]

    @property
    def busy(self) -> int:
        """Points held or waited for right now (for tests and metrics)."""
        return sum(len(held) for held in self._held.values())

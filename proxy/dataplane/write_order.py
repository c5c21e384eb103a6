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


@dataclass(slots=True)
class _Key:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class WriteOrder:
    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}
        self._keys: dict[tuple[str, str], _Key] = {}

    @asynccontextmanager
    async def hold(self, migration: str, ids: Sequence[Any], exclusive: bool) -> AsyncIterator[None]:
        """Hold ``ids`` of ``migration`` (or all of it, ``exclusive``) for the block."""
        gate = self._gates.setdefault(migration, _Gate())
        keys = [] if exclusive else sorted({str(i).lower() for i in ids})
        counted: list[_Key] = []  # users counted (a lock may still be waited for)
        acquired: list[_Key] = []  # locks this write holds
        entered = False
        try:
            await gate.acquire(exclusive)
            entered = True
            for k in keys:
                slot = self._keys.setdefault((migration, k), _Key())
                slot.users += 1
                counted.append(slot)
                await slot.lock.acquire()
                acquired.append(slot)
            yield
        finally:
            for slot in acquired:
                slot.lock.release()
            for k, slot in zip(keys, counted):
                slot.users -= 1
                if not slot.users:
                    self._keys.pop((migration, k), None)
            if entered:
                gate.release(exclusive)
            if gate.idle:
                self._gates.pop(migration, None)

    @property
    def busy(self) -> int:
        """Points held or waited for right now (for tests and metrics)."""
        return len(self._keys)


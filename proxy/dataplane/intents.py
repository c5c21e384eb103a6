"""Write-ahead intents: what a mirrored write will touch, on local disk before the primary sees it.

A proxy can die (``kill -9``, a crash, the machine) at any instant of a mirrored write: after
the primary applied it and before the secondary was levelled or a repair record was written.
So before the primary write the proxy appends an *intent* (migration, ids, unresolved filters)
to its own JSON-lines file in the spool directory and makes it durable; it appends a *clear*
once the secondary is level (or the difference is in the repair log, or the primary refused).
Whatever is begun and not cleared is pending.

Durability costs one ``fdatasync`` per *group* of writes, not per write: a writer appends its
line, then waits for a sync that started after its append (group commit: one sync covers
every line written before it began; it runs on a thread, not on the event loop). Clears are
not synced: a lost clear only turns into a redundant repair record.

Ownership: each proxy holds an exclusive ``flock`` on ``<owner>.lock`` for its whole life; the
kernel drops it when the process dies, however it dies. :func:`adopt` (at start and then
periodically) takes every unlocked owner's files, its own leftovers included: their pending
intents are re-begun in this proxy's log (durable) before their files are deleted, then turned
into repair records and cleared, and their repair spool (records the store refused) is absorbed
into this proxy's spool. A second live process with the same identity and spool directory is
refused at start (it would share files).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Gauge

from switchyard.proxy.dataplane.repair_spool import RepairLog, stored_id
from switchyard.proxy.errors import SwitchyardError

log = logging.getLogger("switchyard.intents")

#: Rewrite the file (pending intents only) once it grows past this many bytes.
COMPACT_BYTES = 4 << 20

PENDING = Gauge("switchyard_write_intents_pending",
                "Mirrored writes begun and not yet level on the secondary (or recorded).", ["owner"])


@dataclass(frozen=True, slots=True)
class Intent:
    seq: int
    migration: str
    ids: tuple[Any, ...]
    filters: tuple[dict[str, Any], ...]
    at: float
    owner: str


def intents_path(directory: Path, owner: str) -> Path:
    return directory / f"intents-{owner}.jsonl"


def spool_path(directory: Path, owner: str) -> Path:
    return directory / f"repair-spool-{owner}.jsonl"


def lock_path(directory: Path, owner: str) -> Path:
    return directory / f"{owner}.lock"


def parse(raw: bytes, owner: str) -> list[Intent]:
    """The pending intents of a log file's bytes (pure; a torn last line is ignored: its write
    never completed, so its primary write was never sent)."""
    begun: dict[int, Intent] = {}
    for line in raw.splitlines():
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(item, dict):
            continue
        if "c" in item:
            begun.pop(item["c"], None)
        elif "b" in item:
            begun[item["b"]] = Intent(item["b"], str(item.get("m")), tuple(item.get("ids") or ()),
                                      tuple(item.get("f") or ()), float(item.get("at") or 0), owner)
    return list(begun.values())


def _line(seq: int, migration: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]], at: float) -> bytes:
    return orjson.dumps({"b": seq, "m": migration, "ids": list(ids), "f": list(filters), "at": at}) + b"\n"


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path`` (created if missing), or ``None`` if a live
    process holds it. Checks the locked file is still the one at ``path`` (not unlinked)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


class IntentLog:
    """This proxy's intents (module docstring). ``open`` before use, ``close`` at stop."""

    def __init__(self, directory: str | os.PathLike[str], owner: str, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.owner = owner
        self.fsync = fsync
        self.path = intents_path(self.directory, owner)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._pending: dict[int, Intent] = {}
        self._seq = 0
        self._appended = 0  # begin lines written
        self._synced = 0
        self._sync_lock = asyncio.Lock()
        self.leftover: list[Intent] = []
        self.syncs = 0

    def open(self, wait: float = 2.0) -> None:
        """Lock this owner's files (a dead predecessor's lock is free at once; a live one is
        waited for briefly, then refused) and start a fresh log; the predecessor's pending
        intents are kept in ``leftover`` for :func:`adopt`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while (fd := _try_lock(lock_path(self.directory, self.owner))) is None:
            if time.monotonic() >= deadline:
                raise SwitchyardError(f"another live proxy uses instance id {self.owner!r} with spool "
                                      f"directory {self.directory}; give each proxy its own")
            time.sleep(0.05)
        self._lock_fd = fd
        found = parse(self.path.read_bytes(), self.owner) if self.path.exists() else []
        for intent in found:  # renumbered; stay durable in the fresh file until adopted
            self._seq += 1
            self._pending[self._seq] = Intent(self._seq, intent.migration, intent.ids, intent.filters,
                                              intent.at, intent.owner)
        self._appended = self._seq
        self._rewrite(list(self._pending.values()))  # atomic: the old file or the new, never neither
        self.leftover = list(self._pending.values())

    def _require_fd(self) -> int:
        if self._fd is None:
            raise SwitchyardError("write-ahead intent log is not open")
        return self._fd

    async def begin(self, migration: str, ids: Sequence[Any], filters: Sequence[dict[str, Any]]) -> int:
        """Record a write that is about to go to the primary; returns once it is durable.
        Raises :class:`SwitchyardError` when it cannot be written (the write must not proceed)."""
        self._seq += 1
        seq, now = self._seq, time.time()
        safe = tuple(stored_id(i) for i in ids)
        try:
            os.write(self._require_fd(), _line(seq, migration, safe, filters, now))
        except OSError as exc:
            raise SwitchyardError(f"write-ahead intent log {self.path} unwritable ({exc}); "
                                  "the write was not sent") from exc
        self._pending[seq] = Intent(seq, migration, safe, tuple(filters), now, self.owner)
        self._appended = seq
        PENDING.labels(self.owner).set(len(self._pending))
        if self.fsync:
            await self._sync_through(seq)
        return seq

    async def _sync_through(self, seq: int) -> None:
        async with self._sync_lock:
            if self._synced >= seq:
                return
            upto = self._appended
            try:
                await asyncio.to_thread(os.fdatasync, self._require_fd())
            except OSError as exc:
                raise SwitchyardError(f"write-ahead intent log {self.path}: sync failed ({exc}); "
                                      "the write was not sent") from exc
            self._synced = max(self._synced, upto)
            self.syncs += 1

    def clear(self, seq: int) -> None:
        """The write's secondary is level (or its difference recorded): forget the intent."""
        if self._pending.pop(seq, None) is None or self._fd is None:
            return
        PENDING.labels(self.owner).set(len(self._pending))
        try:
            os.write(self._fd, orjson.dumps({"c": seq}) + b"\n")
            if os.fstat(self._fd).st_size > COMPACT_BYTES:
                self._rewrite(list(self._pending.values()))
        except OSError as exc:  # a lost clear only costs a redundant repair record at the next start
            log.warning("write-ahead intent log %s: clear not written: %s", self.path, exc)

    def pending(self) -> list[Intent]:
        return list(self._pending.values())

    def intent(self, seq: int, owner: str) -> Intent:
        """Pending intent ``seq``, credited to ``owner`` (whose write it was)."""
        i = self._pending[seq]
        return Intent(i.seq, i.migration, i.ids, i.filters, i.at, owner)

    def _rewrite(self, keep: list[Intent]) -> None:
        """Replace the file by one holding only ``keep`` (atomic rename; synced)."""
        tmp = self.path.with_suffix(".jsonl.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        for i in keep:
            os.write(fd, _line(i.seq, i.migration, i.ids, i.filters, i.at))
        os.fsync(fd)
        os.replace(tmp, self.path)
        _sync_dir(self.directory)  # the rename itself survives a host crash
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._synced = self._appended
        PENDING.labels(self.owner).set(len(self._pending))

    def close(self) -> None:
        """At a clean stop: nothing pending -> the files go; else they stay for the next start."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._pending:
                self.path.unlink(missing_ok=True)
        if self._lock_fd is not None:
            if not self._pending:
                lock_path(self.directory, self.owner).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None


def _take_dead(directory: Path, own: str) -> list[tuple[str, int]]:
    """Owners (other than ``own``) whose lock is free, with the fd now holding it."""
    out = []
    for lock in directory.glob("*.lock"):
        owner = lock.name[:-len(".lock")]
        if owner == own:
            continue
        fd = _try_lock(lock)
        if fd is not None:
            out.append((owner, fd))
    return out


async def adopt(log_: IntentLog, repair: RepairLog) -> int:
    """Turn every pending intent of dead owners (and this proxy's own leftovers from its last
    life) into repair records; absorb their repair spools. Returns how many intents."""
    taken = 0
    for owner, fd in _take_dead(log_.directory, log_.owner):
        try:
            path = intents_path(log_.directory, owner)
            for intent in parse(path.read_bytes(), owner) if path.exists() else []:
                seq = await log_.begin(intent.migration, intent.ids, intent.filters)
                log_.leftover.append(log_.intent(seq, owner))
            spool = spool_path(log_.directory, owner)
            if spool.exists():
                repair.absorb(spool.read_bytes())
                spool.unlink()
            path.unlink(missing_ok=True)
            lock_path(log_.directory, owner).unlink(missing_ok=True)
        finally:
            os.close(fd)
    while log_.leftover:
        intent = log_.leftover[0]
        reason = (f"proxy {intent.owner} stopped during a mirrored write begun at "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(intent.at))}; the secondary may differ")
        await repair.record(intent.migration, list(intent.ids), list(intent.filters), reason)
        log_.clear(log_.leftover.pop(0).seq)
        taken += 1
    if taken:
        log.warning("turned %d pending write-ahead intent(s) into repair records", taken)
    return taken

"""Partitioning the point-id space and the lease/checkpoint records (pure).

Qdrant orders point ids with every integer before every UUID, and UUIDs by their canonical
(lowercase, hyphenated) text. A scroll from ``offset`` therefore walks ids in that order, and a
partition is a half-open range ``[lo, hi)`` of one id kind: integer ranges split ``[0, span)``
evenly (the last one open to ``2**64`` so ids added later are covered too), UUID ranges split
the 128-bit space evenly (random UUIDs spread uniformly).

With ``--order hot`` (issue 15) the plan also holds a partition of kind ``hot``: an explicit
list of the point ids the proxies' reads returned most often (``dataplane.hot_docs``), its
cursor a position in that list. :func:`pick` takes it before any id range, so a daemon copies
the hot documents first; the id ranges then skip them as already current (the copier's digest
check), so every point is still embedded once and resume works as for any partition. Ids that
become hot after the plan get further hot partitions appended to it while the backfill runs
(:mod:`switchyard.backfill.hot_recheck`); each is one more partition like this one.

Each partition has one record in the state store (kind ``lease``, key ``"<migration>/<index>"``)
that is both its lease and its checkpoint: the owner, when the lease expires, the cursor (the
next id to copy) and whether it is done. Every change is a compare-and-set on the record's
revision, so a daemon whose lease was taken over can never move someone else's checkpoint.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

INT = "int"
UUID = "uuid"
HOT = "hot"
INT_END = 2**64
UUID_END = 2**128
LEASE_KIND = "lease"
PLAN_KIND = "backfill_plan"

PointId = int | str


@dataclass(frozen=True, slots=True)
class Partition:
    """Ids ``lo <= id < hi`` of one kind (UUID bounds as 128-bit integers)."""

    index: int
    kind: str
    lo: int
    hi: int
    ids: tuple[PointId, ...] = ()  # kind hot: the ids, hottest first ([lo, hi) indexes them)

    def start(self) -> PointId:
        """The scroll offset that begins this partition."""
        return self.lo if self.kind in (INT, HOT) else str(uuid.UUID(int=self.lo))

    def contains(self, point_id: PointId) -> bool:
        return self.kind == id_kind(point_id) and self.lo <= id_int(point_id) < self.hi

    def past_end(self, point_id: PointId) -> bool:
        """Whether a scroll that reached ``point_id`` has left this partition (in id order)."""
        if self.kind == INT:
            return isinstance(point_id, str) or point_id >= self.hi
        return isinstance(point_id, str) and id_int(point_id) >= self.hi

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "kind": self.kind, "lo": str(self.lo), "hi": str(self.hi)}
        if self.ids:
            out["ids"] = list(self.ids)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Partition:
        return cls(int(d["index"]), str(d["kind"]), int(d["lo"]), int(d["hi"]),
                   tuple(norm(x) for x in d.get("ids") or ()))


def hot_partition(index: int, ids: Sequence[Any]) -> Partition:
    """The partition of the hot ids (canonical point-id strings or ints), in the given order."""
    found = tuple(norm(int(x) if isinstance(x, str) and x.isdigit() else x) for x in ids)
    return Partition(index, HOT, 0, len(found), found)


def norm(point_id: Any) -> PointId:
    """A point id as int or canonical UUID text (qdrant-client may hand out ``uuid.UUID``)."""
    if isinstance(point_id, int):
        return point_id
    return str(uuid.UUID(str(point_id)))


def id_kind(point_id: PointId) -> str:
    return UUID if isinstance(point_id, str) else INT


def id_int(point_id: PointId) -> int:
    return uuid.UUID(point_id).int if isinstance(point_id, str) else int(point_id)


def split(max_int_id: int | None, int_parts: int, uuid_parts: int) -> list[Partition]:
    """Partitions covering every id: ``int_parts`` over ``[0, max_int_id]`` (the last one open
    to the end of the integer space), then ``uuid_parts`` over the UUID space."""
    int_parts, uuid_parts = max(1, int_parts), max(1, uuid_parts)
    span = (max_int_id or 0) + 1
    int_parts = min(int_parts, span)
    out: list[Partition] = []
    bounds = [span * i // int_parts for i in range(int_parts)] + [INT_END]
    for i in range(int_parts):
        out.append(Partition(i, INT, bounds[i], bounds[i + 1]))
    ub = [UUID_END * i // uuid_parts for i in range(uuid_parts)] + [UUID_END]
    for j in range(uuid_parts):
        out.append(Partition(int_parts + j, UUID, ub[j], ub[j + 1]))
    return out


def truncate(p: Partition, ids: Sequence[PointId]) -> int:
    """How many of ``ids`` (in scroll order) lie in ``p``; the rest belong to later partitions."""
    for n, pid in enumerate(ids):
        if p.past_end(pid):
            return n
    return len(ids)


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease + checkpoint record of one partition."""

    migration: str
    partition: Partition
    owner: str = ""
    expires: float = 0.0
    cursor: PointId | None = None
    done: bool = False
    copied: int = 0
    rev: int = 0

    @property
    def key(self) -> str:
        return lease_key(self.migration, self.partition.index)

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "partition": self.partition.to_dict(),
                "owner": self.owner, "expires": self.expires, "cursor": self.cursor,
                "done": self.done, "copied": self.copied}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], rev: int = 0) -> Lease:
        cursor = d.get("cursor")
        return cls(str(d["migration"]), Partition.from_dict(d["partition"]), str(d.get("owner") or ""),
                   float(d.get("expires") or 0.0), cursor if isinstance(cursor, int | str) else None,
                   bool(d.get("done")), int(d.get("copied") or 0), rev)

    def resume_from(self) -> PointId:
        """Where copying (re)starts: the checkpoint, else the partition's start."""
        return self.cursor if self.cursor is not None else self.partition.start()


def lease_key(migration: str, index: int) -> str:
    return f"{migration}/{index:05d}"


def claimable(lease: Lease, owner: str, now: float) -> bool:
    """A partition may be claimed when not done and unowned, expired, or already ours."""
    return not lease.done and (not lease.owner or lease.owner == owner or lease.expires <= now)


def claim(lease: Lease, owner: str, now: float, ttl: float) -> Lease:
    return replace(lease, owner=owner, expires=now + ttl)


def fresh_for_write(lease: Lease, now: float, ttl: float) -> bool:
    """Whether a batch may be written on ``lease`` without renewing it first: at least a third
    of its TTL is left. A healthy daemon renews at two thirds, so only one whose renewals failed
    (cut off from the state store) gets here with less."""
    return lease.expires - now >= ttl / 3


def advance(lease: Lease, cursor: PointId | None, copied: int, now: float, ttl: float) -> Lease:
    """After a batch was written and validated: move the cursor; ``None`` means the partition is done."""
    return replace(lease, cursor=cursor, done=cursor is None, copied=lease.copied + copied,
                   expires=now + ttl)


def pick(leases: Sequence[Lease], owner: str, now: float) -> Lease | None:
    """The partition to work on next: our own unfinished one first, then the first claimable."""
    mine = [lease for lease in leases if lease.owner == owner and claimable(lease, owner, now)]
    if mine:
        return mine[0]
    free = [lease for lease in leases if claimable(lease, owner, now)]
    if not free:
        return None
    hot = [lease for lease in free if lease.partition.kind == HOT]
    if hot:  # hot documents first (module docstring)
        return hot[0]
    return free[zlib.crc32(owner.encode()) % len(free)]  # daemons start apart, fewer CAS losses

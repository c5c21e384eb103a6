"""Which physical collections serve a logical name in each phase (pure; the design's table).

The proxy asks :func:`route` with its current snapshot's migrations, the name a client used,
and whether the call reads or writes. ``None`` means no migration governs the name: the call
goes where the client sent it. A completed migration keeps routing (the logical name may be
the source collection itself, which cannot be repointed); a cancelled one never routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from switchyard.proxy.migration.record import (
    CANCELLED, COMPLETE, DUAL_WRITE, PLANNED, READS_SWITCHED, VERIFIED, WRITES_SWITCHED, Migration,
)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: ``primary`` answers the client; ``secondary`` gets the mirror (writes)
    or is fanned out to for merged / shadow reads; ``authority`` answers non-similarity reads."""

    migration_id: str
    primary: str
    secondary: str | None
    authority: str
    merge: bool
    shadow: bool
    reason: str


def governing(migrations: Iterable[Migration], name: str) -> Migration | None:
    """The newest non-cancelled migration whose logical name is ``name``."""
    found = [m for m in migrations if m.logical == name and m.phase != CANCELLED]
    return max(found, key=lambda m: (m.created_at, m.id)) if found else None


def route(migrations: Mapping[str, Migration], name: str, op: str) -> Route | None:
    m = governing(migrations.values(), name)
    return None if m is None else route_for(m, op)


def route_for(m: Migration, op: str) -> Route:
    """Where ``op`` (``"read"`` or ``"write"``) goes for ``m``: its kind decides (most kinds
    keep the shared :func:`table_route`)."""
    from switchyard.proxy.migration import kinds

    return kinds.of(m).route(m, op)


def table_route(m: Migration, op: str) -> Route:
    """The shared table: ``op`` is ``"read"`` or ``"write"``."""
    if op not in ("read", "write"):
        raise ValueError(f"op must be read or write, got {op!r}")
    src, tgt, p = m.source, m.target, m.phase
    if op == "write":
        if p in (PLANNED, CANCELLED):
            return Route(m.id, src, None, src, False, False, f"{p}: writes to source only")
        if p in (DUAL_WRITE, VERIFIED, READS_SWITCHED):
            return Route(m.id, src, tgt, src, False, False, f"{p}: primary source, mirrored to target")
        if p == WRITES_SWITCHED:
            return Route(m.id, tgt, src, tgt, False, False, f"{p}: primary target, mirrored to source")
        return Route(m.id, tgt, None, tgt, False, False, f"{p}: writes to target only")
    if p in (PLANNED, CANCELLED):
        return Route(m.id, src, None, src, False, False, f"{p}: reads from source")
    if p in (DUAL_WRITE, VERIFIED):
        if m.read_mode == "merged":
            return Route(m.id, tgt, src, src, True, False,
                         f"{p}, read mode merged: target and source merged, target wins")
        if m.read_mode == "shadow":
            return Route(m.id, src, tgt, src, False, True,
                         f"{p}, read mode shadow: source served, merged compared in background")
        return Route(m.id, src, None, src, False, False, f"{p}, read mode source: reads from source")
    assert p in (READS_SWITCHED, WRITES_SWITCHED, COMPLETE)
    return Route(m.id, tgt, None, tgt, False, False, f"{p}: reads from target")

"""Which path serves a point call, and on which collection: the executor's decision, pure.

Both front ends' calls reach :class:`~switchyard.proxy.intercept.executor.Executor`, which asks
:func:`dispatch` once per call and then does the I/O of the path it names, in its protocol.
The decision depends only on the state snapshot and the call's collection, kind (``read`` /
``write`` / other) and whether it is a similarity read, so it is tested as a table
(``tests/test_dispatch.py``). The paths, in the order they are tried:

1. ``SPLIT_READ``: a split migration has switched reads of the name to its targets;
2. ``MERGED``: similarity reads merge, shadow, or are served by the source in read mode
   ``source`` (the reader embeds either model's inference objects with A there);
3. ``IN_PLACE_READ``: an in-place migration ranks similarity reads by one vector of the
   collection;
4. ``INFERENCE``: a similarity read on a bound collection: its inference objects are served;
5. ``WRITE``: stamped when bound, given B's vector by an in-place migration, mirrored while a
   migration has a secondary, or refused when a cleaned-up split closed the name (``closed``);
6. ``FORWARD``: anything else, on the physical collection.

Before any path, the executor checks the caller's credential when ``checked`` (a migration
routes the name or a binding governs it; otherwise the call goes on as is and the upstream
judges it), then the state's freshness, then ``closed``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from switchyard.proxy.dataplane import in_place_reads, split_exec, split_mirror
from switchyard.proxy.dataplane.in_place import InPlace
from switchyard.proxy.dataplane.mirror import MirrorTarget
from switchyard.proxy.migration.record import DUAL_WRITE, VERIFIED, Migration
from switchyard.proxy.migration.routing import Route, route
from switchyard.proxy.state.snapshot import StateSnapshot


class Serve(enum.Enum):
    SPLIT_READ = "split_read"
    MERGED = "merged"
    IN_PLACE_READ = "in_place_read"
    INFERENCE = "inference"
    WRITE = "write"
    FORWARD = "forward"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How one point call is served (module docstring); each optional field belongs to one path."""

    serve: Serve
    #: where the call goes once routed (the name itself when no migration governs it)
    physical: str
    #: ``x-switchyard-route``'s text; ``None``: no migration governs the name
    why: str | None
    #: the name whose binding governs stamping and inference
    bound_as: str
    #: the caller's credential is checked before any work
    checked: bool
    #: a write refused before the primary: the split migration governing the name was cleaned up
    closed: str | None = None
    split: Any = None  # SPLIT_READ: the split migration
    merging: tuple[Route, Migration] | None = None  # MERGED
    in_place: Migration | None = None  # IN_PLACE_READ
    mirror: MirrorTarget | None = None  # WRITE: the secondary
    in_place_write: tuple[Migration, InPlace] | None = None  # WRITE: B's vector added in place


def dispatch(snap: StateSnapshot, collection: str, kind: str, similarity: bool, reader: bool) -> CallPlan:
    """The path for a call of ``kind`` on ``collection`` (pure). ``similarity``: a similarity
    read; ``reader``: the proxy has a merged reader (without one, reads are only routed)."""
    physical, why = physical_collection(snap, collection, kind)
    bound_as = snap.binding_name(collection, physical)
    base = CallPlan(Serve.FORWARD, physical, why, bound_as, why is not None or snap.is_bound(bound_as))
    if kind == "write":
        return replace(base, serve=Serve.WRITE, closed=split_mirror.closed_reason(snap, collection),
                       mirror=mirror_target(snap, collection),
                       in_place_write=in_place_reads.write_migration(snap, collection))
    if kind == "read" and reader and (split := split_exec.read_migration(snap, collection)) is not None:
        return replace(base, serve=Serve.SPLIT_READ, split=split)
    if similarity and reader:
        if (merging := merged_route(snap, collection)) is not None:
            return replace(base, serve=Serve.MERGED, merging=merging)
        if (switched := in_place_reads.read_migration(snap, collection)) is not None:
            return replace(base, serve=Serve.IN_PLACE_READ, in_place=switched)
        if snap.is_bound(bound_as):
            return replace(base, serve=Serve.INFERENCE)
    return base


def physical_collection(snap: StateSnapshot, name: str, kind: str) -> tuple[str, str | None]:
    """Where a point call on ``name`` goes, and why (``None``: no migration governs it). Pure."""
    found = route(snap.migrations, name, kind) if snap.migrations else None
    if found is None:
        return name, None
    target = found.primary if kind == "write" else found.authority
    return target, f"{name} -> {target} (migration {found.migration_id}: {found.reason})"


def merged_route(snap: StateSnapshot, name: str) -> tuple[Route, Migration] | None:
    """The read route and migration when similarity reads of ``name`` merge, shadow, or are
    served by the source in read mode ``source`` (the reader embeds either model's inference
    objects with A there, as its merged read would; pure)."""
    found = route(snap.migrations, name, "read") if snap.migrations else None
    if found is None:
        return None
    m = snap.migrations.get(found.migration_id)
    if m is None:
        return None
    source_mode = (m.phase in (DUAL_WRITE, VERIFIED) and m.read_mode == "source" and found.primary == m.source
                   and not in_place_reads.is_in_place(m))
    return (found, m) if (found.merge or found.shadow or source_mode) else None


def mirror_target(snap: StateSnapshot, name: str) -> MirrorTarget | None:
    """The secondary a write on ``name`` is mirrored to, with its model (pure; ``None``: none)."""
    found = route(snap.migrations, name, "write") if snap.migrations else None
    if found is None or found.secondary is None:
        return None
    m = snap.migrations.get(found.migration_id)
    if m is None:
        return None
    to_target = found.secondary == m.target
    spec = snap.models.get(m.model_b if to_target else m.model_a)
    if spec is None:
        return None
    return MirrorTarget(m, found.primary, found.secondary, spec, to_target)

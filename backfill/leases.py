"""A daemon's hold on one partition's lease record: every write is a compare-and-set.

Fencing: the lease record (:mod:`switchyard.backfill.partitions`) carries a revision, and every change a
daemon makes -- claim, renewal, checkpoint -- is a compare-and-set on the revision it last
saw. A daemon whose lease another daemon took over (after it expired) gets :class:`LeaseLost`
at its next write and stops; it can never move someone else's cursor. On top of that,
:meth:`LeaseHandle.hold` runs before every batch is written: a lease with less than a third of
its TTL left (renewals failed -- the daemon was cut off from the state store) is renewed by
compare-and-set first, or the batch is not written at all. A daemon that was cut off
therefore never writes on a lease that may have lapsed; it re-claims the partition (again by
compare-and-set, which fails if someone else holds it now) and resumes from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib

from qdrant_client import AsyncQdrantClient

from switchyard.backfill import partitions as parts
from switchyard.backfill.partitions import Lease, Partition
from switchyard.proxy.dataplane import hot_docs
from switchyard.proxy.dataplane.hot_docs import HeavyHitters
from switchyard.proxy.errors import Conflict
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import StateStore


class LeaseLost(Exception):
    """Our lease on a partition was taken over (it expired): stop working on it."""


class LeaseHandle:
    """Our current view of one lease record; every write is a CAS on its revision."""

    def __init__(self, store: StateStore, lease: Lease) -> None:
        self.store, self.lease, self.lock = store, lease, asyncio.Lock()

    async def put(self, new: Lease) -> None:
        async with self.lock:
            await self._put(new)

    async def _put(self, new: Lease) -> None:
        try:
            env = await self.store.put(parts.LEASE_KIND, new.key, new.to_dict(), self.lease.rev)
        except Conflict as exc:
            raise LeaseLost(f"lease {new.key} was taken over") from exc
        self.lease = Lease.from_dict(env.data, env.rev)

    async def renew(self, owner: str, now: float, ttl: float) -> None:
        """Extend the lease once two thirds of its TTL are left (called every refresh)."""
        async with self.lock:
            if self.lease.expires - now < ttl * 2 / 3:
                await self._put(parts.claim(self.lease, owner, now, ttl))

    async def hold(self, owner: str, now: float, ttl: float) -> None:
        """Before a write: make sure the lease is ours for a while yet (see the module
        docstring). Raises :class:`LeaseLost` if it was taken over, or the store's error if
        the store cannot be reached -- in both cases the caller must not write."""
        async with self.lock:
            if not parts.fresh_for_write(self.lease, now, ttl):
                await self._put(parts.claim(self.lease, owner, now, ttl))


async def of_migration(store: StateStore, migration_id: str) -> list[Lease]:
    """Every lease record of a migration, in partition order."""
    return [Lease.from_dict(e.data, e.rev) for e in await store.list(parts.LEASE_KIND)
            if e.key.startswith(migration_id + "/")]


async def ensure_plan(store: StateStore, client: AsyncQdrantClient, m: Migration,
                      int_parts: int, uuid_parts: int) -> None:
    """The migration's partition plan and one lease record per partition, created once by
    compare-and-set (a daemon that loses the race uses the winner's plan). The plan gets a hot
    partition when :func:`visiting_order` says so; its reason is kept in the plan record. Later
    hot partitions are appended by :func:`switchyard.backfill.hot_recheck.recheck`; a lease
    record missing for any partition of the plan (a daemon killed after appending one) is
    created here, when a session starts."""
    if await store.get(parts.PLAN_KIND, m.id) is None:
        plan = parts.split(await max_int_id(client, m.source), int_parts, uuid_parts)
        order = await visiting_order(store, m)
        if order.hot:
            plan.append(parts.hot_partition(len(plan), order.hot))
        with contextlib.suppress(Conflict):
            await store.create(parts.PLAN_KIND, m.id, {"partitions": [p.to_dict() for p in plan],
                                                       "order": order.order, "order_reason": order.reason})
    env = await store.require(parts.PLAN_KIND, m.id)
    for d in env.data["partitions"]:
        lease = Lease(m.id, Partition.from_dict(d))
        if await store.get(parts.LEASE_KIND, lease.key) is None:
            with contextlib.suppress(Conflict):
                await store.create(parts.LEASE_KIND, lease.key, lease.to_dict())


async def read_counts(store: StateStore, migration_id: str) -> HeavyHitters:
    """Every proxy's flushed heavy-hitters counts for ``migration_id``, merged."""
    total = HeavyHitters()
    for env in await store.list(hot_docs.KIND):
        if env.key.startswith(migration_id + "/"):
            total = total.merged(HeavyHitters.from_dict(env.data))
    return total


async def visiting_order(store: StateStore, m: Migration) -> hot_docs.Order:
    """The plan's order: the migration's ``order`` option (``migrate plan --order hot|id``),
    default hot when counts exist. Kinds with their own copier (in place, split) visit in id
    order: only the plain copier reads a hot partition."""
    requested = (getattr(m, "options", None) or {}).get("order")
    if getattr(m, "kind", "reembed") not in ("reembed", "copy"):
        return hot_docs.Order("id", (), f"id order: kind {getattr(m, 'kind', '')} copies in id order")
    try:
        return hot_docs.backfill_order(requested, (await read_counts(store, m.id)).counts)
    except ValueError as exc:
        return hot_docs.Order("id", (), f"id order: {exc}")


async def max_int_id(client: AsyncQdrantClient, source: str) -> int | None:
    """The largest integer id in ``source``, by bisection over scroll offsets (~64 calls)."""
    async def int_at_or_after(x: int) -> int | None:
        recs, _ = await client.scroll(source, offset=x, limit=1, with_payload=False)
        return recs[0].id if recs and isinstance(recs[0].id, int) else None

    first = await int_at_or_after(0)
    if first is None:
        return None
    lo, hi = first, parts.INT_END  # an int exists at >= lo; none at >= hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = await int_at_or_after(mid)
        if found is None:
            hi = mid
        else:
            lo = found if found >= mid else mid
    return lo

"""What a migration keeps once it is over: its scratch records go, its evidence stays.

Some records exist only to improve answers while a migration runs, and two of them hold copies
of a user's data:

* ``samples`` (the backfill's reservoir): document texts with both models' vectors;
* ``shadow_queries`` (the shadow-read sample): the texts clients searched for;
* ``adapter``: the query adapters and score calibration fitted on the samples (two ``d x d``
  matrices).

Once a migration is ``complete`` or ``cancelled`` nothing reads them (no merged reads, no
mirrored writes, no backfill), so :func:`purge` deletes them: after ``complete`` and ``cancel``
once the proxies acknowledged, and again at ``cleanup`` (idempotent, so a purge that failed at
the transition is retried there). Kept on purpose: the migration record and its history, verify
runs, the backfill's plan, leases and progress, the repair log, the eval verdict (metrics, no
texts: the evidence behind the cutover), and the hot-document counts (point ids and counts
only; a later plan of the same source starts hot from them, ``docs/migrations.md``).

A purge never fails the transition that triggered it: the transition has applied, so a store
error is logged with the records left and returned for the caller to show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.retention")

#: Scratch record kinds and how they are keyed: by the migration id itself (``False``) or by
#: ``"<migration>/<owner>"`` (``True``: one record per daemon or proxy). The kind names are
#: those of ``backfill.samples``, ``dataplane.query_sample`` and ``dataplane.adapter_store``
#: (spelled here so the migration service does not import the backfill).
SCRATCH: tuple[tuple[str, bool], ...] = (("samples", True), ("shadow_queries", True), ("adapter", False))


@dataclass(frozen=True, slots=True)
class Purged:
    """What :func:`purge` removed, and why it left anything (``error`` empty when nothing)."""

    removed: int
    error: str = ""


def scratch_keys(migration_id: str, kind: str, per_owner: bool, keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` (all of ``kind``) that belong to ``migration_id`` (pure).

    A per-owner key belongs when it starts with ``"<migration>/"``: migration ids never hold
    ``/``, so ``m-1`` does not claim ``m-10/p``.
    """
    if per_owner:
        return [k for k in keys if k.startswith(migration_id + "/")]
    return [k for k in keys if k == migration_id]


async def purge(store: StateStore, migration_id: str) -> Purged:
    """Delete ``migration_id``'s scratch records (module docstring); never raises."""
    removed = 0
    try:
        for kind, per_owner in SCRATCH:
            keys = [e.key for e in await store.list(kind)]
            for key in scratch_keys(migration_id, kind, per_owner, keys):
                await store.delete(kind, key)
                removed += 1
    except Exception as exc:  # noqa: BLE001 - the transition applied; cleanup retries
        why = f"scratch records of {migration_id} not all removed ({removed} were): {exc}"
        log.warning("%s; `migrate cleanup` tries again", why)
        return Purged(removed, why)
    if removed:
        log.info("migration %s: removed %d scratch record(s) (samples, query sample, adapter)",
                 migration_id, removed)
    return Purged(removed)

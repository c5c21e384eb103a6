"""The I/O half of the plan's doctor and backfill-order checks (the decisions are in ``planner``).

* :func:`doctor`: ``switchyard doctor`` on the source, bounded (at most ``limit`` points from
  the start of the id order, so it covers the plan's sample) and throttled (``rate`` points per
  second), so a plan of a large production collection costs seconds, not a full scan.
* :func:`source_counts`: the hot-document counts earlier migrations of the same source
  collection left (their point ids are this source's): what ``--order hot``, and the default,
  can start from; the plan copies them to the new migration (``<id>/planned``).
* :func:`order_view`: the visiting order for ``status``: as the backfill planned it, else
  what it would decide now.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.proxy.dataplane import hot_docs
from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.migration.planner import PlanFacts, doctor_findings, plan_order
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import StateStore


async def doctor(client: AsyncQdrantClient, store: StateStore, f: PlanFacts, limit: int,
                 rate: float | None) -> dict[str, Any] | None:
    """The doctor's report on the source (``Report.to_dict()``), ``None`` when there is nothing
    to scan (no source, no binding, ``limit`` 0); a scan that fails is reported, not fatal."""
    from switchyard.proxy.inspection.scan import inspect

    if not f.source.exists or f.binding is None or limit <= 0:
        return None
    try:
        # by the name clients use: the doctor finds the binding through it (an alias's binding
        # is the alias's), and a scroll of an alias reads the source
        report = await inspect(client, store, f.request.logical, text_field=f.request.text_field,
                               limit=limit, rate=rate or None, vector=f.binding.vector)
    except SwitchyardError as exc:
        return {"error": str(exc), "findings": []}
    return report.to_dict()


def doctor_view(f: PlanFacts) -> dict[str, Any] | None:
    """The plan report's doctor section (pure): what was scanned and the findings for this plan."""
    if f.doctor is None:
        return None
    return {"points": f.doctor.get("points", 0), "complete": bool(f.doctor.get("complete")),
            "error": f.doctor.get("error"), "findings": doctor_findings(f)}


async def _counts(store: StateStore, migration_ids: set[str]) -> hot_docs.HeavyHitters:
    total = hot_docs.HeavyHitters()
    if not migration_ids:
        return total
    for env in await store.list(hot_docs.KIND):
        if env.key.split("/", 1)[0] in migration_ids:
            total = total.merged(hot_docs.HeavyHitters.from_dict(env.data))
    return total


async def source_counts(store: StateStore, source: str) -> hot_docs.HeavyHitters:
    """Every earlier migration's counts of ``source``, merged (module docstring)."""
    ids = {Migration.from_envelope(e).id for e in await store.list(Migration.KIND)
           if e.data.get("source") == source}
    return await _counts(store, ids)


async def order_view(store: StateStore, m: Migration) -> dict[str, Any]:
    """``requested`` (the plan's ``order``, ``None``: default), the ``order`` the backfill takes,
    whether its partitions are ``planned`` already (then the order is fixed), and the reason."""
    from switchyard.backfill.partitions import PLAN_KIND

    requested = m.options.get("order")
    env = await store.get(PLAN_KIND, m.id)
    if env is not None and env.data.get("order"):
        return {"requested": requested, "order": env.data["order"], "planned": True,
                "reason": str(env.data.get("order_reason") or "")}
    counts = await _counts(store, {m.id})
    got = plan_order(requested if isinstance(requested, str) else None, m.kind, counts.counts)
    return {"requested": requested, "order": got.order, "planned": False, "reason": got.reason}

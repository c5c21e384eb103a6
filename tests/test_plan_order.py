"""``migrate plan --order hot|id`` (issue 15): the decision as a table, the option's way from the
CLI and the admin API into the record, and the backfill daemon (a real subprocess) visiting in
the order the plan asked for, from hot-document counts an earlier migration of the source left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from backfill_helpers import B, new_store, seed_source
from switchyard.backfill import partitions as parts
from switchyard.proxy.cli import build_parser
from switchyard.proxy.dataplane.hot_docs import KIND, HeavyHitters
from switchyard.proxy.migration.command import render
from switchyard.proxy.migration.planner import PlanRequest, plan_order, validate
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.state.store import StateStore

ROOT = Path(__file__).resolve().parents[1]
N, BATCH = 300, 50
HOT = ["250", "7", "123"]  # hottest first

ORDER = [  # (requested, kind, counts) -> order, words of the reason
    (None, "reembed", {}, "id", "no hot-document counts yet; id order until there are"),
    ("hot", "reembed", {}, "id", "--order hot asked, but no hot-document counts yet"),
    ("hot", "reembed", {"5": 0}, "id", "no hot-document counts yet"),
    ("id", "reembed", {"5": 3}, "id", "id order (requested)"),
    (None, "reembed", {"5": 3, "2": 9}, "hot", "hot documents first: 2 ids"),
    ("hot", "copy", {"5": 3}, "hot", "hot documents first: 1 ids holding 100%"),
    ("hot", "named-vector", {"5": 3}, "id", "kind named-vector copies in id order"),
    ("hot", "split", {"5": 3}, "id", "kind split copies in id order"),
    ("random", "reembed", {"5": 3}, "id", "unknown order 'random'"),
]


@pytest.mark.parametrize(("requested", "kind", "counts", "order", "reason"), ORDER)
def test_plan_order_table(requested: str | None, kind: str, counts: dict[str, int], order: str,
                          reason: str) -> None:
    got = plan_order(requested, kind, counts)
    assert got.order == order and reason in got.reason, got
    assert bool(got.hot) == (order == "hot")


def test_shared_options_leave_the_kind_options_and_bad_values_are_refused() -> None:
    req = PlanRequest.from_dict({"logical": "c", "to_model": "b", "options": {"order": "id", "x": 1}})
    assert req.order == "id" and dict(req.options) == {"x": 1}  # gRPC callers send options only
    assert req.shared_options() == {"order": "id"}
    both = PlanRequest("c", "b", order="hot", require_eval=True, eval_max_age=60)
    assert both.shared_options() == {"order": "hot", "require_eval": True, "eval_max_age": 60.0}
    from test_migration_phases import facts  # a valid plan's facts

    assert validate(facts(request=PlanRequest("docs", "b", order="id"))) == []
    assert validate(facts(request=PlanRequest("docs", "b", order="hottest"))) == [
        "order must be one of hot, id (omit it for hot when counts exist), got 'hottest'"]
    assert validate(facts(request=PlanRequest("docs", "b", eval_max_age=0))) == [
        "eval_max_age must be a number of seconds > 0, got 0"]


def test_cli_sends_order_and_dry_run_shows_it() -> None:
    args = build_parser().parse_args(["migrate", "plan", "docs", "--to-model", "b", "--order", "id"])
    assert args.order == "id"
    report = {"ok": True, "dry_run": True, "target": "t", "source": "s", "reasons": [],
              "estimate": {"points": 1, "sampled": 1, "missing_share": 0.0, "text_bytes": 1, "tokens": 1,
                           "eta_seconds": None, "rate": None, "cost": None},
              "order": {"requested": "id", "order": "id", "reason": "id order (requested)"}, "doctor": None}
    assert "backfill order: id (asked: id): id order (requested)" in render(report)


def _daemon(upstream: Any, store: StateStore, mid: str, keys: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "BACKFILL_KEYS_FILE": str(keys)}
    return subprocess.run(
        [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url",
         upstream.rest_url, "--state-collection", store.collection, "--once", "--owner", "order",
         "--batch-size", str(BATCH), "--concurrency", "1", "--text-fetcher", "hot_helpers:keyed_texts"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)


@pytest.mark.parametrize(("order", "visits"), [(None, "hot"), ("hot", "hot"), ("id", "id")])
async def test_the_backfill_visits_in_the_planned_order(upstream: Any, prefix: str, tmp_path: Path,
                                                        order: str | None, visits: str) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    svc = MigrationService(store, client, ServiceConfig(ack_timeout=10.0, max_active=1000))
    try:
        logical, src = await seed_source(client, store, prefix, range(N))
        # an earlier, cancelled migration of the same source left the proxies' read counts
        old = (await svc.plan(PlanRequest(logical, B.id, target=f"{prefix}old")))["migration"]["id"]
        await svc.transition(old, "cancel")
        sketch = HeavyHitters()
        for rank, key in enumerate(HOT):
            sketch.offer([key], weight=10 - rank)
        await store.upsert(KIND, f"{old}/proxy-1", sketch.to_dict())

        dry = await svc.plan(PlanRequest(logical, B.id, target=f"{prefix}new", order=order, dry_run=True))
        assert dry["order"]["order"] == visits, dry["order"]
        report = await svc.plan(PlanRequest(logical, B.id, target=f"{prefix}new", order=order))
        mid = report["migration"]["id"]
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        assert m.options.get("order") == order
        await svc.transition(mid, "start")
        before = (await svc.status(mid))["order"]
        assert (before["order"], before["planned"]) == (visits, False), before
        keys = tmp_path / "keys"
        done = _daemon(upstream, store, mid, keys)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        plan = await store.require(parts.PLAN_KIND, mid)
        assert plan.data["order"] == visits, plan.data.get("order_reason")
        hot_parts = [p for p in plan.data["partitions"] if p.get("kind") == parts.HOT]
        batches = [line.split() for line in keys.read_text().splitlines()]
        prepared = [k for batch in batches for k in batch]
        assert sorted(prepared, key=int) == [str(i) for i in range(N)]  # each point once
        if visits == "hot":  # the hot partition first, hottest first
            assert len(hot_parts) == 1 and batches[0] == HOT
        else:  # an id range first, ascending
            first = [int(k) for k in batches[0]]
            assert hot_parts == [] and len(first) > len(HOT)
            assert first == list(range(first[0], first[0] + len(first)))
        status = await svc.status(mid)
        assert status["order"]["planned"] and status["order"]["order"] == visits
        assert (await client.count(m.target, exact=True)).count == N
    finally:
        await svc.close()
        await client.delete_collection(store.collection)
        await client.close()

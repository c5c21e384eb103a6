"""Late hot partitions (issue 15): the decision which ids a re-check of the counts adds, as a
table; the plan record it writes; and a backfill started before any counts existed that picks
up ids made hot meanwhile before the rest of their id range (a real daemon, in process)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

import hot_helpers
from backfill_helpers import new_store, setup_migration
from switchyard.backfill import partitions as parts
from switchyard.backfill.daemon import Daemon, DaemonConfig
from switchyard.backfill import hot_recheck
from switchyard.backfill.hot_recheck import (
    Caps, Rechecker, appended, covered, late_hot_ids, late_reason, point_id, rechecks,
)
from switchyard.backfill.leases import ensure_plan, of_migration
from switchyard.backfill.partitions import Lease, Partition
from switchyard.backfill.settings import clamp_hot_recheck
from switchyard.proxy.dataplane.hot_counts import HotCounts
from switchyard.proxy.dataplane.hot_docs import KIND
from switchyard.proxy.errors import ConfigError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService

U1, U2 = str(uuid.UUID(int=5 << 120)), str(uuid.UUID(int=200 << 120))
INT0 = Partition(0, parts.INT, 0, 100)  # ids [0, 100)
INT1 = Partition(1, parts.INT, 100, parts.INT_END)
UUID0 = Partition(2, parts.UUID, 0, parts.UUID_END)
PLANNED = parts.hot_partition(3, ["7", "8"])


def rng(p: Partition, *, done: bool = False, cursor: Any = None) -> Lease:
    return Lease("m", p, done=done, cursor=cursor)


FRESH = [rng(INT0), rng(INT1), rng(UUID0)]
COUNTS = {"150": 9, "7": 8, "20": 5, U1: 5, "3": 1}

LATE = [  # (counts, hot partitions, range leases, caps) -> ids added, why not
    ({}, [], FRESH, Caps(), (), ""),
    ({"5": 0}, [], FRESH, Caps(), (), ""),
    (COUNTS, [], FRESH, Caps(), (150, 7, U1, 20, 3), ""),  # hottest first, ties by key
    (COUNTS, [PLANNED], FRESH, Caps(), (150, U1, 20, 3), ""),  # in a hot partition already
    (COUNTS, [PLANNED], [rng(INT0, done=True), rng(INT1), rng(UUID0)], Caps(), (150, U1), ""),
    (COUNTS, [], [rng(INT0, cursor=20), rng(INT1), rng(UUID0)], Caps(), (150, U1, 20), ""),  # below the checkpoint
    (COUNTS, [], [rng(INT0), rng(INT1, cursor=151), rng(UUID0)], Caps(), (7, U1, 20, 3), ""),
    (COUNTS, [], [rng(INT0), rng(INT1), rng(UUID0, cursor=U2)], Caps(), (150, 7, 20, 3), ""),
    (COUNTS, [], [rng(INT0), rng(INT1), rng(UUID0, done=True)], Caps(), (150, 7, 20, 3), ""),
    (COUNTS, [], FRESH, Caps(per_recheck=2), (150, 7), ""),
    (COUNTS, [], FRESH, Caps(considered=3), (150, 7, U1), ""),  # only the hot set the plan would take
    (COUNTS, [PLANNED], FRESH, Caps(considered=3), (150, U1), ""),
    (COUNTS, [PLANNED], FRESH, Caps(partitions=1), (), "hot partitions at their cap (1)"),
    ({"doc-9": 9, "12": 2}, [], FRESH, Caps(), (12,), ""),  # not a point id: never a hot id
    (COUNTS, [], [rng(INT0, done=True), rng(INT1, done=True), rng(UUID0, done=True)], Caps(), (), ""),
]


@pytest.mark.parametrize(("counts", "hot", "ranges", "caps", "ids", "why_not"), LATE)
def test_late_hot_ids_table(counts: dict[str, int], hot: list[Partition], ranges: list[Lease],
                            caps: Caps, ids: tuple[Any, ...], why_not: str) -> None:
    got = late_hot_ids(counts, hot, ranges, caps)
    assert got.ids == ids and got.why_not == why_not, got


@pytest.mark.parametrize(("requested", "kind", "expect"), [
    (None, "reembed", True), ("hot", "reembed", True), ("hot", "copy", True), ("id", "reembed", False),
    ("hot", "named-vector", False), (None, "split", False), ("random", "reembed", False),
])
def test_rechecks_table(requested: Any, kind: str, expect: bool) -> None:
    assert rechecks(requested, kind) is expect


def test_point_ids_coverage_and_the_plan_record() -> None:
    assert (point_id("42"), point_id(U1.upper()), point_id("k:42")) == (42, U1, None)
    assert covered(99, [rng(INT0, cursor=100)]) and not covered(100, [rng(INT0, cursor=100)])
    assert not covered(5, [Lease("m", PLANNED, done=True)])  # a hot partition is no id range
    assert late_reason("", [{"ids": 3}]) == "hot: 3 more ids from counts flushed after the plan"
    plan = {"partitions": [p.to_dict() for p in (INT0, INT1)], "order": "id",
            "order_reason": "id order: no read counts yet"}
    once = appended(plan, parts.hot_partition(2, [150, 7]), 1.0)
    assert once["order"] == "hot" and once["partitions"][-1]["ids"] == [150, 7]
    assert once["order_reason"] == "id order: no read counts yet; hot: 2 more ids from counts flushed after the plan"
    twice = appended(once, parts.hot_partition(3, [U1]), 2.0)
    assert twice["planned_reason"] == "id order: no read counts yet" and len(twice["partitions"]) == 4
    assert twice["order_reason"].endswith("hot: 3 more ids from counts flushed after the plan (2 late hot partitions)")


def test_recheck_interval_is_clamped_and_caps_validated() -> None:
    assert [clamp_hot_recheck(x) for x in (0, -1, 0.2, 15, 1e9)] == [0.0, 0.0, 1.0, 15.0, 3600.0]
    with pytest.raises(ConfigError, match="hot re-check caps"):
        DaemonConfig(hot_partitions=0)


async def test_recheck_appends_once_under_a_race_and_mends_a_missing_lease(
        upstream: Any, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    try:
        mid = await setup_migration(client, store, prefix, list(range(100)))
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        await ensure_plan(store, client, m, 2, 1)
        assert await hot_recheck.recheck(store, m) == ""  # no counts: nothing to add
        counts = HotCounts(store, "proxy-1", every=3600.0)
        counts.record(mid, ["5", "60", "5", "not-an-id"])
        await counts.flush()
        got = await asyncio.gather(*(hot_recheck.recheck(store, m) for _ in range(3)))
        assert sorted(got, key=bool) == ["", "", "id order: no read counts yet; hot: 2 more ids from "
                                                 "counts flushed after the plan"]  # losers re-read
        plan = (await store.require(parts.PLAN_KIND, mid)).data
        hot = [Partition.from_dict(d) for d in plan["partitions"] if d["kind"] == parts.HOT]
        assert [p.ids for p in hot] == [(5, 60)] and plan["order"] == "hot"
        assert [x.partition for x in await of_migration(store, mid) if x.partition.kind == parts.HOT] == hot
        # a daemon killed between appending a partition and creating its lease record
        env = await store.require(parts.PLAN_KIND, mid)
        orphan = parts.hot_partition(len(plan["partitions"]), [70])
        await store.put(parts.PLAN_KIND, mid, appended(env.data, orphan, 2.0), env.rev)
        assert await hot_recheck.recheck(store, m) == ""  # nothing new hot, but the record is mended
        assert orphan in [x.partition for x in await of_migration(store, mid)]
        # a malformed counts record skips the re-check; the daemon goes on
        await store.upsert(KIND, f"{mid}/proxy-2", {"counts": [["7"]]})
        clock = iter([0.0, 0.5, 5.0]).__next__
        checks = Rechecker(DaemonConfig(hot_recheck=1.0), clock)
        assert await checks.maybe(store, m, "me") == "" and checks.last == 0.0
        assert await checks.maybe(store, m, "me") == "" and checks.last == 0.0  # not due yet
        assert "hot-document re-check skipped" in caplog.text
        id_order = dataclasses.replace(m, options={"order": "id"})
        assert await hot_recheck.recheck(store, id_order) == ""  # --order id never re-checks
    finally:
        await client.delete_collection(store.collection)
        await client.close()


N, BATCH, LATE_HOT = 800, 20, 40


async def test_backfill_started_without_counts_visits_late_hot_ids_before_their_range(
        upstream: Any, prefix: str) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    svc = MigrationService(store, client)
    gate = hot_helpers.GATE = hot_helpers.Gate()
    config = DaemonConfig(batch_size=BATCH, concurrency=1, lease_ttl=5.0, refresh=0.1, int_partitions=4,
                          uuid_partitions=1, idle_poll=0.1, text_fetcher="hot_helpers:gated_texts",
                          hot_recheck=1.0)
    try:
        mid = await setup_migration(client, store, prefix, list(range(N)))  # no counts anywhere
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(Daemon(store, mid, config, client=client, owner="late").run(once=True))
            await asyncio.wait_for(gate.first.wait(), 120)  # the first batch of some id range
            plan = (await store.require(parts.PLAN_KIND, mid)).data
            assert plan["order"] == "id" and "no read counts yet" in plan["order_reason"], plan
            ranges = [Partition.from_dict(d) for d in plan["partitions"]]
            busy = next(p for p in ranges if p.contains(int(gate.calls[0][0])))
            # traffic arrives: a proxy counts reads of ids in ranges not started yet, and flushes
            hot = random.Random(5).sample([i for i in range(N) if not busy.contains(i)], LATE_HOT)
            counts = HotCounts(store, "proxy-1", every=3600.0)
            for rank, pid in enumerate(hot):
                for _ in range(LATE_HOT - rank):  # hottest first
                    counts.record(mid, [str(pid)])
            await counts.flush()
            for _ in range(600):  # bounded: the daemon re-checks every second
                plan = (await store.require(parts.PLAN_KIND, mid)).data
                if plan["order"] == "hot":
                    break
                await asyncio.sleep(0.1)
            gate.release.set()
            await run
        late = [Partition.from_dict(d) for d in plan["partitions"] if d["kind"] == parts.HOT]
        assert [p.ids for p in late] == [tuple(hot)], plan
        assert plan["order_reason"] == ("id order: no read counts yet; "
                                        f"hot: {LATE_HOT} more ids from counts flushed after the plan")
        prepared = [int(k) for call in gate.calls for k in call]
        assert sorted(prepared) == list(range(N))  # every point embedded exactly once
        at = {pid: n for n, pid in enumerate(prepared)}
        first_of = {p.index: min(at[i] for i in range(N) if p.contains(i) and i not in hot)
                    for p in ranges if p.kind == parts.INT and p is not busy}
        for pid in hot:  # each late hot id before the rest of its id range
            home = next(p for p in ranges if p.contains(pid))
            assert at[pid] < first_of[home.index], (pid, home)
        order = (await svc.status(mid))["order"]
        assert order["order"] == "hot" and "more ids from counts flushed after the plan" in order["reason"]
    finally:
        hot_helpers.GATE = None
        await svc.close()
        await client.delete_collection(store.collection)
        await client.close()

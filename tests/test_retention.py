"""Scratch records of a migration go at complete / cancel / cleanup; its evidence stays.

A table for the pure key choice, then the migration service against a real server: records of
every scratch kind (and of the kinds kept) are written for the migration and for a neighbour
whose id shares its prefix, the migration is completed or cancelled, and only the migration's
scratch records are gone."""

from __future__ import annotations

import pytest

from switchyard.backfill import samples
from switchyard.proxy.dataplane import adapter_store, hot_docs, query_sample
from switchyard.proxy.migration import eval_gate, retention
from test_migration_service import World, planned, world  # noqa: F401 - the fixture

KEY_TABLE = [
    # (migration, per_owner, keys, expected)
    ("m-1", True, ["m-1/p1", "m-1/p2", "m-10/p1", "m-2/p1"], ["m-1/p1", "m-1/p2"]),
    ("m-1", True, ["m-1", "xm-1/p"], []),
    ("m-1", False, ["m-1", "m-10", "m-1/p"], ["m-1"]),
    ("m-1", False, [], []),
]


@pytest.mark.parametrize(("mid", "per_owner", "keys", "expected"), KEY_TABLE)
def test_scratch_keys(mid: str, per_owner: bool, keys: list[str], expected: list[str]) -> None:
    assert retention.scratch_keys(mid, "k", per_owner, keys) == expected


def test_scratch_kinds_are_the_modules_own() -> None:
    # spelled in retention.py so the service does not import the backfill; they must not drift
    assert {k for k, _ in retention.SCRATCH} == {samples.KIND, query_sample.KIND, adapter_store.KIND}


async def _seed(w: World, mid: str) -> None:
    await w.store.upsert(samples.KIND, f"{mid}/daemon-1", {"items": [{"text": "a private text"}]})
    await w.store.upsert(query_sample.KIND, f"{mid}/proxy-1", {"texts": ["what users asked"]})
    await w.store.upsert(adapter_store.KIND, mid, {"enabled": True})
    await w.store.upsert(hot_docs.KIND, f"{mid}/proxy-1", {"counts": {"1": 3}, "errors": {}})
    await w.store.upsert(eval_gate.KIND, mid, {"verdict": "GO", "reasons": [], "queries": 3})


async def _left(w: World, mid: str) -> dict[str, list[str]]:
    kinds = (samples.KIND, query_sample.KIND, adapter_store.KIND, hot_docs.KIND, eval_gate.KIND)
    return {kind: [e.key for e in await w.store.list(kind) if e.key == mid or e.key.startswith(mid + "/")]
            for kind in kinds}


@pytest.mark.parametrize("end", ["complete", "cancel"])
async def test_transition_to_an_end_removes_only_that_migrations_scratch(world: World, end: str) -> None:  # noqa: F811
    svc = world.service()
    mid = await planned(world, svc)
    neighbour = mid + "0"  # shares the prefix; must keep everything
    await _seed(world, mid)
    await _seed(world, neighbour)
    await svc.transition(mid, "start")
    assert (await _left(world, mid))[samples.KIND] == [f"{mid}/daemon-1"]  # not over yet: kept
    if end == "complete":
        await svc.verify(mid)
        for step in ("switch_reads", "switch_writes"):
            await svc.transition(mid, step)
    await svc.transition(mid, end)
    assert await _left(world, mid) == {samples.KIND: [], query_sample.KIND: [], adapter_store.KIND: [],
                                       hot_docs.KIND: [f"{mid}/proxy-1"], eval_gate.KIND: [mid]}
    kept = await _left(world, neighbour)
    assert all(kept[k] for k in kept), kept


async def test_cleanup_removes_scratch_written_after_complete(world: World) -> None:  # noqa: F811
    svc = world.service()
    mid = await planned(world, svc)
    await svc.transition(mid, "start")
    await svc.verify(mid)
    for step in ("switch_reads", "switch_writes", "complete"):
        await svc.transition(mid, step)
    await _seed(world, mid)  # e.g. a purge at complete that failed, or a late flush
    await svc.cleanup(mid, yes=True)
    left = await _left(world, mid)
    assert left[samples.KIND] == left[query_sample.KIND] == left[adapter_store.KIND] == []
    assert left[eval_gate.KIND] == [mid]

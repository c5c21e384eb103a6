"""The backfill daemon against the embedded upstream: copy, idempotence, races, two daemons,
repair log, verification."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from switchyard.backfill.daemon import Daemon, DaemonConfig
from switchyard.backfill.pipeline import Copier
from switchyard.backfill.verify import verify
from backfill_helpers import B, content, dump, new_store, point, setup_migration
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import StateStore

FAST = DaemonConfig(batch_size=50, concurrency=2, lease_ttl=3.0, refresh=0.2, int_partitions=4,
                    uuid_partitions=2, idle_poll=0.1)


@pytest.fixture
async def env(upstream: Any, prefix: str) -> AsyncIterator[tuple[AsyncQdrantClient, StateStore, str]]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    yield client, store, prefix
    await client.delete_collection(store.collection)
    await client.close()


async def migration(store: StateStore, mid: str) -> Migration:
    return Migration.from_envelope(await store.require(Migration.KIND, mid))


async def check_equal(client: AsyncQdrantClient, m: Migration) -> None:
    src, tgt = await dump(client, m.source), await dump(client, m.target)
    assert set(src) == set(tgt)
    for i, (payload, _) in src.items():
        tp = tgt[i][0]
        assert content(tp) == content(payload), i
        assert tp[DIGEST_FIELD] == source_digest(payload)
        assert tp["embedding_model_id"] == B.id and len(tgt[i][1]) == 8


async def test_copies_int_and_uuid_ids_then_verifies_clean_and_rerun_is_identical(env: Any) -> None:
    client, store, prefix = env
    ids: list[Any] = list(range(0, 700, 2)) + [str(uuid.UUID(int=k * 7919 << 96)) for k in range(1, 40)]
    mid = await setup_migration(client, store, prefix, ids)
    stats = await Daemon(store, mid, FAST).run(once=True)
    m = await migration(store, mid)
    assert stats.written == len(ids) and m.backfill == "done"
    assert m.counter("backfill_done") == len(ids) and m.counter("backfill_total") == len(ids)
    await check_equal(client, m)
    first = await dump(client, m.target)
    # idempotence: a fresh plan of partitions and a second full run change nothing
    for env_ in await store.list("lease"):
        await store.delete("lease", env_.key)
    await store.delete("backfill_plan", mid)
    await Daemon(store, mid, FAST).run(once=True)
    assert await dump(client, m.target) == first
    copier = Copier(client, m, {}, None, None)  # type: ignore[arg-type]
    found, _ = await verify(copier, store, m)
    assert found.clean and found.counts()["source"] == len(ids)


async def race_fault(client: AsyncQdrantClient, m: Migration, hits: list[Any]) -> Any:
    """Between scroll and write: delete one point of the batch (mirrored: gone from both) and
    update another's payload in the source only (its mirrored write 'still in flight')."""
    async def fault(records: Sequence[models.Record]) -> None:
        if len(records) < 3:
            return
        gone, changed = records[0].id, records[1].id
        await client.delete(m.source, models.PointIdsList(points=[gone]), wait=True)
        await client.delete(m.target, models.PointIdsList(points=[gone]), wait=True)
        await client.set_payload(m.source, {"text": f"updated {changed}", "v": 99}, points=[changed], wait=True)
        hits.append((gone, changed))
    return fault


async def test_reread_closes_delete_and_update_races(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(1, 401)))
    m = await migration(store, mid)
    hits: list[Any] = []
    await Daemon(store, mid, FAST, fault=await race_fault(client, m, hits)).run(once=True)
    assert len(hits) >= 4
    await check_equal(client, m)  # no resurrection, no lost update, without any repair
    src = await dump(client, m.source)
    assert all(g not in src and src[c][0]["v"] == 99 for g, c in hits)
    found, _ = await verify(Copier(client, m, {}, None, None), store, m)  # type: ignore[arg-type]
    assert found.clean


async def test_without_reread_the_same_races_leave_differences(env: Any, monkeypatch: Any) -> None:
    """The control for the test above: with the re-read step disabled, verify finds the
    resurrected and stale points -- so that test can fail."""
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(1, 201)))
    m = await migration(store, mid)

    async def no_reread(self: Copier, ids: Any, ours: Any) -> Any:
        from switchyard.backfill.pipeline import Stats
        return Stats()

    monkeypatch.setattr(Copier, "reconcile", no_reread)
    hits: list[Any] = []
    await Daemon(store, mid, FAST, fault=await race_fault(client, m, hits)).run(once=True)
    found, _ = await verify(Copier(client, m, {}, None, None), store, m)  # type: ignore[arg-type]
    assert hits and set(found.extra) == {g for g, _ in hits} and set(found.stale) == {c for _, c in hits}


async def test_verify_reports_and_repairs_missing_extra_stale(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(1, 301)))
    await Daemon(store, mid, FAST).run(once=True)
    m = await migration(store, mid)
    await client.delete(m.target, models.PointIdsList(points=[5, 6]), wait=True)        # missing
    await client.upsert(m.target, [models.PointStruct(id=1000, vector=[0.5] * 8, payload={})])  # extra
    await client.set_payload(m.source, {"v": 7}, points=[10], wait=True)                  # stale
    copier = Copier(client, m, {}, None, None)  # type: ignore[arg-type]
    found, _ = await verify(copier, store, m, resume=False)
    assert (found.missing, found.extra, found.stale) == ([5, 6], [1000], [10])
    spec_copier = await _real_copier(client, store, m)
    found, left = await verify(spec_copier, store, m, repair=True, resume=False)
    assert not found.clean and left is not None and left.clean
    await check_equal(client, m)


async def _real_copier(client: AsyncQdrantClient, store: StateStore, m: Migration) -> Copier:
    from switchyard.backfill.texts import PayloadText
    from switchyard.proxy.embedders import make_embedder
    from switchyard.proxy.intercept.planner import metadata_for
    return Copier(client, m, metadata_for(B), make_embedder(B), PayloadText("text"))


async def test_repair_log_is_drained(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(1, 101)))
    await Daemon(store, mid, FAST).run(once=True)
    m = await migration(store, mid)
    # a mirrored update and a mirrored delete that failed, as the proxy would log them
    await client.set_payload(m.source, {"v": 5}, points=[3], wait=True)
    await client.delete(m.source, models.PointIdsList(points=[4]), wait=True)
    for pid in (3, 4):
        await store.create("repair", f"{mid}/{pid}", {"migration": mid, "point_id": pid,
                                                       "reason": "target down", "at": 0.0})
    await Daemon(store, mid, FAST).run(once=True)
    await check_equal(client, m)
    assert [e for e in await store.list("repair") if e.key.startswith(mid)] == []


async def test_two_daemons_split_partitions(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(0, 1200)))
    one, two = Daemon(store, mid, FAST, owner="d1"), Daemon(store, mid, FAST, owner="d2")
    s1, s2 = await asyncio.gather(one.run(once=True), two.run(once=True))
    assert s1.written > 0 and s2.written > 0 and s1.written + s2.written == 1200
    owners = {e.data["owner"] for e in await store.list("lease") if e.key.startswith(mid)}
    assert owners == {"d1", "d2"}
    await check_equal(client, await migration(store, mid))


async def test_a_dead_daemons_partitions_are_taken_over(env: Any) -> None:
    client, store, prefix = env
    n = 800
    mid = await setup_migration(client, store, prefix, list(range(n)))
    config = DaemonConfig(batch_size=20, concurrency=1, lease_ttl=1.5, refresh=0.2, int_partitions=2,
                          uuid_partitions=1, idle_poll=0.1)
    gate = asyncio.Event()

    async def stall(records: Sequence[models.Record]) -> None:
        await gate.wait()  # d1 hangs in its first write: it will be "killed" holding a lease

    async with asyncio.TaskGroup() as tg:
        d1 = tg.create_task(Daemon(store, mid, config, owner="d1", fault=stall).run(once=True))
        deadline = asyncio.get_running_loop().time() + 20
        while not any(e.data.get("owner") == "d1" for e in await store.list("lease") if e.key.startswith(mid)):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        d1.cancel()  # dies without releasing its lease
    stats = await Daemon(store, mid, config, owner="d2").run(once=True)
    assert stats.written == n  # d2 took over the expired lease and copied everything
    leases = [e.data for e in await store.list("lease") if e.key.startswith(mid)]
    assert all(d["done"] and d["owner"] == "d2" for d in leases)
    await check_equal(client, await migration(store, mid))


async def test_service_verify_refuses_differences_repairs_and_enters_verified(env: Any) -> None:
    from switchyard.proxy.migration.record import Refused
    from switchyard.proxy.migration.service import MigrationService

    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(1, 201)))
    svc = MigrationService(store, client)
    with pytest.raises(Refused, match="needs the backfill first"):
        await svc.verify(mid)
    await Daemon(store, mid, FAST).run(once=True)
    m = await migration(store, mid)
    await client.delete(m.target, models.PointIdsList(points=[7]), wait=True)
    with pytest.raises(Refused, match=r"missing=1, extra=0, stale=0 \(sample ids \{'missing': \[7\]"):
        await svc.verify(mid)
    done = await svc.verify(mid, repair=True)
    assert done.phase == "verified" and done.verification is not None and done.verification.clean
    assert done.verification.counts["source"] == 200 and done.verification.counts["repaired"] == 1
    await check_equal(client, done)


async def test_samples_pair_each_text_with_its_source_and_target_vectors(env: Any) -> None:
    """The reservoir's pairs carry the point's A vector (read for the sampled points only, since
    the scroll does not fetch vectors to re-embed a single vector) and its B vector."""
    from switchyard.backfill import samples

    client, store, prefix = env
    ids = list(range(300))
    mid = await setup_migration(client, store, prefix, ids)
    daemon = Daemon(store, mid, FAST)
    daemon.reservoir = samples.Reservoir(capacity=40)
    await daemon.run(once=True)
    m = await migration(store, mid)
    pairs = await samples.load(store, mid)
    assert len(pairs) == 40 and len({p["id"] for p in pairs}) == 40
    src = await dump(client, m.source)
    tgt = await dump(client, m.target)
    for p in pairs:
        assert p["a"] == pytest.approx(src[p["id"]][1], abs=1e-6)
        assert p["b"] == pytest.approx(tgt[p["id"]][1], abs=1e-6)
        assert p["text"] == src[p["id"]][0]["text"]

"""Races with the application: while the backfill runs, a writer upserts, updates payloads and
deletes through the real proxy (mirrored writes); afterwards the target equals the source --
no deleted point resurrected, no update lost -- and verify is clean."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from switchyard.backfill.daemon import Daemon, DaemonConfig
from switchyard.backfill.pipeline import Copier
from switchyard.backfill.verify import verify
from backfill_helpers import B, content, dump, point, setup_migration
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService
from switchyard.proxy.state.store import StateStore
from proxy_fixtures import switchyard  # noqa: F401  (fixture)

N = 1500
CONFIG = DaemonConfig(batch_size=50, concurrency=2, lease_ttl=5.0, refresh=0.2, int_partitions=4,
                      uuid_partitions=1, idle_poll=0.1)


async def writer(client: AsyncQdrantClient, logical: str, stop: asyncio.Event, log: dict[str, int]) -> None:
    """Random upserts (new and existing ids), payload updates and deletes, through the proxy."""
    rng = random.Random(11)
    version = 1
    while not stop.is_set():
        version += 1
        op = rng.random()
        ids = rng.sample(range(N + 200), 5)
        if op < 0.4:
            await client.upsert(logical, [point(i, version) for i in ids], wait=True)
            log["upserts"] += len(ids)
        elif op < 0.7:
            # only ids that exist (this writer is the only deleter): a set_payload naming a
            # missing id fails with 404 after partly applying on the embedded upstream, and a
            # failed primary write is not mirrored
            alive = [r.id for r in await client.retrieve(logical, ids, with_payload=False)]
            if alive:
                await client.set_payload(logical, {"v": version, "text": f"edited v{version}"},
                                         points=alive, wait=True)
                log["updates"] += len(alive)
        else:
            await client.delete(logical, models.PointIdsList(points=ids), wait=True)
            log["deletes"] += len(ids)
        await asyncio.sleep(0.01)


async def test_concurrent_writer_through_proxy(upstream: Any, switchyard: Any, prefix: str) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    app = AsyncQdrantClient(url=switchyard.rest_url, check_compatibility=False, timeout=30)
    store = StateStore(client)  # the proxy's own state store
    mid = ""
    try:
        mid = await setup_migration(client, store, prefix, list(range(N)))
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        stop, log = asyncio.Event(), {"upserts": 0, "updates": 0, "deletes": 0}
        async with asyncio.TaskGroup() as tg:
            w = tg.create_task(writer(app, m.logical, stop, log))
            try:
                await Daemon(store, mid, CONFIG).run(once=True)
            finally:
                stop.set()
            await w
        assert min(log.values()) > 0, log
        # mirrored writes finish after the client's reply: let them land (bounded)
        copier = Copier(client, m, {}, None, None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while True:
            found, _ = await verify(copier, store, m, resume=False)
            if found.clean or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        pending = [e.key for e in await store.list("repair") if e.key.startswith(mid + "/")]
        assert found.clean, (found.counts(), found.samples(), pending)
        src, tgt = await dump(client, m.source), await dump(client, m.target)
        assert set(src) == set(tgt)
        for i, (payload, _) in src.items():
            assert content(tgt[i][0]) == content(payload)
            assert tgt[i][0][DIGEST_FIELD] == source_digest(payload)
            assert tgt[i][0]["embedding_model_id"] == B.id
    finally:
        if mid:
            await MigrationService(store, client).transition(mid, "cancel")
        await app.close()
        await client.close()

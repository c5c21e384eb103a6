"""Operator control of a running daemon: throttle 0 stops writes, resume continues from the
checkpoint, pause reasons reach the progress record, batch size changes are clamped."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.backfill.daemon import BATCH_COUNTER, Daemon, DaemonConfig
from backfill_helpers import new_store, setup_migration
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService
from switchyard.proxy.state.store import StateStore

CONFIG = DaemonConfig(batch_size=20, concurrency=1, lease_ttl=5.0, refresh=0.1, int_partitions=2,
                      uuid_partitions=1, idle_poll=0.1)


async def copied(store: StateStore, mid: str) -> int:
    return sum(int(e.data.get("copied") or 0) for e in await store.list("lease") if e.key.startswith(mid))


async def wait_for(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_throttle_zero_stops_and_resume_continues_from_checkpoint(upstream: Any, prefix: str) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    try:
        n = 600
        mid = await setup_migration(client, store, prefix, list(range(n)), throttle=300.0)
        svc = MigrationService(store, client)
        daemon = Daemon(store, mid, CONFIG, owner="ctl")
        task = asyncio.create_task(daemon.run(once=True))
        try:
            await wait_for(lambda: _gt(copied(store, mid), 40))
            await svc.throttle(mid, 0)
            await wait_for(lambda: _state_is(store, mid, "paused"))
            frozen = await copied(store, mid)
            assert 0 < frozen < n
            await asyncio.sleep(1.5)
            assert await copied(store, mid) == frozen  # no write while throttled to 0
            progress = (await store.require("backfill_progress", f"{mid}/ctl")).data
            assert progress["reason"] == "throttle 0 (paused) by operator"
            # the batch-size knob is clamped and picked up by the running daemon
            m = Migration.from_envelope(await store.require(Migration.KIND, mid))
            import dataclasses
            await store.put(Migration.KIND, mid, dataclasses.replace(
                m, counters={**m.counters, BATCH_COUNTER: 5000}).stored(), m.rev)
            await wait_for(lambda: _true(daemon.batch_size == 1024))
            await svc.throttle(mid, 2000)
            stats = await asyncio.wait_for(task, 60)
        finally:
            if not task.done():
                task.cancel()
        assert stats.written == n  # continued from the checkpoint: nothing copied twice
        assert (await client.count(Migration.from_envelope(
            await store.require(Migration.KIND, mid)).target, exact=True)).count == n
    finally:
        await client.delete_collection(store.collection)
        await client.close()


async def _gt(value: Any, floor: int) -> bool:
    return bool(await value > floor)


async def _true(value: bool) -> bool:
    return value


async def _state_is(store: StateStore, mid: str, state: str) -> bool:
    env = await store.get("backfill_progress", f"{mid}/ctl")
    return env is not None and env.data.get("state") == state

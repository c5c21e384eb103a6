"""The daemon's outage handling in process, against the real upstream: an embedder that is down
for a while (the state store is up, so ``migrate status`` shows ``waiting`` live), an embedder
that refuses the key (the daemon stops with the reason), a migration cancelled mid-run (the
daemon returns: nothing left to do), and a lease that lapses while the daemon cannot reach the
lease records (it writes nothing until it holds the lease again).

Fakes only at seams we own: an :class:`~switchyard.proxy.embedders.Embedder` that fails on demand, and a
:class:`~switchyard.proxy.state.store.StateStore` whose lease writes fail on demand.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.backfill import partitions as parts
from switchyard.backfill.daemon import Daemon, DaemonConfig
from switchyard.backfill.outage import Stopped
from switchyard.backfill.pipeline import Copier
from switchyard.backfill.verify import verify
from backfill_helpers import B, new_store, setup_migration
from openai_stub import OpenAIStub, Status
from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.errors import EmbedderError, ProviderDown, UpstreamError
from switchyard.proxy.migration import progress
from switchyard.proxy.migration.command import render
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.store import Envelope, StateStore

CONFIG = DaemonConfig(batch_size=20, concurrency=1, lease_ttl=3.0, refresh=0.1, int_partitions=3,
                      uuid_partitions=1, idle_poll=0.1, retry_base=0.2, retry_max=0.6)


class SwitchedEmbedder:
    """Model B's hashing embedder behind a switch: while ``failure`` is set, every call raises it."""

    def __init__(self) -> None:
        self.inner = make_embedder(B)
        self.spec = B
        self.failure: Exception | None = None
        self.failed = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.failure is not None:
            self.failed += 1
            raise self.failure
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def env(upstream: Any, prefix: str) -> AsyncIterator[tuple[AsyncQdrantClient, StateStore, str]]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    yield client, store, prefix
    await client.delete_collection(store.collection)
    await client.close()


async def until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def copied(store: StateStore, mid: str) -> int:
    return sum(int(e.data.get("copied") or 0) for e in await store.list("lease") if e.key.startswith(mid + "/"))


async def clean(client: AsyncQdrantClient, store: StateStore, mid: str, n: int) -> None:
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    found, _ = await verify(Copier(client, m, {}, None, None), store, m, resume=False)  # type: ignore[arg-type]
    assert found.clean and found.source == n, found.counts()


async def test_embedder_outage_shows_waiting_in_status_then_finishes(env: Any) -> None:
    client, store, prefix = env
    n = 300
    mid = await setup_migration(client, store, prefix, list(range(n)))
    embedder = SwitchedEmbedder()
    embedder.failure = ProviderDown("http://embedder.test/v1 answered HTTP 503 after 3 retries")
    daemon = Daemon(store, mid, CONFIG, owner="flaky", embedder=embedder)
    task = asyncio.create_task(daemon.run(once=True))
    try:
        seen: dict[str, Any] = {}

        async def waiting() -> bool:
            env_ = await store.get(progress.KIND, f"{mid}/flaky")
            seen.update(env_.data if env_ else {})
            return seen.get("state") == "waiting" and embedder.failed >= 3

        await until(waiting, 30, "the daemon to publish that it waits")
        assert re.fullmatch(r"embedder unavailable \(.*HTTP 503 after 3 retries\), retry \d+ in \d+ s",
                            seen["reason"]), seen["reason"]
        line = [x for x in render(await MigrationService(store, client).status(mid)).splitlines()
                if "daemon flaky" in x]
        assert line and "daemon flaky: waiting (embedder unavailable (" in line[0], line
        owned = [e for e in await store.list("lease") if e.key.startswith(mid + "/") and e.data["owner"] == "flaky"]
        assert len(owned) == 1  # in an outage it probes with one partition, it does not grab them all
        assert not task.done()
        embedder.failure = None
        stats = await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    assert stats.written == n
    done = (await store.require(progress.KIND, f"{mid}/flaky")).data
    assert done["state"] == "done" and done["outage"]["attempt"] == 0, done
    assert re.fullmatch(r"recovered after \d+ s waiting: embedder unavailable \(.*\), \d+ retr(y|ies)",
                        done["outage"]["recovered"]), done["outage"]
    await clean(client, store, mid, n)


async def test_an_embedder_refusing_the_key_stops_the_daemon_with_the_reason(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(100)))
    embedder = SwitchedEmbedder()
    embedder.failure = EmbedderError("http://embedder.test/v1 refused the credentials (HTTP 401: bad key)")
    with pytest.raises(Stopped, match=r"backfill stopped: embedder refused \(.*refused the credentials \(HTTP 401") as info:
        await asyncio.wait_for(Daemon(store, mid, CONFIG, owner="keyless", embedder=embedder).run(once=True), 30)
    assert info.value.verdict.exit_code == 1 and embedder.failed == 1  # not retried
    assert await copied(store, mid) == 0


async def test_the_real_http_embedder_503s_are_waited_out_and_its_401_ends_the_daemon(env: Any) -> None:
    """The same two cases through the OpenAI-compatible HTTP embedder and a real local server:
    503s past the provider's own retry budget (ProviderDown) are waited out; a 401 (the
    provider refused the key) stops the daemon at once."""
    client, store, prefix = env
    stub = OpenAIStub(default_dimensions=8)
    await stub.start()
    spec = ModelSpec(id="bf-http", provider="openai", model="stub", dimensions=8, base_url=stub.base_url,
                     max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02)
    embedder = make_embedder(spec)
    try:
        mid = await setup_migration(client, store, prefix, list(range(120)))
        stub.script(*[Status(503)] * 6)  # 2 requests per embed call: 3 failed calls for the daemon
        daemon = Daemon(store, mid, CONFIG, owner="http", embedder=embedder)
        stats = await asyncio.wait_for(daemon.run(once=True), 60)
        assert stats.written == 120
        outage = (await store.require(progress.KIND, f"{mid}/http")).data["outage"]
        assert re.fullmatch(r"recovered after \d+ s waiting: embedder unavailable \(.*HTTP 503.*\), 3 retries",
                            outage["recovered"]), outage
        await clean(client, store, mid, 120)

        again = await setup_migration(client, store, prefix + "k", list(range(50)))
        stub.script(Status(401, body=b'{"error": {"message": "Incorrect API key provided"}}'))
        with pytest.raises(Stopped, match=r"embedder refused \(.*refused the credentials") as info:
            await asyncio.wait_for(Daemon(store, again, CONFIG, owner="http-k", embedder=embedder).run(once=True), 30)
        assert info.value.verdict.exit_code == 1
        assert await copied(store, again) == 0
    finally:
        await embedder.aclose()
        await stub.stop()


async def test_a_migration_cancelled_mid_run_ends_the_daemon_cleanly(env: Any) -> None:
    client, store, prefix = env
    mid = await setup_migration(client, store, prefix, list(range(600)), throttle=150.0)
    daemon = Daemon(store, mid, CONFIG, owner="cancelled")
    task = asyncio.create_task(daemon.run(once=False))
    try:
        await until(lambda: _at_least(copied(store, mid), 40), 30, "some progress")
        await MigrationService(store, client).transition(mid, "cancel")
        stats = await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
    assert 0 < stats.written < 600
    assert daemon.ended == f"migration `{mid}` is cancelled: the backfill has nothing left to do"
    record = (await store.require(progress.KIND, f"{mid}/cancelled")).data
    assert (record["state"], record["reason"]) == ("ended", daemon.ended)


async def _at_least(value: Awaitable[int], floor: int) -> bool:
    return await value >= floor


class LeaseCut(StateStore):
    """The state store with a switch that makes lease writes fail as if the store were down."""

    cut = False

    async def put(self, kind: str, key: str, data: dict[str, Any], expected_rev: int) -> Envelope:
        if self.cut and kind == parts.LEASE_KIND:
            raise UpstreamError("state store write failed") from ConnectionRefusedError(111, "refused")
        return await super().put(kind, key, data, expected_rev)


async def test_a_lease_that_lapsed_while_cut_off_is_never_written_on(env: Any) -> None:
    """Throttled to one batch every 2.5 s and a 1 s lease: lease writes fail right after a
    checkpoint, so the lease lapses while the next batch waits for the throttle. When the
    throttle lets it go, the daemon must renew first -- which fails -- and write nothing."""
    client, store, prefix = env
    n = 100
    mid = await setup_migration(client, store, prefix, list(range(n)), throttle=2.0)
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    cut = LeaseCut(client, store.collection)
    config = DaemonConfig(batch_size=5, concurrency=1, lease_ttl=1.0, refresh=0.1, int_partitions=1,
                          uuid_partitions=1, idle_poll=0.1, retry_base=0.2, retry_max=0.5)
    task = asyncio.create_task(Daemon(cut, mid, config, owner="fenced").run(once=True))
    try:
        await until(lambda: _at_least(copied(store, mid), 5), 30, "the first checkpoint")
        start = await copied(store, mid)
        await until(lambda: _changed(copied(store, mid), start), 30, "the next checkpoint")
        cut.cut = True  # the next batch now waits ~2.5 s for the throttle; the lease lapses after 1 s
        written = (await client.count(m.target, exact=True)).count
        await asyncio.sleep(4.0)  # past the moment the throttle lets the next batch go
        assert (await client.count(m.target, exact=True)).count == written  # nothing written on a lapsed lease
        assert not task.done()
        cut.cut = False
        await MigrationService(store, client).throttle(mid, 100_000)
        stats = await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    assert stats.written >= n - written  # it re-claimed the partition and resumed from its checkpoint
    await clean(client, store, mid, n)


async def _changed(value: Awaitable[int], old: int) -> bool:
    return await value != old

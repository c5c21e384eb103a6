"""The state store against a real Qdrant-compatible server: records, compare-and-set, races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.proxy.errors import Conflict, NotFound
from switchyard.proxy.state.store import StateStore


@pytest.fixture
async def store(upstream: Any) -> Any:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    # a private state collection per test, so the suite can share a real Qdrant
    name = f"_switchyard_test_{uuid.uuid4().hex[:8]}"
    st = StateStore(client, collection=name)
    yield st
    await client.delete_collection(name)
    await client.close()


async def test_create_get_list_delete(store: StateStore) -> None:
    assert await store.get("model", "a") is None
    created = await store.create("model", "a", {"x": 1, "nested": {"f": 1.5, "n": None}})
    assert created.rev == 1
    await store.create("model", "b", {"x": 2})
    await store.create("binding", "a", {"y": 3})
    got = await store.require("model", "a")
    assert got.data == {"x": 1, "nested": {"f": 1.5, "n": None}}
    assert [e.key for e in await store.list("model")] == ["a", "b"]
    await store.delete("model", "a")
    with pytest.raises(NotFound):
        await store.require("model", "a")


async def test_create_twice_conflicts(store: StateStore) -> None:
    await store.create("model", "a", {"x": 1})
    with pytest.raises(Conflict, match="already exists"):
        await store.create("model", "a", {"x": 2})
    assert (await store.require("model", "a")).data == {"x": 1}


async def test_compare_and_set(store: StateStore) -> None:
    first = await store.create("migration", "m", {"phase": "planned"})
    second = await store.put("migration", "m", {"phase": "dual_write"}, first.rev)
    assert second.rev == 2
    with pytest.raises(Conflict, match="revision 1"):
        await store.put("migration", "m", {"phase": "cancelled"}, first.rev)
    assert (await store.require("migration", "m")).data == {"phase": "dual_write"}


async def test_racing_writers_exactly_one_wins(store: StateStore) -> None:
    base = await store.create("migration", "race", {"winner": None})

    async def attempt(i: int) -> int | None:
        try:
            await store.put("migration", "race", {"winner": i}, base.rev)
            return i
        except Conflict:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = await store.require("migration", "race")
    assert final.rev == 2 and final.data == {"winner": winners[0]}


async def test_upsert_is_last_writer_wins(store: StateStore) -> None:
    await store.upsert("proxy", "p1", {"seen": 1})
    again = await store.upsert("proxy", "p1", {"seen": 2})
    assert again.rev == 2
    assert (await store.require("proxy", "p1")).data == {"seen": 2}


def _client_sockets_to(port: int) -> int:
    """TCP sockets of this host whose remote end is ``port`` (any state, TIME-WAIT included)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for line in lines if int(line.split()[2].rsplit(":", 1)[1], 16) == port)
    return count


def test_connect_keeps_connections_alive_to_a_loopback_qdrant() -> None:
    """qdrant-client turns keep-alive off for 127.0.0.1; the store's client (proxy, daemon)
    keeps it on: 30 calls to a sidecar's Qdrant reuse a connection instead of opening 30."""
    from switchyard.proxy.embedded.server import BackgroundUpstream

    server = BackgroundUpstream()  # its own port: no other client talks to it
    server.start()
    try:
        async def calls() -> None:
            store = StateStore.connect(server.rest_url)
            try:
                for _ in range(30):
                    await store.client.collection_exists("anything")
            finally:
                await store.close()

        asyncio.run(calls())
        assert _client_sockets_to(server.http_port) <= 3
    finally:
        server.stop()

"""Merged reads with a raw query vector through the migration's adapter (issue 15), end to end
against the session's upstream: the record is stored in the real state store, the reader reads
it through AdapterCache, the side of the other model is searched with the adapter's image."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest

from dataplane_reads_fixtures import Forwarders, Setup, make_setup
from switchyard.proxy.dataplane import adapter_store
from switchyard.proxy.dataplane.adapter import Adapter, Fit, procrustes
from switchyard.proxy.dataplane.adapter_store import AdapterCache
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.read_transport import MERGE_HEADER
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.state.store import StateStore
from switchyard.proxy.wire import RestCall

JSON = (("content-type", "application/json"),)


@pytest.fixture
async def world(upstream: Any, prefix: str) -> AsyncIterator[tuple[Setup, EmbedderPool, StateStore, Forwarders]]:
    pool = EmbedderPool()
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    store = StateStore.connect(upstream.rest_url)
    try:
        setup = await make_setup(upstream.rest_url, prefix, pool, n=40, migrated=20)
        yield setup, pool, store, fw
    finally:
        await store.close()
        await fw.aclose()
        await pool.aclose()


async def _record(store: StateStore, s: Setup, pool: EmbedderPool, cosine: float, enabled: bool = True) -> Adapter:
    """An A -> B Procrustes map fitted on the texts' vectors, with a held-out score we set:
    this test is about the wiring; the fit and its gate are tested in test_adapter.py."""
    a = await pool.embed(s.a, s.texts)
    b = await pool.embed(s.b, s.texts)
    ad = Adapter("procrustes", procrustes(a, b), np.zeros(8, np.float32), 8, 8, True, Fit(cosine, 0.5, 32, 8))
    rec = {"enabled": enabled, "pairs": 40, "reason": "test", "to_target": ad.to_dict(), "to_source": None,
           "calibration": None}
    await store.upsert(adapter_store.KIND, s.migration.id, rec)
    return ad


async def _query(s: Setup, reader: MergedReader, fw: Forwarders, vector: list[float]) -> tuple[dict[str, str], Any]:
    call = RestCall("POST", f"/collections/{s.logical}/points/query", "", JSON,
                    orjson.dumps({"query": vector, "limit": 6, "with_payload": True}))
    reply = await reader.rest(call, s.route, s.migration, s.snap, fw.rest)
    assert reply.ok, reply.body
    return dict(reply.headers), orjson.loads(reply.body)["result"]["points"]


async def test_raw_vector_reaches_the_target_through_the_adapter(world: Any) -> None:
    s, pool, store, fw = world
    ad = await _record(store, s, pool, cosine=0.9)
    reader = MergedReader(pool, adapters=AdapterCache(store, ttl=0))
    raw_a = (await pool.embed(s.a, ["cats small quick"]))[0].tolist()
    headers, points = await _query(s, reader, fw, raw_a)
    header = headers[MERGE_HEADER]
    assert "adapter=target(procrustes" in header and "skipped_target" not in header
    found = re.search(r"target=(\d+)", header)
    assert found and int(found[1]) > 0
    # the target was searched with the adapter's image: its own top hit for that vector leads
    image = ad.apply(np.asarray(raw_a, np.float32)).tolist()
    direct = await fw.rest(RestCall("POST", f"/collections/{s.target}/points/query", "", JSON,
                                    orjson.dumps({"query": image, "limit": 1})))
    top = orjson.loads(direct.body)["result"]["points"][0]["id"]
    assert top in [p["id"] for p in points if p["payload"]["side"] == "target"]
    await reader.aclose()


@pytest.mark.parametrize(("cosine", "enabled"), [(0.9, False), (0.1, True)], ids=["turned-off", "poor-fit"])
async def test_adapter_off_or_poor_leaves_the_side_skipped(world: Any, cosine: float, enabled: bool) -> None:
    s, pool, store, fw = world
    await _record(store, s, pool, cosine=cosine, enabled=enabled)
    reader = MergedReader(pool, adapters=AdapterCache(store, ttl=0))
    raw_a = (await pool.embed(s.a, ["dogs blue"]))[0].tolist()
    headers, points = await _query(s, reader, fw, raw_a)
    assert "skipped_target=raw query vector is model a" in headers[MERGE_HEADER]
    assert all(p["payload"]["side"] == "source" for p in points)
    await reader.aclose()

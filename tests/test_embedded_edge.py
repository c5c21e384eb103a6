"""The Edge engine of the embedded upstream: what only Qdrant's own engine answers as Qdrant does,
and the design constraint (Edge holds the GIL on every call) kept: an HNSW build in one
collection does not stop another collection's searches or the health endpoint.

Each test runs its own in-process server on the Edge engine (``EmbeddedUpstream(engine="edge")``)
on 127.0.0.1 port 0, driven with raw HTTP or the official client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy.embedded.engines import edge_available
from switchyard.proxy.embedded.server import EmbeddedUpstream

pytestmark = [
    pytest.mark.embedded_only,
    pytest.mark.skipif(not edge_available(), reason="qdrant-edge-py is not installed here"),
]

BOUND = 120.0  # seconds any single wait may take before the test fails


@pytest.fixture
async def edge() -> AsyncIterator[EmbeddedUpstream]:
    server = EmbeddedUpstream(engine="edge")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http(edge: EmbeddedUpstream) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=edge.rest_url, timeout=BOUND) as client:
        yield client


async def ok(response: Any) -> Any:
    r = await response
    assert r.status_code == 200, r.text
    return r.json()["result"]


async def test_hnsw_build_does_not_stop_other_collections(
    edge: EmbeddedUpstream, http: httpx.AsyncClient
) -> None:
    """While collection ``big`` builds its HNSW index (Edge's optimize holds its worker's GIL
    for seconds), collection ``small`` answers searches and ``/healthz`` answers, and ``big``
    reports ``yellow``; afterwards ``big`` is indexed and green."""
    engine: Any = edge.engine
    n, dim = 10_000, 32
    await ok(http.put("/collections/big", json={
        "vectors": {"size": dim, "distance": "Cosine"},
        # slow on purpose: a dense graph, one indexing thread, index from the first KB
        "hnsw_config": {"m": 32, "ef_construct": 400, "max_indexing_threads": 1},
        "optimizers_config": {"indexing_threshold": 1},
    }))
    await ok(http.put("/collections/small", json={"vectors": {"size": 4, "distance": "Dot"}}))
    await ok(http.put("/collections/small/points?wait=true", json={"points": [
        {"id": i, "vector": [1.0, float(i), 0.5, 0.0]} for i in range(1, 6)]}))
    await engine.wait_optimized("small")
    vectors = np.random.default_rng(7).standard_normal((n, dim)).astype(np.float32)
    batch = {"batch": {"ids": list(range(n)), "vectors": vectors.tolist()}}
    await ok(http.put("/collections/big/points?wait=true", json=batch))  # schedules the build

    big = engine._shards["big"]
    for _ in range(int(BOUND * 100)):  # bounded: the build starts right after the write
        if big.optimizing:
            break
        await asyncio.sleep(0.01)
    assert big.optimizing, "the optimizer pass did not start"

    hits = await ok(http.post("/collections/small/points/query", json={"query": [1, 1, 1, 1], "limit": 2}))
    health = await http.get("/healthz")
    info = await ok(http.get("/collections/big"))
    # the point of the test: all three answered while the build was still running
    assert big.optimizing, "the build finished before the other calls: make it slower"
    assert [h["id"] for h in hits["points"]] == [5, 4]
    assert health.status_code == 200 and health.text == "healthz check passed"
    assert info["status"] == "yellow"

    await asyncio.wait_for(engine.wait_optimized("big"), BOUND)
    info = await ok(http.get("/collections/big"))
    assert (info["status"], info["points_count"], info["indexed_vectors_count"]) == ("green", n, n)
    found = await ok(http.post("/collections/big/points/query", json={"query": vectors[3].tolist(), "limit": 1}))
    assert found["points"][0]["id"] == 3


async def test_payload_schema_reports_index_types_and_point_counts(http: httpx.AsyncClient) -> None:
    await ok(http.put("/collections/c", json={"vectors": {"size": 2, "distance": "Dot"}}))
    points = [{"id": i, "vector": [1.0, float(i)],
               "payload": {"city": f"c{i % 3}", "n": i, **({"body": "quick brown fox"} if i < 4 else {})}}
              for i in range(10)]
    await ok(http.put("/collections/c/points?wait=true", json={"points": points}))
    await ok(http.put("/collections/c/index?wait=true", json={"field_name": "city", "field_schema": "keyword"}))
    await ok(http.put("/collections/c/index?wait=true", json={"field_name": "n", "field_schema": "integer"}))
    await ok(http.put("/collections/c/index?wait=true", json={"field_name": "body", "field_schema": "text"}))
    info = await ok(http.get("/collections/c"))
    schema = {k: (v["data_type"], v["points"]) for k, v in info["payload_schema"].items()}
    assert schema == {"city": ("keyword", 10), "n": ("integer", 10), "body": ("text", 4)}
    # full-text matching through the text index
    counted = await ok(http.post("/collections/c/points/count", json={
        "filter": {"must": [{"key": "body", "match": {"text": "brown"}}]}, "exact": True}))
    assert counted == {"count": 4}
    await ok(http.delete("/collections/c/index/n?wait=true"))
    info = await ok(http.get("/collections/c"))
    assert sorted(info["payload_schema"]) == ["body", "city"]


async def test_hnsw_and_quantization_config_are_stored_and_reported(edge: EmbeddedUpstream) -> None:
    for prefer_grpc in (False, True):
        client = AsyncQdrantClient(url=edge.rest_url, grpc_port=edge.grpc_port, prefer_grpc=prefer_grpc)
        name = f"q{int(prefer_grpc)}"
        await client.create_collection(
            name,
            vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=24, ef_construct=150),
            quantization_config=models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99)),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=5000),
        )
        info = await client.get_collection(name)
        assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (24, 150)
        assert info.config.hnsw_config.full_scan_threshold == 10000  # Qdrant's default kept
        assert info.config.optimizer_config.indexing_threshold == 5000
        quant = info.config.quantization_config
        assert isinstance(quant, models.ScalarQuantization)
        assert quant.scalar.type == models.ScalarType.INT8
        assert quant.scalar.quantile == pytest.approx(0.99, rel=1e-6)  # gRPC carries float32
        await client.upsert(name, [models.PointStruct(id=1, vector=[1.0] * 8)])
        hits = await client.query_points(name, query=[1.0] * 8, limit=1)
        assert [h.id for h in hits.points] == [1]
        await client.close()


async def test_groups_ids_as_queries_and_lookup_from(edge: EmbeddedUpstream) -> None:
    client = AsyncQdrantClient(url=edge.rest_url, prefer_grpc=False)
    await client.create_collection("docs", vectors_config=models.VectorParams(size=2, distance=models.Distance.EUCLID))
    await client.create_collection("queries", vectors_config={"v": models.VectorParams(size=2, distance=models.Distance.EUCLID)})
    await client.upsert("docs", [
        models.PointStruct(id=i, vector=[x, 0.0], payload={"doc": f"d{i // 2}"})
        for i, x in enumerate([0.0, 1.0, 2.0, 3.0, 4.5, 6.0, 7.0, 8.0])])
    await client.upsert("queries", [models.PointStruct(id=100, vector={"v": [3.1, 0.0]})])
    by_id = await client.query_points("docs", query=3, limit=2)
    assert [p.id for p in by_id.points] == [2, 4]  # the example itself is left out, as Qdrant does
    looked_up = await client.query_points(
        "docs", query=100, limit=2, lookup_from=models.LookupLocation(collection="queries", vector="v"))
    assert [p.id for p in looked_up.points] == [3, 2]  # from another collection: none left out
    groups = await client.query_points_groups("docs", group_by="doc", query=[0.0, 0.0], limit=2, group_size=2)
    assert [(g.id, [h.id for h in g.hits]) for g in groups.groups] == [("d0", [0, 1]), ("d1", [2, 3])]
    missing = await client.query_points("docs", query=[1.0, 0.0], limit=1, with_payload=False)
    assert missing.points[0].payload is None
    await client.close()


async def test_distance_matrix_samples_then_searches(http: httpx.AsyncClient) -> None:
    await ok(http.put("/collections/m", json={"vectors": {"size": 2, "distance": "Euclid"}}))
    await ok(http.put("/collections/m/points?wait=true", json={"points": [
        {"id": i, "vector": [float(i * i), 0.0], "payload": {"keep": i < 4}} for i in range(6)]}))
    keep = {"must": [{"key": "keep", "match": {"value": True}}]}
    pairs = await ok(http.post("/collections/m/points/search/matrix/pairs",
                               json={"sample": 4, "limit": 1, "filter": keep}))
    nearest = {p["a"]: p["b"] for p in pairs["pairs"]}
    assert nearest == {0: 1, 1: 0, 2: 1, 3: 2}  # each sampled point's nearest other sampled one
    offsets = await ok(http.post("/collections/m/points/search/matrix/offsets",
                                 json={"sample": 4, "limit": 2, "filter": keep}))
    assert sorted(offsets["ids"]) == [0, 1, 2, 3] and len(offsets["scores"]) == 8
    r = await http.post("/snapshots")  # full-storage snapshots: test_embedded_full_snapshots
    assert r.status_code == 200 and r.json()["result"]["name"].startswith("full-snapshot-"), r.text


async def test_concurrent_first_requests_after_a_restart_share_one_opening(tmp_path: Any) -> None:
    """After a restart each collection's shard opens on its first request. Requests that arrive
    together must share that one opening: a second worker on the same shard directory fails on
    the WAL lock, and that failure reached clients as ``400`` (seen as a backfill daemon stopping
    with "upstream refused a call" right after an upstream restart)."""
    path = str(tmp_path / "storage")
    first = EmbeddedUpstream(engine="edge", path=path)
    await first.start()
    try:
        client = AsyncQdrantClient(url=first.rest_url, timeout=int(BOUND))
        for name in ("a", "b"):
            await client.create_collection(
                name, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
            await client.upsert(name, [models.PointStruct(id=i, vector=[1.0, float(i), 0.0, 1.0])
                                       for i in range(1, 21)], wait=True)
        await client.close()
    finally:
        await first.stop()

    second = EmbeddedUpstream(engine="edge", path=path)
    await second.start()
    try:
        client = AsyncQdrantClient(url=second.rest_url, timeout=int(BOUND))
        calls: list[Any] = [client.count(name, exact=True) for name in ("a", "b") for _ in range(6)]
        calls += [client.retrieve("a", [1, 2]) for _ in range(4)]
        calls += [client.upsert("b", [models.PointStruct(id=21, vector=[0.0, 1.0, 1.0, 0.0])],
                                wait=True) for _ in range(2)]
        results: list[Any] = await asyncio.wait_for(asyncio.gather(*calls), BOUND)
        assert [r.count for r in results[:6]] == [20] * 6
        assert {r.count for r in results[6:12]} <= {20, 21}
        assert all([p.id for p in r] == [1, 2] for r in results[12:16])
        assert (await client.count("b", exact=True)).count == 21
        await client.close()
    finally:
        await second.stop()

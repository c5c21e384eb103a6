"""What a Qdrant server answers and only Qdrant's own engine answers the same way: strict mode
stored and its basic limits enforced (REST and gRPC), and vectors and scores returned at the
precision Qdrant's REST prints (float32 in its shortest form: ``0.1``, not
``0.10000000149011612``).

Runs against the session's upstream: the embedded one on either engine, or a real Qdrant
(``SWITCHYARD_TEST_QDRANT_URL``); the precision test is skipped on the local engine, which
returns float32 widened to float64 (docs/design.md, "Known differences").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

BOUND = 60.0
CITIES = ("Berlin", "Paris", "Rome", "Oslo", "Lima", "Kyiv")


@pytest.fixture
def engine_like_qdrant(upstream: Any) -> None:
    embedded = upstream.embedded
    if embedded is not None and embedded.server.engine_name == "local":
        pytest.skip("the local engine widens float32")


@pytest.fixture
async def http(upstream: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=upstream.rest_url, timeout=BOUND) as client:
        yield client


async def ok(http: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    r = await http.request(method, path, json=body)
    assert r.status_code == 200, r.text
    return r.json()["result"]


async def refused(http: httpx.AsyncClient, method: str, path: str, body: Any, words: str) -> None:
    """Qdrant's strict-mode refusal: 400 with ``words`` in the error."""
    r = await http.request(method, path, json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["status"]["error"], r.text


def _points(ids: range) -> list[dict[str, Any]]:
    return [{"id": i, "vector": [1.0, 0.5 * i, 0.25, 0.0], "payload": {"city": CITIES[i % 6], "n": i}}
            for i in ids]


async def _collection(http: httpx.AsyncClient, name: str) -> None:
    await ok(http, "PUT", f"/collections/{name}", {"vectors": {"size": 4, "distance": "Dot"}})
    await ok(http, "PUT", f"/collections/{name}/points?wait=true", {"points": _points(range(1, 7))})


STRICT = {"enabled": True, "max_query_limit": 3, "search_allow_exact": False,
          "search_max_hnsw_ef": 5, "upsert_max_batchsize": 5,
          "unindexed_filtering_retrieve": False, "unindexed_filtering_update": False}


async def test_strict_mode_is_stored_and_reported(http: httpx.AsyncClient, prefix: str) -> None:
    name = f"{prefix}strict_cfg"
    await _collection(http, name)
    info = await ok(http, "GET", f"/collections/{name}")
    assert not (info["config"].get("strict_mode_config") or {}).get("enabled")
    await ok(http, "PATCH", f"/collections/{name}", {"strict_mode_config": STRICT})
    reported = (await ok(http, "GET", f"/collections/{name}"))["config"]["strict_mode_config"]
    assert {k: reported[k] for k in STRICT} == STRICT
    # a partial update changes only what it names
    await ok(http, "PATCH", f"/collections/{name}", {"strict_mode_config": {"max_query_limit": 7}})
    reported = (await ok(http, "GET", f"/collections/{name}"))["config"]["strict_mode_config"]
    assert {k: reported[k] for k in STRICT} == {**STRICT, "max_query_limit": 7}


async def test_strict_mode_limits_refuse_over_rest(http: httpx.AsyncClient, prefix: str) -> None:
    name = f"{prefix}strict_rest"
    await _collection(http, name)
    query = f"/collections/{name}/points/query"
    vector = [1.0, 0.0, 0.0, 0.0]
    await ok(http, "POST", query, {"query": vector, "limit": 4})  # strict mode off: allowed
    await ok(http, "PATCH", f"/collections/{name}", {"strict_mode_config": STRICT})

    assert len((await ok(http, "POST", query, {"query": vector, "limit": 3}))["points"]) == 3
    await refused(http, "POST", query, {"query": vector, "limit": 4}, 'Limit exceeded 4 > 3 for "limit"')
    await refused(http, "POST", query, {"prefetch": {"query": vector, "limit": 9}, "query": vector,
                                        "limit": 2}, 'Limit exceeded 9 > 3 for "limit"')
    await refused(http, "POST", f"/collections/{name}/points/scroll", {"limit": 4}, '"limit"')
    await refused(http, "POST", query, {"query": vector, "limit": 2, "params": {"exact": True}},
                  "Exact search disabled")
    await refused(http, "POST", query, {"query": vector, "limit": 2, "params": {"hnsw_ef": 6}},
                  'Limit exceeded 6 > 5 for "hnsw_ef"')
    await ok(http, "POST", query, {"query": vector, "limit": 2, "params": {"hnsw_ef": 5}})

    upsert = f"/collections/{name}/points?wait=true"
    await refused(http, "PUT", upsert, {"points": _points(range(10, 16))}, "upsert limit")
    await ok(http, "PUT", upsert, {"points": _points(range(10, 15))})
    batch = {"operations": [{"upsert": {"points": _points(range(20, 26))}}]}
    await refused(http, "POST", f"/collections/{name}/points/batch?wait=true", batch, "upsert limit")

    by_city = {"must": [{"key": "city", "match": {"value": "Berlin"}}]}
    await refused(http, "POST", query, {"query": vector, "limit": 2, "filter": by_city},
                  'Index required but not found for "city"')
    await refused(http, "POST", f"/collections/{name}/points/delete?wait=true",
                  {"filter": {"must": [{"key": "n", "range": {"gte": 100}}]}},
                  'Index required but not found for "n"')
    await ok(http, "PUT", f"/collections/{name}/index?wait=true",
             {"field_name": "city", "field_schema": "keyword"})
    found = await ok(http, "POST", query, {"query": vector, "limit": 3, "filter": by_city,
                                           "with_payload": True})
    stored = [*range(1, 7), *range(10, 15)]
    assert {p["id"] for p in found["points"]} == {i for i in stored if CITIES[i % 6] == "Berlin"}

    count = await http.post(f"/collections/{name}/points/count", json={"exact": False})
    assert count.status_code == 200, count.text
    await ok(http, "PATCH", f"/collections/{name}", {"strict_mode_config": {"enabled": False}})
    await ok(http, "POST", query, {"query": vector, "limit": 4})  # off again: allowed


async def test_strict_mode_limit_refuses_over_grpc(upstream: Any, prefix: str) -> None:
    name = f"{prefix}strict_grpc"
    client = AsyncQdrantClient(url=upstream.rest_url, grpc_port=upstream.grpc_port,
                               prefer_grpc=True, check_compatibility=False)
    try:
        await client.create_collection(name, models.VectorParams(size=4, distance=models.Distance.DOT),
                                       strict_mode_config=models.StrictModeConfig(
                                           enabled=True, max_query_limit=2))
        await client.upsert(name, [models.PointStruct(id=i, vector=[1.0, i, 0.0, 0.0])
                                   for i in range(1, 5)])
        got = await client.query_points(name, [1.0, 0.0, 0.0, 0.0], limit=2)
        assert len(got.points) == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.query_points(name, [1.0, 0.0, 0.0, 0.0], limit=3)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert 'Limit exceeded 3 > 2 for "limit"' in (caught.value.details() or "")
    finally:
        await client.close()


async def test_vectors_and_scores_at_qdrants_precision(
    http: httpx.AsyncClient, engine_like_qdrant: None, prefix: str
) -> None:
    """Float32 values print in their shortest form, as Qdrant's REST does (Dot: no normalising)."""
    name = f"{prefix}precision"
    await ok(http, "PUT", f"/collections/{name}", {
        "vectors": {"dense": {"size": 4, "distance": "Dot"}},
        "sparse_vectors": {"sparse": {}}})
    dense, values = [0.1, 0.2, 0.3, 0.7], [0.3, 1.1]
    await ok(http, "PUT", f"/collections/{name}/points?wait=true", {"points": [
        {"id": 1, "vector": {"dense": dense, "sparse": {"indices": [2, 5], "values": values}}}]})
    [record] = await ok(http, "POST", f"/collections/{name}/points",
                        {"ids": [1], "with_vector": True})
    assert record["vector"]["dense"] == dense
    assert record["vector"]["sparse"]["values"] == values
    hit = (await ok(http, "POST", f"/collections/{name}/points/query", {
        "query": [1.0, 0.0, 0.0, 0.0], "using": "dense", "with_vector": ["dense"]}))["points"][0]
    assert hit["score"] == 0.1
    assert hit["vector"]["dense"] == dense


async def test_official_client_sees_the_refusal_as_400(http: httpx.AsyncClient, prefix: str) -> None:
    """The official client sees a strict-mode refusal as Qdrant's 400."""
    name = f"{prefix}strict_client"
    await _collection(http, name)
    await ok(http, "PATCH", f"/collections/{name}", {"strict_mode_config": {
        "enabled": True, "max_query_limit": 1}})
    client = AsyncQdrantClient(url=str(http.base_url).rstrip("/"), check_compatibility=False)
    try:
        with pytest.raises(UnexpectedResponse) as caught:
            await client.scroll(name, limit=2)
        assert caught.value.status_code == 400
    finally:
        await client.close()

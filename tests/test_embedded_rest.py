"""The embedded upstream's REST surface: bad input of every class answers a Qdrant-shaped 4xx/5xx,
writes nothing, and the server keeps serving; auth; legacy endpoints; service endpoints;
concurrency. Raw HTTP through httpx (a qdrant-client dependency), so nothing client-side hides
the status codes and bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from qdrant_client import AsyncQdrantClient, models

from conftest import Upstream
from workload import assert_congruent
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.server import EmbeddedUpstream

C = "/collections/{name}"
VEC = {"size": 4, "distance": "Cosine"}


@pytest.fixture
async def http(upstream: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=upstream.rest_url, timeout=30) as client:
        yield client


@pytest.fixture
async def col(http: httpx.AsyncClient, prefix: str) -> str:
    """A collection with points 1..3 (4-d, cosine)."""
    name = f"{prefix}c"
    r = await http.put(f"/collections/{name}", json={"vectors": VEC})
    assert r.status_code == 200, r.text
    points = [{"id": i, "vector": [1.0, float(i), 0.0, 1.0], "payload": {"i": i}} for i in (1, 2, 3)]
    r = await http.put(f"/collections/{name}/points?wait=true", json={"points": points})
    assert r.json()["result"]["status"] == "completed"
    return name


def assert_error(r: httpx.Response, status: int, contains: str) -> None:
    """Qdrant's error shape: ``{"status": {"error": msg}, "time": t}`` with ``status``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"status", "time"}, body
    assert isinstance(body["time"], float)
    assert contains in body["status"]["error"], body


async def assert_unchanged(http: httpx.AsyncClient, name: str) -> None:
    """The server still answers, and the collection still holds exactly points 1..3 as written."""
    r = await http.post(f"/collections/{name}/points/scroll", json={"with_vector": True})
    assert r.status_code == 200, r.text
    points = r.json()["result"]["points"]
    assert [p["id"] for p in points] == [1, 2, 3]
    assert [p["payload"] for p in points] == [{"i": 1}, {"i": 2}, {"i": 3}]


BAD_INPUT = [
    # (case, method, path, raw body, status, message fragment)
    ("malformed json", "PUT", "/points", b'{"points": [{"id": 9,', 400, "Json deserialize error"),
    ("not an object", "POST", "/points/query", b"[1, 2]", 400, "Json deserialize error"),
    ("unknown field", "PUT", "/points", b'{"points": [{"id": 9, "vector": [1,2,3,4], "colour": 1}]}',
     400, "unknown field `colour`"),
    ("unknown top-level field", "POST", "/points/scroll", b'{"limitt": 3}', 400, "unknown field `limitt`"),
    ("wrong vector size, second of two", "PUT", "/points",
     b'{"points": [{"id": 1, "vector": [9,9,9,9], "payload": {"i": 0}}, {"id": 9, "vector": [1,2,3]}]}',
     400, "expected dim: 4, got 3"),
    ("wrong vector size inside a batch update", "POST", "/points/batch",
     b'{"operations": [{"upsert": {"points": [{"id": 2, "vector": [0,0,0,1], "payload": {}}]}},'
     b' {"upsert": {"points": [{"id": 9, "vector": [1]}]}}]}', 400, "dim"),
    ("unknown point", "GET", "/points/77", b"", 404, "No point with id 77 found"),
    ("bad point id", "GET", "/points/not-a-uuid", b"", 400, "not-a-uuid"),
    ("zero limit", "POST", "/points/query", b'{"query": [1,2,3,4], "limit": 0}', 422,
     "must be 1 or larger"),
    ("zero group size", "POST", "/points/query/groups",
     b'{"query": [1,2,3,4], "group_by": "i", "group_size": 0}', 422, "Validation error in JSON body"),
    ("unknown vector name", "POST", "/points/query", b'{"query": [1,2,3,4], "using": "nope"}', 400, "nope"),
    ("point id beyond u64", "PUT", "/points",
     b'{"points": [{"id": 18446744073709551616, "vector": [1,2,3,4]}]}', 400, "not a valid point ID"),
    ("negative point id in a batch", "POST", "/points/batch",
     b'{"operations": [{"upsert": {"points": [{"id": -1, "vector": [1,2,3,4]}]}}]}', 400,
     "not a valid point ID"),
    ("query of the wrong dimension", "POST", "/points/query", b'{"query": [1,2,3]}', 400,
     "Vector dimension error: expected dim: 4, got 3"),
    ("inference object in a batch", "POST", "/points/batch",
     b'{"operations": [{"upsert": {"points": [{"id": 9, "vector": {"text": "hi", "model": "m"}}]}}]}',
     500, "InferenceService is not initialized"),
]


@pytest.mark.parametrize("case,method,path,body,status,fragment", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
async def test_bad_input_is_refused_cleanly(
    http: httpx.AsyncClient, col: str, case: str, method: str, path: str, body: bytes, status: int, fragment: str
) -> None:
    r = await http.request(
        method, f"/collections/{col}{path}?wait=true", content=body or None,
        headers={"content-type": "application/json"},
    )
    assert_error(r, status, fragment)
    await assert_unchanged(http, col)


async def test_unknown_collection_is_404(http: httpx.AsyncClient, prefix: str) -> None:
    for method, path, body in [
        ("GET", "", None),
        ("POST", "/points/query", {"query": [1, 2, 3, 4]}),
        ("PUT", "/points", {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}),
        ("POST", "/points/count", {}),
    ]:
        r = await http.request(method, f"/collections/{prefix}missing{path}", json=body)
        assert_error(r, 404, f"Collection `{prefix}missing` doesn't exist!")
    r = await http.get(f"/collections/{prefix}missing/exists")
    assert r.json()["result"] == {"exists": False}


async def test_existing_collection_is_409(http: httpx.AsyncClient, col: str) -> None:
    r = await http.put(f"/collections/{col}", json={"vectors": VEC})
    assert_error(r, 409, "already exists")
    await assert_unchanged(http, col)


@pytest.mark.embedded_only
async def test_unsupported_operations_answer_501(http: httpx.AsyncClient, col: str) -> None:
    for method, path in [
        # collection and full-storage snapshots are served (test_embedded_snapshots,
        # test_embedded_full_snapshots); shard snapshots are not
        ("GET", f"/collections/{col}/shards/0/snapshots"),
        ("GET", "/cluster"),
        ("PUT", f"/collections/{col}/shards"),
    ]:
        r = await http.request(method, path, json={} if method != "GET" else None)
        assert_error(r, 501, "not supported by the embedded upstream")
    r = await http.put(
        f"/collections/{col}/points", json={"points": [{"id": 5, "vector": [1, 1, 1, 1]}], "shard_key": "x"}
    )
    assert_error(r, 501, "shard keys")
    await assert_unchanged(http, col)


async def test_unknown_path_and_method(http: httpx.AsyncClient, col: str) -> None:
    assert_error(await http.get("/no/such/path"), 404, "")
    assert_error(await http.delete(f"/collections/{col}/points/scroll"), 405, "")
    await assert_unchanged(http, col)


@pytest.mark.embedded_only
async def test_huge_body_is_413_and_server_keeps_serving(prefix: str) -> None:
    limit = 256 * 1024
    async with EmbeddedUpstream(max_body=limit) as server:
        async with httpx.AsyncClient(base_url=server.rest_url, timeout=30) as http:
            r = await http.put(f"/collections/{prefix}big", json={"vectors": VEC})
            assert r.status_code == 200
            points = [{"id": i, "vector": [0.5, 0.5, 0.5, 0.5], "payload": {"pad": "x" * 100}} for i in range(4000)]
            body = orjson.dumps({"points": points})
            assert len(body) > limit
            r = await http.put(f"/collections/{prefix}big/points", content=body)
            assert_error(r, 413, "exceeds")
            r = await http.post(f"/collections/{prefix}big/points/count", json={})
            assert r.json()["result"] == {"count": 0}


@pytest.mark.embedded_only
async def test_api_keys_401_and_read_only_403(prefix: str) -> None:
    keys = ApiKeys(api_key="full-key", read_only_api_key="ro-key")
    async with EmbeddedUpstream(keys=keys) as server:
        async with httpx.AsyncClient(base_url=server.rest_url, timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200  # probes need no key
            assert_error(await http.get("/collections"), 401, "API key")
            assert_error(await http.get("/collections", headers={"api-key": "wrong"}), 401, "Invalid API key")
            create = {"vectors": VEC}
            r = await http.put(f"/collections/{prefix}a", json=create, headers={"api-key": "ro-key"})
            assert_error(r, 403, "Write access denied")
            r = await http.put(
                f"/collections/{prefix}a", json=create, headers={"authorization": "Bearer full-key"}
            )
            assert r.status_code == 200
            r = await http.get(f"/collections/{prefix}a", headers={"api-key": "ro-key"})
            assert r.status_code == 200 and r.json()["result"]["points_count"] == 0
            r = await http.post(
                f"/collections/{prefix}a/points/query", json={"query": [1, 0, 0, 0]}, headers={"api-key": "ro-key"}
            )
            assert r.status_code == 200 and r.json()["result"] == {"points": []}


async def test_service_endpoints(http: httpx.AsyncClient) -> None:
    root = (await http.get("/")).json()
    assert root["title"] == "qdrant - vector search engine"
    assert len(root["version"].split(".")) == 3
    for probe in ("/healthz", "/livez", "/readyz"):
        r = await http.get(probe)
        assert r.status_code == 200 and "check passed" in r.text
    r = await http.get("/metrics")
    assert r.status_code == 200 and "collections_total" in r.text
    r = await http.get("/telemetry")
    assert r.status_code == 200 and "collections" in r.json()["result"]


async def test_write_envelope_and_operation_ids(http: httpx.AsyncClient, col: str) -> None:
    ids = []
    for i in range(3):
        r = await http.post(
            f"/collections/{col}/points/payload?wait=true", json={"payload": {"k": i}, "points": [1]}
        )
        body = r.json()
        assert set(body) == {"result", "status", "time"} and body["status"] == "ok"
        assert body["result"]["status"] == "completed"
        ids.append(body["result"]["operation_id"])
    assert ids == sorted(ids) and len(set(ids)) == 3


@pytest.mark.embedded_only
async def test_legacy_endpoints_match_query_api(http: httpx.AsyncClient, col: str) -> None:
    """search/recommend/discover (single, batch, groups) answer what the query API answers."""
    base = f"/collections/{col}/points"

    async def result(path: str, body: dict[str, Any]) -> Any:
        r = await http.post(base + path, json=body)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    q = [1.0, 2.0, 0.0, 1.0]
    query = await result("/query", {"query": q, "limit": 2, "with_payload": True})
    search = await result("/search", {"vector": q, "limit": 2, "with_payload": True})
    assert search == query["points"]
    assert await result("/search/batch", {"searches": [{"vector": q, "limit": 2, "with_payload": True}]}) == [search]
    rec = await result("/recommend", {"positive": [1], "limit": 5})
    rec_q = await result("/query", {"query": {"recommend": {"positive": [1]}}, "limit": 5})
    assert rec == rec_q["points"] and 1 not in [p["id"] for p in rec]
    assert await result("/recommend/batch", {"searches": [{"positive": [1], "limit": 5}]}) == [rec]
    disc = await result("/discover", {"target": 2, "context": [{"positive": 3, "negative": 1}], "limit": 3})
    disc_q = await result(
        "/query", {"query": {"discover": {"target": 2, "context": [{"positive": 3, "negative": 1}]}}, "limit": 3}
    )
    assert disc == disc_q["points"]
    assert await result("/discover/batch", {"searches": [{"target": 2, "context": [{"positive": 3, "negative": 1}], "limit": 3}]}) == [disc]
    groups = await result("/search/groups", {"vector": q, "limit": 3, "group_by": "i", "group_size": 1})
    groups_q = await result("/query/groups", {"query": q, "limit": 3, "group_by": "i", "group_size": 1})
    assert_congruent(groups, groups_q)
    assert len(groups["groups"]) == 3
    rgroups = await result("/recommend/groups", {"positive": [1], "limit": 3, "group_by": "i", "group_size": 1})
    rgroups_q = await result(
        "/query/groups", {"query": {"recommend": {"positive": [1]}}, "limit": 3, "group_by": "i", "group_size": 1}
    )
    assert_congruent(rgroups, rgroups_q)
    assert len(rgroups["groups"]) == 2
    r = await http.post(base + "/search", json={"vector": q, "limit": 2, "bogus": 1})
    assert_error(r, 400, "unknown field `bogus`")


async def test_concurrent_upserts_and_queries(upstream: Upstream, prefix: str) -> None:
    """200 writes and 200 queries in flight together (at most 50 at a time): all succeed."""
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=60)
    name = f"{prefix}conc"
    try:
        await client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
        gate = asyncio.Semaphore(50)

        async def write(i: int) -> None:
            async with gate:
                await client.upsert(name, [models.PointStruct(id=i, vector=[1.0, i % 7, 0.0, 1.0], payload={"i": i})])

        async def read(i: int) -> int:
            async with gate:
                return len((await client.query_points(name, query=[1.0, 1.0, 1.0, 1.0], limit=3)).points)

        writes = asyncio.gather(*[write(i) for i in range(200)])
        reads = asyncio.gather(*[read(i) for i in range(200)])
        _, counts = await asyncio.wait_for(asyncio.gather(writes, reads), timeout=60)
        assert len(counts) == 200 and all(n <= 3 for n in counts)
        assert (await client.count(name, exact=True)).count == 200
        got = await client.retrieve(name, ids=list(range(200)))
        assert sorted((p.payload or {})["i"] for p in got) == list(range(200))
    finally:
        await client.close()


async def test_collection_admin_and_matrix(http: httpx.AsyncClient, col: str) -> None:
    """PATCH metadata, vector names, payload indexes, matrices: Qdrant's shapes (checked by the spec hook)."""
    base = f"/collections/{col}"
    r = await http.patch(base, json={"metadata": {"owner": "tests"}})
    assert r.status_code == 200 and r.json()["result"] is True
    r = await http.put(f"{base}/index?wait=true", json={"field_name": "i", "field_schema": "integer"})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed"
    r = await http.delete(f"{base}/index/i?wait=true")
    assert r.status_code == 200
    r = await http.put(f"{base}/vectors/extra?wait=true", json={"dense": {"size": 2, "distance": "Dot"}})
    assert r.status_code == 200, r.text
    info = (await http.get(base)).json()["result"]
    assert info["config"]["metadata"] == {"owner": "tests"}
    r = await http.delete(f"{base}/vectors/extra?wait=true")
    assert r.status_code == 200, r.text
    r = await http.post(f"{base}/points/search/matrix/pairs", json={"sample": 3, "limit": 1})
    pairs = r.json()["result"]["pairs"]
    assert r.status_code == 200 and len(pairs) == 3
    assert all({p["a"], p["b"]} <= {1, 2, 3} and p["a"] != p["b"] for p in pairs)
    r = await http.post(f"{base}/points/search/matrix/offsets", json={"sample": 3, "limit": 2})
    offsets = r.json()["result"]
    assert r.status_code == 200 and sorted(offsets["ids"]) == [1, 2, 3] and len(offsets["scores"]) == 6
    r = await http.post(f"{base}/points/count", json={"exact": True})
    assert r.json()["result"] == {"count": 3}


async def test_validation_errors_answer_422(http: httpx.AsyncClient, prefix: str) -> None:
    """A body that deserialises but breaks Qdrant's validation rules is a 422 in Qdrant's words
    (a body that does not deserialise is a 400, see the table above)."""
    r = await http.put(f"/collections/{prefix}v", json={"vectors": {"size": 0, "distance": "Dot"}})
    assert_error(r, 422, "Validation error in JSON body: [vectors.size: value 0 invalid, must be from 1 to 65536]")
    r = await http.get(f"/collections/{prefix}v/exists")
    assert r.json()["result"] == {"exists": False}

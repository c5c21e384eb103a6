"""The embedded upstream's gRPC front end, driven by the official qdrant-client and raw stubs.

A real ``grpc.aio`` server on 127.0.0.1:0 (its own event loop on a thread, so the synchronous
client can be used from the test) serves an in-memory :class:`Engine`. The same workload runs
against it with ``QdrantClient(prefer_grpc=True)`` and against ``QdrantClient(":memory:")``;
results must agree (ids and payloads exactly, scores within 1e-5). Raw stubs check what the
client cannot reach: legacy calls, status codes, API keys and the standard health service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.grpc import collections_pb2, points_pb2, snapshots_service_pb2
from qdrant_client.grpc import collections_service_pb2_grpc as collections_grpc
from qdrant_client.grpc import points_service_pb2_grpc as points_grpc
from qdrant_client.grpc import qdrant_common_pb2 as common
from qdrant_client.grpc import snapshots_service_pb2_grpc as snapshots_grpc

from switchyard.proxy.embedded import grpc_legacy, grpc_requests
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.engines import choose, make_engine
from switchyard.proxy.embedded.grpc_app import SERVER_OPTIONS, add_services
from switchyard.proxy.errors import BadRequest

DIM = 4
UUID_ID = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"


class ServerThread:
    """A grpc.aio server with :func:`add_services` on its own loop and thread; stop() drains it."""

    def __init__(self, keys: ApiKeys = ApiKeys()) -> None:
        self.keys = keys
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(choose()[0], None)  # SWITCHYARD_UPSTREAM_ENGINE picks it
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),))

    async def _serve(self) -> None:
        server = grpc.aio.server(options=SERVER_OPTIONS)
        add_services(server, self.engine, self.keys)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(grace=1)

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        return self

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()
        self.engine.close()

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.port}")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    srv = ServerThread().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch


def grpc_client(server: ServerThread, **kwargs: Any) -> QdrantClient:
    return QdrantClient(
        host="127.0.0.1",
        grpc_port=server.port,
        prefer_grpc=True,
        check_compatibility=False,
        timeout=60,  # the Edge engine's first collection starts its worker process
        **kwargs,
    )


# --- the shared workload ------------------------------------------------------------------


def vec(i: int) -> list[float]:
    return [float(i % 5) + 0.5, float(i % 3) - 1.0, 1.0 / (i + 1), float(i % 2)]


def sparse(i: int) -> models.SparseVector:
    # distinct values: engines order equal scores differently
    return models.SparseVector(indices=[i % 7, 7 + i % 3], values=[1.0 + i, 0.5 + i / 64])


def points(n: int) -> list[models.PointStruct]:
    out = [
        models.PointStruct(
            id=i,
            vector=vec(i),
            payload={"group": f"g{i % 3}", "n": i, "meta": {"tag": "x" if i % 2 else "y"}},
        )
        for i in range(1, n + 1)
    ]
    out.append(models.PointStruct(id=UUID_ID, vector=vec(99), payload={"group": "g0", "n": 99}))
    return out


def dump(value: Any) -> Any:
    """A comparable form of a client result: models as dicts, scores rounded to 1e-5."""
    if isinstance(value, models.BaseModel):
        return dump(value.model_dump())
    if isinstance(value, dict):
        # point versions are each server's own operation counters
        return {k: (round(v, 5) if k == "score" else dump(v)) for k, v in value.items() if k != "version"}
    if isinstance(value, (list, tuple)):
        items = [dump(v) for v in value]
        if items and all(isinstance(v, dict) and "score" in v and "id" in v for v in items):
            # Qdrant promises no order among equal scores (one shard keeps whichever tied point
            # its heap met first): scored hits compare by score, ties by id
            items.sort(key=lambda v: (-(v["score"] or 0.0), str(v["id"])))
        return items
    if isinstance(value, float):
        return round(value, 5)
    return value


def workload(client: QdrantClient, name: str) -> list[Any]:
    """Every covered operation once; returns what the client returned, in order."""
    out: list[Any] = []
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    out.append(client.collection_exists(name))
    # Qdrant facets only over an indexed field (the local engine does without)
    client.create_payload_index(name, "group", field_schema=models.PayloadSchemaType.KEYWORD)
    out.append(client.upsert(name, points(20)).status)
    out.append(client.query_points(name, query=vec(3), limit=5, with_payload=True).points)
    out.append(client.query_points(name, query=3, limit=3, with_vectors=True).points)
    page, offset = client.scroll(name, limit=7)
    out.append((page, offset))
    out.append(client.scroll(name, limit=7, offset=offset))
    out.append(client.count(name, count_filter=models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="g1"))])))
    out.append(client.facet(name, key="group"))
    out.append(client.query_points_groups(name, query=vec(4), group_by="group", limit=3, group_size=2).groups)
    # payload operations, nested key
    client.set_payload(name, payload={"tag": "z", "deep": 1}, points=[1, 2], key="meta")
    client.overwrite_payload(name, payload={"only": True}, points=[3])
    client.delete_payload(name, keys=["n"], points=[4])
    client.clear_payload(name, points_selector=[5])
    out.append(client.retrieve(name, ids=[1, 2, 3, 4, 5, UUID_ID]))
    # conditional upserts: insert_only keeps 6; update_filter only touches points it matches
    client.upsert(name, [models.PointStruct(id=6, vector=vec(60), payload={"n": -6}), models.PointStruct(id=100, vector=vec(100), payload={"n": 100})], update_mode=models.UpdateMode.INSERT_ONLY)
    client.upsert(name, [models.PointStruct(id=7, vector=vec(70), payload={"n": -7}), models.PointStruct(id=8, vector=vec(80), payload={"n": -8})], update_filter=models.Filter(must=[models.FieldCondition(key="n", match=models.MatchValue(value=7))]))
    out.append(client.retrieve(name, ids=[6, 7, 8, 100], with_vectors=True))
    client.update_vectors(name, [models.PointVectors(id=9, vector=vec(90))])
    client.delete(name, points_selector=models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="g2"))])))
    client.delete(name, points_selector=[10, 11])
    client.batch_update_points(name, [models.UpsertOperation(upsert=models.PointsList(points=[models.PointStruct(id=200, vector=vec(200), payload={"b": 1})])), models.SetPayloadOperation(set_payload=models.SetPayload(payload={"c": 2}, points=[200]))])
    out.append(client.scroll(name, limit=100, with_vectors=True))
    out.append(client.search_matrix_pairs(name, sample=100, limit=2))
    out.append(client.search_matrix_offsets(name, sample=100, limit=2))
    # aliases
    client.update_collection_aliases([models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=f"{name}-alias"))])
    out.append(client.get_collection_aliases(name))
    out.append(client.query_points(f"{name}-alias", query=vec(1), limit=2).points)
    client.update_collection_aliases([models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=f"{name}-alias"))])
    out.append(client.get_aliases())
    client.create_payload_index(name, "group", field_schema=models.PayloadSchemaType.KEYWORD)
    client.delete_payload_index(name, "group")
    out.append(client.get_collection(name).points_count)
    return out


def named_workload(client: QdrantClient, name: str) -> list[Any]:
    """Named dense + sparse vectors: prefetch with fusion, named queries, vector deletion."""
    client.create_collection(
        name,
        vectors_config={"dense": models.VectorParams(size=DIM, distance=models.Distance.DOT)},
        sparse_vectors_config={"text": models.SparseVectorParams()},
    )
    client.upsert(name, [models.PointStruct(id=i, vector={"dense": vec(i), "text": sparse(i)}, payload={"i": i}) for i in range(1, 16)])
    out: list[Any] = []
    out.append(client.query_points(name, prefetch=[models.Prefetch(query=vec(2), using="dense", limit=8), models.Prefetch(query=sparse(2), using="text", limit=8)], query=models.FusionQuery(fusion=models.Fusion.RRF), limit=5).points)
    out.append(client.query_points(name, query=sparse(5), using="text", limit=3).points)
    out.append(client.query_batch_points(name, [models.QueryRequest(query=vec(1), using="dense", limit=2), models.QueryRequest(query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2], negative=[3])), using="dense", limit=3)]))
    client.delete_vectors(name, vectors=["text"], points=[1, 2])
    out.append(client.retrieve(name, ids=[1, 2, 3], with_vectors=True))
    return out


def test_workload_matches_local_engine(server: ServerThread) -> None:
    remote, local = grpc_client(server), QdrantClient(":memory:")
    try:
        got, want = workload(remote, "wl"), workload(local, "wl")
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert dump(g) == dump(w), f"step {i}"
        assert dump(named_workload(remote, "named")) == dump(named_workload(local, "named"))
    finally:
        remote.close()
        local.close()


def test_update_filter_and_insert_only_take_effect(server: ServerThread) -> None:
    """Guards the comparison above against both sides ignoring the conditions alike."""
    client = grpc_client(server)
    try:
        client.create_collection("cond", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        client.upsert("cond", [models.PointStruct(id=1, vector=vec(1), payload={"v": 1})])
        client.upsert("cond", [models.PointStruct(id=1, vector=vec(1), payload={"v": 2})], update_mode=models.UpdateMode.INSERT_ONLY)
        client.upsert("cond", [models.PointStruct(id=1, vector=vec(1), payload={"v": 3})], update_filter=models.Filter(must=[models.FieldCondition(key="v", match=models.MatchValue(value=9))]))
        assert client.retrieve("cond", [1])[0].payload == {"v": 1}
        client.upsert("cond", [models.PointStruct(id=1, vector=vec(1), payload={"v": 4})], update_filter=models.Filter(must=[models.FieldCondition(key="v", match=models.MatchValue(value=1))]))
        assert client.retrieve("cond", [1])[0].payload == {"v": 4}
    finally:
        client.close()


async def test_async_client(server: ServerThread) -> None:
    client = AsyncQdrantClient(host="127.0.0.1", grpc_port=server.port, prefer_grpc=True, check_compatibility=False)
    try:
        await client.create_collection("async", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.EUCLID))
        await client.upsert("async", points(6))
        hits = (await client.query_points("async", query=vec(2), limit=2)).points
        assert [h.id for h in hits][0] == 2
        assert (await client.count("async")).count == 7
        info = await client.info()
        assert info.title == "qdrant - vector search engine"
    finally:
        await client.close()


def test_responses_have_time_and_completed_status(channel: grpc.Channel) -> None:
    cols, pts = collections_grpc.CollectionsStub(channel), points_grpc.PointsStub(channel)
    created = cols.Create(collections_pb2.CreateCollection(collection_name="shape", vectors_config=collections_pb2.VectorsConfig(params=collections_pb2.VectorParams(size=2, distance=collections_pb2.Cosine))))
    assert created.result is True and created.time > 0
    point = points_pb2.PointStruct(id=common.PointId(num=1), vectors=points_pb2.Vectors(vector=points_pb2.Vector(dense=points_pb2.DenseVector(data=[1.0, 0.0]))))
    upserted = pts.Upsert(points_pb2.UpsertPoints(collection_name="shape", wait=True, points=[point]))
    assert upserted.result.status == points_pb2.Completed
    assert upserted.result.HasField("operation_id") and upserted.time > 0
    assert not upserted.HasField("usage")
    again = pts.Upsert(points_pb2.UpsertPoints(collection_name="shape", points=[point]))  # no wait
    assert again.result.status == points_pb2.Acknowledged
    assert again.result.operation_id > upserted.result.operation_id
    batch = pts.UpdateBatch(points_pb2.UpdateBatchPoints(collection_name="shape", wait=True, operations=[points_pb2.PointsUpdateOperation(upsert=points_pb2.PointsUpdateOperation.PointStructList(points=[point]))] * 2))
    assert [r.status for r in batch.result] == [points_pb2.Completed] * 2
    queried = pts.Query(points_pb2.QueryPoints(collection_name="shape", query=points_pb2.Query(nearest=points_pb2.VectorInput(dense=points_pb2.DenseVector(data=[1.0, 0.0])))))
    assert [p.id.num for p in queried.result] == [1] and not queried.HasField("usage")
    assert dict(queried.result[0].payload) == {}  # the query API returns no payload by default
    got = pts.Get(points_pb2.GetPoints(collection_name="shape", ids=[common.PointId(num=1)]))
    assert len(got.result) == 1 and got.time > 0


# --- legacy calls, through raw stubs ---------------------------------------------------------


def legacy_setup(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config={"v": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    client.upsert(name, [models.PointStruct(id=p.id, vector={"v": cast(list[float], p.vector)}, payload=p.payload) for p in points(12)])


def test_legacy_calls_match_query_api(server: ServerThread, channel: grpc.Channel) -> None:
    remote, local = grpc_client(server), QdrantClient(":memory:")
    legacy_setup(remote, "legacy")
    legacy_setup(local, "legacy")
    stub = points_grpc.PointsStub(channel)
    with_payload = points_pb2.WithPayloadSelector(enable=True)
    ids = lambda *i: [common.PointId(num=n) for n in i]  # noqa: E731
    try:
        search = stub.Search(points_pb2.SearchPoints(collection_name="legacy", vector=vec(3), vector_name="v", limit=4, with_payload=with_payload))
        want = local.query_points("legacy", query=vec(3), using="v", limit=4).points
        assert [(p.id.num or p.id.uuid, round(p.score, 5)) for p in search.result] == [(p.id, round(p.score, 5)) for p in want]
        assert {p.id.num: dict(p.payload)["n"].integer_value for p in search.result if p.id.num} == {p.id: (p.payload or {})["n"] for p in want if isinstance(p.id, int)}

        rec = stub.Recommend(points_pb2.RecommendPoints(collection_name="legacy", positive=ids(1, 2), negative=ids(5), using="v", limit=3))
        want = local.query_points("legacy", query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2], negative=[5])), using="v", limit=3).points
        assert [(p.id.num, round(p.score, 5)) for p in rec.result] == [(p.id, round(p.score, 5)) for p in want]
        assert not {1, 2, 5} & {p.id.num for p in rec.result}
        assert all(len(p.payload) == 0 for p in rec.result)  # legacy default: no payload

        batch = stub.SearchBatch(points_pb2.SearchBatchPoints(collection_name="legacy", search_points=[points_pb2.SearchPoints(collection_name="legacy", vector=vec(i), vector_name="v", limit=2) for i in (1, 2)]))
        assert [[p.id.num for p in r.result] for r in batch.result] == [[p.id for p in local.query_points("legacy", query=vec(i), using="v", limit=2).points] for i in (1, 2)]

        groups = stub.SearchGroups(points_pb2.SearchPointGroups(collection_name="legacy", vector=vec(4), vector_name="v", group_by="group", limit=2, group_size=2))
        want_groups = local.query_points_groups("legacy", query=vec(4), using="v", group_by="group", limit=2, group_size=2).groups
        assert [(g.id.string_value, [h.id.num for h in g.hits]) for g in groups.result.groups] == [(g.id, [h.id for h in g.hits]) for g in want_groups]

        disc = stub.Discover(points_pb2.DiscoverPoints(collection_name="legacy", target=points_pb2.TargetVector(single=points_pb2.VectorExample(id=common.PointId(num=1))), context=[points_pb2.ContextExamplePair(positive=points_pb2.VectorExample(id=common.PointId(num=2)), negative=points_pb2.VectorExample(id=common.PointId(num=3)))], using="v", limit=3))
        want = local.query_points("legacy", query=models.DiscoverQuery(discover=models.DiscoverInput(target=1, context=[models.ContextPair(positive=2, negative=3)])), using="v", limit=3).points
        assert [p.id.num for p in disc.result] == [p.id for p in want]
    finally:
        remote.close()
        local.close()


# --- status codes ----------------------------------------------------------------------------


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_status_codes(channel: grpc.Channel) -> None:
    cols, pts = collections_grpc.CollectionsStub(channel), points_grpc.PointsStub(channel)
    snaps = snapshots_grpc.SnapshotsStub(channel)
    cols.Create(collections_pb2.CreateCollection(collection_name="codes", vectors_config=collections_pb2.VectorsConfig(params=collections_pb2.VectorParams(size=2, distance=collections_pb2.Dot))))
    dense = lambda *d: points_pb2.Vectors(vector=points_pb2.Vector(dense=points_pb2.DenseVector(data=list(d))))  # noqa: E731
    cases: list[tuple[str, Callable[[], Any], grpc.StatusCode, str]] = [
        ("unknown collection", lambda: cols.Get(collections_pb2.GetCollectionInfoRequest(collection_name="nope")), grpc.StatusCode.NOT_FOUND, "Collection `nope` doesn't exist!"),
        ("existing collection", lambda: cols.Create(collections_pb2.CreateCollection(collection_name="codes", vectors_config=collections_pb2.VectorsConfig(params=collections_pb2.VectorParams(size=2, distance=collections_pb2.Dot)))), grpc.StatusCode.ALREADY_EXISTS, "already exists"),
        ("wrong dimension", lambda: pts.Upsert(points_pb2.UpsertPoints(collection_name="codes", points=[points_pb2.PointStruct(id=common.PointId(num=1), vectors=dense(1.0, 2.0, 3.0))])), grpc.StatusCode.INVALID_ARGUMENT, ""),
        ("unset oneof", lambda: pts.Delete(points_pb2.DeletePoints(collection_name="codes", points=points_pb2.PointsSelector())), grpc.StatusCode.INVALID_ARGUMENT, "PointsSelector"),
        ("missing selector", lambda: pts.ClearPayload(points_pb2.ClearPayloadPoints(collection_name="codes")), grpc.StatusCode.INVALID_ARGUMENT, "selector"),
        ("limit 0", lambda: pts.Search(points_pb2.SearchPoints(collection_name="codes", vector=[1.0, 0.0], limit=0)), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        ("unknown point", lambda: pts.UpdateVectors(points_pb2.UpdatePointVectors(collection_name="codes", points=[points_pb2.PointVectors(id=common.PointId(num=404), vectors=dense(1.0, 0.0))])), grpc.StatusCode.NOT_FOUND, "404"),
        # this server has no snapshot store (test_embedded_full_snapshots has one)
        ("snapshots", lambda: snaps.ListFull(snapshots_service_pb2.ListFullSnapshotsRequest()), grpc.StatusCode.UNIMPLEMENTED, "Snapshots are not available"),
        ("shard key", lambda: cols.CreateShardKey(collections_pb2.CreateShardKeyRequest(collection_name="codes")), grpc.StatusCode.UNIMPLEMENTED, "Shard keys"),
        ("shard selector", lambda: pts.Count(points_pb2.CountPoints(collection_name="codes", shard_key_selector=points_pb2.ShardKeySelector(shard_keys=[collections_pb2.ShardKey(keyword="a")]))), grpc.StatusCode.UNIMPLEMENTED, "shard keys"),
        ("query of the wrong dimension", lambda: pts.Query(points_pb2.QueryPoints(collection_name="codes", query=points_pb2.Query(nearest=points_pb2.VectorInput(dense=points_pb2.DenseVector(data=[1.0, 2.0, 3.0]))))), grpc.StatusCode.INVALID_ARGUMENT, "Vector dimension error: expected dim: 2, got 3"),
        ("inference object in a batch", lambda: pts.UpdateBatch(points_pb2.UpdateBatchPoints(collection_name="codes", operations=[points_pb2.PointsUpdateOperation(upsert=points_pb2.PointsUpdateOperation.PointStructList(points=[points_pb2.PointStruct(id=common.PointId(num=1), vectors=points_pb2.Vectors(vector=points_pb2.Vector(document=points_pb2.Document(text="hi", model="m"))))]))])), grpc.StatusCode.INTERNAL, "InferenceService is not initialized"),
        ("cluster", lambda: cols.CollectionClusterInfo(collections_pb2.CollectionClusterInfoRequest(collection_name="codes")), grpc.StatusCode.UNIMPLEMENTED, "cluster"),
    ]
    for label, call, code, words in cases:
        got_code, details = code_of(call)
        assert (label, got_code) == (label, code), details
        assert words in details, (label, details)


def test_reads_without_payload(server: ServerThread) -> None:
    """Scroll and retrieve with ``with_payload=False`` answer points with an empty payload (the
    REST model's ``payload=None`` once broke the gRPC conversion)."""
    client = grpc_client(server)
    client.create_collection("nopayload", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    client.upsert("nopayload", points(3))
    scrolled, _ = client.scroll("nopayload", with_payload=False, limit=2)
    assert [(p.id, p.payload) for p in scrolled] == [(1, {}), (2, {})]
    got = client.retrieve("nopayload", [3], with_payload=False)
    assert [(p.id, p.payload, p.vector) for p in got] == [(3, {}, None)]
    client.close()


def test_api_keys() -> None:
    srv = ServerThread(ApiKeys(api_key="full", read_only_api_key="ro")).start()
    try:
        with srv.channel() as ch:
            cols = collections_grpc.CollectionsStub(ch)
            create = collections_pb2.CreateCollection(collection_name="auth", vectors_config=collections_pb2.VectorsConfig(params=collections_pb2.VectorParams(size=2, distance=collections_pb2.Dot)))
            listing = collections_pb2.ListCollectionsRequest()
            health = ch.unary_unary("/grpc.health.v1.Health/Check")
            assert code_of(lambda: cols.List(listing))[0] == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: cols.List(listing, metadata=[("api-key", "bad")]))[0] == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: health(b""))[0] == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: cols.Create(create, metadata=[("api-key", "ro")]))[0] == grpc.StatusCode.PERMISSION_DENIED
            assert cols.List(listing, metadata=[("api-key", "ro")]).collections == []
            assert cols.Create(create, metadata=[("authorization", "Bearer full")]).result is True
            assert [c.name for c in cols.List(listing, metadata=[("api-key", "ro")]).collections] == ["auth"]
        client = grpc_client(srv, api_key="ro", https=False)
        try:
            assert client.collection_exists("auth")
        finally:
            client.close()
    finally:
        srv.stop()


def test_health_services(server: ServerThread, channel: grpc.Channel) -> None:
    serving = b"\x08\x01"
    assert channel.unary_unary("/grpc.health.v1.Health/Check")(b"") == serving
    assert list(channel.unary_stream("/grpc.health.v1.Health/Watch")(b"")) == [serving]
    client = grpc_client(server)
    try:
        assert client.info().title == "qdrant - vector search engine"
    finally:
        client.close()


# --- pure translations, as tables ------------------------------------------------------------


def test_legacy_search_vector_table() -> None:
    cases = [
        (points_pb2.SearchPoints(vector=[1.0, 2.0]), [1.0, 2.0]),
        (points_pb2.SearchPoints(vector=[1.0], vector_name="d"), grpc_legacy.legacy.NamedVector(name="d", vector=[1.0])),
        (
            points_pb2.SearchPoints(vector=[0.5], vector_name="s", sparse_indices=points_pb2.SparseIndices(data=[3])),
            grpc_legacy.legacy.NamedSparseVector(name="s", vector=models.SparseVector(indices=[3], values=[0.5])),
        ),
    ]
    for request, expected in cases:
        assert grpc_legacy.search_vector(request) == expected


def test_request_defaults_table() -> None:
    scroll = grpc_requests.scroll_kwargs(points_pb2.ScrollPoints())
    assert (scroll["limit"], scroll["with_payload"], scroll["with_vectors"], scroll["offset"]) == (10, True, False, None)
    query = grpc_requests.query_kwargs(points_pb2.QueryPoints())
    assert (query["limit"], query["with_payload"], query["with_vectors"]) == (10, False, False)
    groups = grpc_requests.query_groups_kwargs(points_pb2.QueryPointGroups(group_by="g"))
    assert (groups["limit"], groups["group_size"], groups["with_payload"]) == (10, 3, False)
    index_cases = [
        (points_pb2.CreateFieldIndexCollection(field_type=points_pb2.FieldTypeKeyword), models.PayloadSchemaType.KEYWORD),
        (points_pb2.CreateFieldIndexCollection(field_type=points_pb2.FieldTypeUuid), models.PayloadSchemaType.UUID),
        (
            points_pb2.CreateFieldIndexCollection(field_type=points_pb2.FieldTypeText, field_index_params=collections_pb2.PayloadIndexParams(integer_index_params=collections_pb2.IntegerIndexParams(lookup=True))),
            models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True),
        ),
    ]
    for request, expected in index_cases:
        assert grpc_requests.index_schema(request) == expected
    for bad in (points_pb2.CreateFieldIndexCollection(), points_pb2.CreateFieldIndexCollection(field_type=cast(Any, 99))):
        with pytest.raises(BadRequest):
            grpc_requests.index_schema(bad)
    assert [grpc_requests.update_result(w, 7).status for w in (True, False)] == [points_pb2.Completed, points_pb2.Acknowledged]

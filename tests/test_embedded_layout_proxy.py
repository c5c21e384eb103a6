"""The layout and snapshot endpoints pass through the proxy transparently (REST and gRPC): named
vectors added and dropped, ``has_vector``, facets, config updates, payload schema, collection
snapshots (create, list, download, recover, upload, delete); and the reserved state collection
stays unreachable through them.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

from switchyard.proxy.intercept.reserved import RESERVED


def _clients(proxy: RunningProxy) -> tuple[QdrantClient, QdrantClient]:
    rest = QdrantClient(url=proxy.rest_url, check_compatibility=False, timeout=60)
    grpc = QdrantClient(url=proxy.rest_url, prefer_grpc=True, grpc_port=proxy.grpc_port,
                        check_compatibility=False, timeout=60)
    return rest, grpc


def _seed(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config={"a": models.VectorParams(size=2, distance=models.Distance.DOT)})
    client.create_payload_index(name, "kind", models.PayloadSchemaType.KEYWORD)
    client.upsert(name, [models.PointStruct(id=i, vector={"a": [1.0, float(i)]}, payload={"kind": f"k{i % 2}"})
                         for i in range(1, 7)])


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_layout_calls_through_proxy(switchyard: RunningProxy, prefix: str, proto: str) -> None:
    rest, grpc = _clients(switchyard)
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}px"
    try:
        _seed(rest, name)
        client.create_vector_name(name, "b", models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=2, distance=models.Distance.COSINE)))
        client.update_vectors(name, [models.PointVectors(id=1, vector={"b": [0.0, 1.0]})])
        has_b = models.Filter(must=[models.HasVectorCondition(has_vector="b")])
        assert client.count(name, count_filter=has_b, exact=True).count == 1
        assert [p.id for p in client.scroll(name, scroll_filter=has_b)[0]] == [1]
        facet = client.facet(name, "kind", exact=True)
        assert [(h.value, h.count) for h in facet.hits] == [("k0", 3), ("k1", 3)]
        client.update_collection(name, hnsw_config=models.HnswConfigDiff(m=12),
                                 vectors_config={"b": models.VectorParamsDiff(on_disk=True)})
        info = client.get_collection(name)
        assert info.config.hnsw_config.m == 12 and info.config.params.vectors["b"].on_disk is True
        assert {f: s.points for f, s in info.payload_schema.items()} == {"kind": 6}
        client.delete_vector_name(name, "b")
        assert set(rest.get_collection(name).config.params.vectors) == {"a"}
    finally:
        rest.close()
        grpc.close()


@pytest.mark.embedded_only  # recovery reads the embedded upstream's snapshot directory
def test_snapshots_through_proxy(switchyard: RunningProxy, upstream, prefix: str) -> None:
    rest, grpc = _clients(switchyard)
    name, copy = f"{prefix}ps", f"{prefix}pcopy"
    try:
        _seed(rest, name)
        before = sorted((p.id, p.payload["kind"]) for p in rest.scroll(name, limit=100)[0])
        snap = grpc.create_snapshot(name)
        assert snap is not None
        assert [s.name for s in rest.list_snapshots(name)] == [snap.name]
        assert [s.name for s in grpc.list_snapshots(name)] == [snap.name]
        with httpx.Client(base_url=switchyard.rest_url, timeout=60) as http:
            data = http.get(f"/collections/{name}/snapshots/{snap.name}").content
            assert hashlib.sha256(data).hexdigest() == snap.checksum
            r = http.post(f"/collections/{copy}/snapshots/upload",
                          files={"snapshot": ("x.snapshot", data, "application/octet-stream")})
            assert r.status_code == 200, r.text
        assert sorted((p.id, p.payload["kind"]) for p in rest.scroll(copy, limit=100)[0]) == before
        rest.delete(name, points_selector=models.PointIdsList(points=[1, 2]))
        folder = upstream.embedded.server.snapshots.directory(name)
        location = "file://" + urllib.parse.quote(os.path.join(folder, snap.name))
        assert rest.recover_snapshot(name, location=location) is True
        assert sorted((p.id, p.payload["kind"]) for p in rest.scroll(name, limit=100)[0]) == before
        grpc.delete_snapshot(name, snap.name)
        assert rest.list_snapshots(name) == []
    finally:
        rest.close()
        grpc.close()


def test_reserved_collection_snapshots_refused(switchyard: RunningProxy) -> None:
    rest, grpc = _clients(switchyard)
    try:
        with pytest.raises(UnexpectedResponse) as err:
            rest.create_snapshot(RESERVED)
        assert err.value.status_code == 403
        assert RESERVED in err.value.content.decode()
        with pytest.raises(UnexpectedResponse):
            rest.recover_snapshot(RESERVED, location="file:///nowhere.snapshot")
        with pytest.raises(Exception) as gerr:
            grpc.create_snapshot(RESERVED)
        assert RESERVED in str(gerr.value)
        with pytest.raises(UnexpectedResponse):
            rest.create_vector_name(RESERVED, "x", models.DenseVectorNameConfig(
                dense=models.DenseVectorConfig(size=2, distance=models.Distance.DOT)))
    finally:
        rest.close()
        grpc.close()

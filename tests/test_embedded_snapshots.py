"""Collection snapshots of the embedded upstream on both engines: create, list, download,
delete (REST, and gRPC ``qdrant.Snapshots`` create/list/delete), recover from a ``file://``
location inside the server's snapshot directory and from an upload, restoring points, vectors,
payloads, payload indexes and config exactly. Locations outside the directory, URLs and
oversized uploads are refused with a reason.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import uuid

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

from switchyard.proxy.embedded.server import BackgroundUpstream

pytestmark = pytest.mark.embedded_only  # recovery reads the embedded server's own directory


def _seed(client: QdrantClient, name: str) -> None:
    client.create_collection(
        name,
        vectors_config={"a": models.VectorParams(size=3, distance=models.Distance.DOT, on_disk=True),
                        "b": models.VectorParams(size=2, distance=models.Distance.EUCLID)},
        sparse_vectors_config={"s": models.SparseVectorParams()},
        hnsw_config=models.HnswConfigDiff(m=20),
        metadata={"owner": "tests"})
    client.create_payload_index(name, "kind", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(name, "n", models.PayloadSchemaType.INTEGER)
    client.upsert(name, [
        models.PointStruct(
            id=i, payload={"kind": f"k{i % 3}", "n": i, "nested": {"x": [i, "y"]}},
            vector={"a": [0.5, float(i), -1.25], **({"b": [float(i), 2.0]} if i % 2 else {}),
                    **({"s": models.SparseVector(indices=[i, 100], values=[1.0, 0.5])} if i % 3 == 0 else {})})
        for i in range(1, 31)])


def _state(client: QdrantClient, name: str) -> dict:
    points, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=64, offset=offset, with_payload=True, with_vectors=True)
        points += page
        if offset is None:
            break
    info = client.get_collection(name)
    return {
        "points": sorted((p.id, repr(sorted(p.vector.items())), repr(p.payload)) for p in points),
        "schema": {f: (s.data_type, s.points) for f, s in info.payload_schema.items()},
        "vectors": info.config.params.vectors,
        "sparse": info.config.params.sparse_vectors,
        "hnsw_m": info.config.hnsw_config.m,
        "metadata": info.config.metadata,
    }


def _mess_up(client: QdrantClient, name: str) -> None:
    client.upsert(name, [models.PointStruct(id=100, vector={"a": [1.0, 1.0, 1.0]}, payload={"kind": "new"})])
    client.delete(name, points_selector=models.PointIdsList(points=[1, 2, 3]))
    client.set_payload(name, {"kind": "changed"}, points=[4, 5])
    client.delete_payload_index(name, "n")
    client.update_collection(name, hnsw_config=models.HnswConfigDiff(m=40))


def _location(target: Target, collection: str, snapshot: str) -> str:
    assert target.embedded is not None and target.embedded.server.snapshots is not None
    folder = target.embedded.server.snapshots.directory(collection)
    return "file://" + urllib.parse.quote(os.path.join(folder, snapshot))


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_snapshot_and_recover(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}snap"
    _seed(rest, name)
    rest.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=name, alias_name=f"{prefix}alias"))])
    before = _state(rest, name)
    assert before["schema"] == {"kind": (models.PayloadSchemaType.KEYWORD, 30),
                                "n": (models.PayloadSchemaType.INTEGER, 30)}

    snap = client.create_snapshot(name)
    assert snap is not None and snap.name.endswith(".snapshot") and snap.size > 0 and snap.checksum
    assert [s.name for s in client.list_snapshots(name)] == [snap.name]

    _mess_up(rest, name)
    assert _state(rest, name) != before
    assert rest.recover_snapshot(name, location=_location(target, name, snap.name)) is True
    assert _state(rest, name) == before
    assert _state(rest, f"{prefix}alias") == before  # the alias still names it
    # the recovered collection keeps working: writes, searches, index-backed filters
    rest.upsert(name, [models.PointStruct(id=200, vector={"a": [0.0, 0.0, 1.0]}, payload={"kind": "k0"})])
    flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value="k0"))])
    assert rest.count(name, count_filter=flt, exact=True).count == 11
    hits = rest.query_points(name, query=[0.0, 1.0, 0.0], using="a", limit=1).points
    assert hits[0].id == 30

    client.delete_snapshot(name, snap.name)
    assert client.list_snapshots(name) == []


def test_download_and_upload(target: Target, clients, prefix: str) -> None:
    rest, _ = clients
    name, copy = f"{prefix}src", f"{prefix}copy"
    _seed(rest, name)
    before = _state(rest, name)
    snap = rest.create_snapshot(name)
    assert snap is not None
    with httpx.Client(base_url=target.rest_url, timeout=60) as http:
        r = http.get(f"/collections/{name}/snapshots/{snap.name}")
        assert r.status_code == 200
        data = r.content
        assert hashlib.sha256(data).hexdigest() == snap.checksum and len(data) == snap.size
        r = http.post(f"/collections/{copy}/snapshots/upload", params={"checksum": snap.checksum},
                      files={"snapshot": ("x.snapshot", data, "application/octet-stream")})
        assert r.status_code == 200, r.text
        assert r.json()["result"] is True
        assert _state(rest, copy) == before
        # a wrong checksum or a file that is no snapshot is refused, nothing changes
        r = http.post(f"/collections/{copy}/snapshots/upload", params={"checksum": "0" * 64},
                      files={"snapshot": ("x.snapshot", data, "application/octet-stream")})
        assert r.status_code == 400 and "checksum" in r.text
        r = http.post(f"/collections/{copy}/snapshots/upload",
                      files={"snapshot": ("x.snapshot", b"not a tar at all", "application/octet-stream")})
        assert r.status_code == 400
        assert _state(rest, copy) == before
        assert http.get(f"/collections/{name}/snapshots/..%2Fx.snapshot").status_code == 404
        assert http.get(f"/collections/{name}/snapshots/nope.snapshot").status_code == 404


def test_recover_refuses_other_locations(target: Target, clients, prefix: str, tmp_path) -> None:
    rest, _ = clients
    name = f"{prefix}ref"
    _seed(rest, name)
    snap = rest.create_snapshot(name)
    assert snap is not None
    outside = tmp_path / "outside.snapshot"
    inside = _location(target, name, snap.name)
    outside.write_bytes(open(urllib.parse.unquote(inside[len("file://"):]), "rb").read())
    for location, word in [
        (f"file://{outside}", "outside"),
        ("file:///etc/passwd", "outside"),
        (inside.replace(snap.name, f"../../{os.path.basename(str(tmp_path))}/outside.snapshot"), "outside"),
        ("http://127.0.0.1:1/x.snapshot", "file://"),
    ]:
        with pytest.raises(UnexpectedResponse) as err:
            rest.recover_snapshot(name, location=location)
        assert err.value.status_code == 400, location
        assert word in err.value.content.decode(), location
    with pytest.raises(UnexpectedResponse) as err:
        rest.recover_snapshot(name, location=inside.replace(snap.name, "missing.snapshot"))
    assert err.value.status_code == 404
    with pytest.raises(UnexpectedResponse) as err:
        rest.create_snapshot(f"{prefix}missing")
    assert err.value.status_code == 404


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_upload_bound_and_persistent_store(tmp_path, engine: str) -> None:
    from switchyard.proxy.embedded.engines import edge_available

    if engine == "edge" and not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    server = BackgroundUpstream(str(tmp_path / "data"), engine=engine, max_snapshot_upload=1024)
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        _seed(client, "c")
        before = _state(client, "c")
        snap = client.create_snapshot("c")
        assert snap is not None and snap.size > 1024
        assert os.path.dirname(server.server.snapshots.directory("c")) == str(tmp_path / "data" / "snapshots")
        with httpx.Client(base_url=server.rest_url, timeout=60) as http:
            data = http.get(f"/collections/c/snapshots/{snap.name}").content
            r = http.post("/collections/d/snapshots/upload",
                          files={"snapshot": ("x.snapshot", data, "application/octet-stream")})
            assert r.status_code == 413 and "1024" in r.text
        assert not client.collection_exists("d")
        client.close()
    finally:
        server.stop()
    server = BackgroundUpstream(str(tmp_path / "data"), engine=engine)
    server.start()
    try:  # the snapshot survives the restart and recovers the collection as it was
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        assert [s.name for s in client.list_snapshots("c")] == [snap.name]
        client.delete_collection("c")
        folder = server.server.snapshots.directory("c")
        client.recover_snapshot("c", location="file://" + urllib.parse.quote(os.path.join(folder, snap.name)))
        assert _state(client, "c") == before
        client.close()
    finally:
        server.stop()


def test_other_engines_snapshot_is_refused(local_server, edge_server) -> None:
    prefix = f"sy_{uuid.uuid4().hex[:10]}_"
    local = QdrantClient(url=local_server.rest_url, check_compatibility=False, timeout=60)
    edge = QdrantClient(url=edge_server.rest_url, check_compatibility=False, timeout=60)
    try:
        _seed(local, f"{prefix}x")
        snap = local.create_snapshot(f"{prefix}x")
        assert snap is not None
        data = httpx.get(f"{local_server.rest_url}/collections/{prefix}x/snapshots/{snap.name}").content
        r = httpx.post(f"{edge_server.rest_url}/collections/{prefix}x/snapshots/upload",
                       files={"snapshot": ("x.snapshot", data, "application/octet-stream")}, timeout=60)
        assert r.status_code == 400 and "local engine" in r.text
    finally:
        local.close()
        edge.close()


def test_upstream_command_snapshot_flags(tmp_path) -> None:
    """``switchyard upstream --snapshots-path DIR --max-snapshot-upload N`` (a real process):
    snapshots are written under DIR, recovered from there, and larger uploads refused."""
    from upstream_process import UpstreamProcess

    folder = tmp_path / "snaps"
    process = UpstreamProcess()
    process.cmd += ["--engine", "local", "--snapshots-path", str(folder), "--max-snapshot-upload", "1000"]
    with process:
        client = QdrantClient(url=process.rest_url, check_compatibility=False, timeout=60)
        try:
            _seed(client, "c")
            before = _state(client, "c")
            snap = client.create_snapshot("c")
            assert snap is not None and snap.size > 1000
            files = sorted(p.name for p in (folder / "c").iterdir())
            assert files == [snap.name, snap.name + ".checksum"]
            client.delete("c", points_selector=models.PointIdsList(points=[1]))
            assert _state(client, "c") != before
            client.recover_snapshot("c", location=f"file://{folder}/c/{snap.name}")
            assert _state(client, "c") == before
            data = (folder / "c" / snap.name).read_bytes()
            r = httpx.post(f"{process.rest_url}/collections/d/snapshots/upload",
                           files={"snapshot": ("x.snapshot", data, "application/octet-stream")}, timeout=60)
            assert r.status_code == 413 and "1000" in r.text
        finally:
            client.close()

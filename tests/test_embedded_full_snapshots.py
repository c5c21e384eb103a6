"""Full-storage snapshots (``POST/GET /snapshots``, ``GET/DELETE /snapshots/{name}``, gRPC
``Snapshots/CreateFull|ListFull|DeleteFull``) through the official client, on both engines and
on a real Qdrant (the file's shape, Qdrant's ``config.json``, is the same); and recovery at
start-up, ``switchyard upstream --storage-snapshot FILE``, in process and as a real process:
collections with their points, config and indexes, and aliases come back; existing ones are
not overwritten without ``--force-snapshot``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import subprocess
import sys
import tarfile

import grpc
import httpx
import orjson
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401
from test_embedded_snapshots import _seed, _state

from switchyard.proxy.embedded import full_snapshots
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.server import BackgroundUpstream
from switchyard.proxy.errors import BadRequest, SwitchyardError


def _alias(client: QdrantClient, collection: str, alias: str) -> None:
    client.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))])


def _config(data: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("config.json")
        assert member is not None
        return orjson.loads(member.read())


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_full_snapshot_create_list_download_delete(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc_client = clients
    client = grpc_client if proto == "grpc" else rest
    name = f"{prefix}full"
    _seed(rest, name)
    _alias(rest, name, f"{prefix}alias")

    snap = client.create_full_snapshot()
    assert snap is not None and snap.name.startswith("full-snapshot-") and snap.name.endswith(".snapshot")
    assert snap.size > 0 and snap.checksum
    try:
        assert snap.name in [s.name for s in client.list_full_snapshots()]
        with httpx.Client(base_url=target.rest_url, timeout=60) as http:
            r = http.get(f"/snapshots/{snap.name}")
            assert r.status_code == 200
            assert hashlib.sha256(r.content).hexdigest() == snap.checksum and len(r.content) == snap.size
            config = _config(r.content)
            # Qdrant's SnapshotConfig: each collection's snapshot file, and the aliases
            assert config["collections_aliases"][f"{prefix}alias"] == name
            inner = config["collections_mapping"][name]
            with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
                assert inner in tar.getnames()
            # as on Qdrant, the collection snapshot it took stays listed under the collection
            assert inner in [s.name for s in rest.list_snapshots(name)]
            assert http.get("/snapshots/..%2Fx.snapshot").status_code == 404
            assert http.get("/snapshots/nope.snapshot").status_code == 404
    finally:
        client.delete_full_snapshot(snap.name)
    assert snap.name not in [s.name for s in client.list_full_snapshots()]
    with pytest.raises(UnexpectedResponse) as err:
        rest.delete_full_snapshot(snap.name)
    assert err.value.status_code == 404


@pytest.mark.embedded_only  # a server with keys of its own
def test_read_only_key_lists_and_downloads_but_cannot_create_or_delete() -> None:
    server = BackgroundUpstream(keys=ApiKeys(api_key="full", read_only_api_key="ro"))
    server.start()
    try:
        admin = QdrantClient(url=server.rest_url, api_key="full", https=False, check_compatibility=False, timeout=60)
        _seed(admin, "c")
        snap = admin.create_full_snapshot()
        assert snap is not None
        with httpx.Client(base_url=server.rest_url, headers={"api-key": "ro"}, timeout=60) as http:
            assert http.get("/snapshots").json()["result"][0]["name"] == snap.name
            assert http.get(f"/snapshots/{snap.name}").status_code == 200
            assert http.post("/snapshots").status_code == 403
            assert http.delete(f"/snapshots/{snap.name}").status_code == 403
        ro = QdrantClient(url=server.rest_url, api_key="ro", https=False, prefer_grpc=True,
                          grpc_port=server.grpc_port, check_compatibility=False, timeout=60)
        assert [s.name for s in ro.list_full_snapshots()] == [snap.name]
        for call in (ro.create_full_snapshot, lambda: ro.delete_full_snapshot(snap.name)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [s.name for s in admin.list_full_snapshots()] == [snap.name]
        ro.close()
        admin.close()
    finally:
        server.stop()


def test_conflicts_table() -> None:
    mapping, aliases = {"a": "a.snapshot", "b": "b.snapshot"}, {"x": "a"}
    for collections, existing, expected in [
        (set(), set(), []),
        ({"c"}, {"y"}, []),
        ({"b"}, set(), ["collection 'b' already exists"]),
        ({"a", "b"}, {"x"}, ["collection 'a' already exists", "collection 'b' already exists",
                             "alias 'x' already exists"]),
    ]:
        assert full_snapshots.conflicts(mapping, aliases, collections, existing) == expected
    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    assert full_snapshots.full_name(when) == "full-snapshot-2024-05-06-07-08-09.snapshot"


def _make_full_snapshot(tmp_path, engine: str | None = None) -> tuple[str, dict]:
    """A full snapshot file of a server holding two collections (one aliased twice) and the
    state each had; the server is gone afterwards."""
    server = BackgroundUpstream(str(tmp_path / "source"), engine=engine)
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        _seed(client, "docs")
        client.create_collection("plain", vectors_config={
            "v": models.VectorParams(size=2, distance=models.Distance.COSINE)})
        client.upsert("plain", [models.PointStruct(id=7, vector={"v": [1.0, 0.0]}, payload={"p": 1})])
        _alias(client, "docs", "current")
        _alias(client, "docs", "latest")
        state = {"docs": _state(client, "docs"), "plain": _state(client, "plain")}
        snap = client.create_full_snapshot()
        assert snap is not None
        data = httpx.get(f"{server.rest_url}/snapshots/{snap.name}", timeout=60).content
        client.close()
    finally:
        server.stop()
    file = tmp_path / snap.name
    file.write_bytes(data)
    return str(file), state


def _aliases(client: QdrantClient) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}


@pytest.mark.embedded_only
@pytest.mark.parametrize("engine", ["local", "edge"])
def test_storage_snapshot_recovers_at_start(tmp_path, engine: str) -> None:
    from switchyard.proxy.embedded.engines import edge_available

    if engine == "edge" and not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    file, state = _make_full_snapshot(tmp_path, engine)
    data = str(tmp_path / "data")
    server = BackgroundUpstream(data, engine=engine, storage_snapshot=file)
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        assert {c.name for c in client.get_collections().collections} == {"docs", "plain"}
        assert {n: _state(client, n) for n in state} == state
        assert _aliases(client) == {"current": "docs", "latest": "docs"}
        assert _state(client, "current") == state["docs"]
        client.delete("docs", points_selector=models.PointIdsList(points=[1]))
        client.close()
    finally:
        server.stop()
    # the data path now holds the collections: recovering again is refused, nothing changes
    server = BackgroundUpstream(data, engine=engine, storage_snapshot=file)
    with pytest.raises(BadRequest) as err:
        server.start()
    assert "collection 'docs' already exists" in err.value.message and "force" in err.value.message
    server = BackgroundUpstream(data, engine=engine, storage_snapshot=file, force_snapshot=True)
    server.start()
    try:  # forced: the snapshot's state again (point 1 is back)
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        assert {n: _state(client, n) for n in state} == state
        assert _aliases(client) == {"current": "docs", "latest": "docs"}
        client.close()
    finally:
        server.stop()


@pytest.mark.embedded_only
def test_storage_snapshot_that_is_not_one_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.snapshot"
    bad.write_bytes(b"not a tar")
    for file, word in [(str(bad), "not a full storage snapshot"), (str(tmp_path / "missing"), "not found")]:
        server = BackgroundUpstream(storage_snapshot=file)
        with pytest.raises(SwitchyardError) as err:
            server.start()
        assert word in str(err.value)


def _upstream(*flags: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``switchyard upstream`` run until it exits (it does on a refused recovery)."""
    cmd = [sys.executable, "-m", "switchyard.proxy", "upstream", "--host", "127.0.0.1",
           "--http-port", "0", "--grpc-port", "0", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.embedded_only
def test_upstream_command_storage_snapshot(tmp_path, monkeypatch) -> None:
    """A real ``switchyard upstream --storage-snapshot FILE`` (default engine) serves the
    snapshot's collections and aliases over REST and gRPC; with the env var instead of the flag
    and an existing collection in ``--path`` it exits with the reason, unless forced (env)."""
    from upstream_process import UpstreamProcess

    file, state = _make_full_snapshot(tmp_path)
    process = UpstreamProcess()
    process.cmd += ["--storage-snapshot", file]
    with process:
        port = int(process.grpc_address.rpartition(":")[2])
        rest = QdrantClient(url=process.rest_url, check_compatibility=False, timeout=60)
        over_grpc = QdrantClient(url=process.rest_url, prefer_grpc=True, grpc_port=port,
                                 check_compatibility=False, timeout=60)
        try:
            assert {n: _state(rest, n) for n in state} == state
            for client in (rest, over_grpc):
                assert _aliases(client) == {"current": "docs", "latest": "docs"}
                assert client.count("current", exact=True).count == 30
                found = client.retrieve("docs", [3], with_payload=True)[0]
                assert found.payload == {"kind": "k0", "n": 3, "nested": {"x": [3, "y"]}}
        finally:
            rest.close()
            over_grpc.close()

    data = tmp_path / "data"
    server = BackgroundUpstream(str(data))
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False, timeout=60)
        client.create_collection("plain", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        client.close()
    finally:
        server.stop()
    done = _upstream("--path", str(data), env={"SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT": file})
    assert done.returncode == 2, done.stderr
    assert "collection 'plain' already exists" in done.stderr and "unknown environment" not in done.stderr

    monkeypatch.setenv("SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT", file)
    monkeypatch.setenv("SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT", "true")
    process = UpstreamProcess()
    process.cmd[process.cmd.index("--memory"):process.cmd.index("--memory") + 1] = ["--path", str(data)]
    with process:
        client = QdrantClient(url=process.rest_url, check_compatibility=False, timeout=60)
        try:  # forced: the snapshot's "plain" replaced the empty one
            assert {n: _state(client, n) for n in state} == state
            assert _aliases(client) == {"current": "docs", "latest": "docs"}
        finally:
            client.close()

"""Mirrored writes through the real proxy, every write kind, both protocols.

A migration of alias ``<prefix>docs`` from model A (hashing, 8-d) to model B (hashing, 12-d) is
put in ``dual_write``; then each write kind goes through the proxy. Afterwards source and target
hold the same ids and the same client payloads; each side has its own model's metadata; every
target vector is model B's embedding of the point's current text; the target records the source
digest. Failures: with the target's leg broken, writes still succeed and the repair log holds
exactly the affected ids.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from contextlib import closing
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
from switchyard.proxy.dataplane.writes import point_key
from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

DIM_A, DIM_B = 8, 12


def _admin(proxy: RunningProxy, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(proxy.rest_url + "/switchyard/v1" + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["result"]


def start_migration(proxy: RunningProxy, upstream: Any, prefix: str, mirror: str = "sync") -> tuple[Any, ...]:
    """Alias ``<prefix>docs`` over an 8-d source bound to model A; a migration to model B (12-d)
    planned and started through ``proxy``'s admin API (so it is in ``dual_write``)."""
    tag = uuid.uuid4().hex[:6]
    spec_a = ModelSpec(id=f"a-{tag}", provider="hashing", model=f"a-{tag}", dimensions=DIM_A)
    spec_b = ModelSpec(id=f"b-{tag}", provider="hashing", model=f"b-{tag}", dimensions=DIM_B)
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    source, alias = f"{prefix}docs_v1", f"{prefix}docs"
    direct.create_collection(source, vectors_config=models.VectorParams(size=DIM_A, distance=models.Distance.COSINE))
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])
    proxy.register_and_bind(spec_a, Binding(source, spec_a.id))
    proxy.register_and_bind(spec_b, Binding(source, spec_a.id))  # registers B too
    planned = _admin(proxy, "/migrations", {"logical": alias, "to_model": spec_b.id, "mirror": mirror})
    mid, target = planned["migration"]["id"], planned["migration"]["target"]
    _admin(proxy, f"/migrations/{mid}/transition", {"name": "start"})  # waits for acknowledgement
    for _ in range(100):
        snap = proxy.interceptor.cache.snapshot
        if mid in snap.migrations and snap.migrations[mid].phase == "dual_write":
            break
        time.sleep(0.05)
    return alias, source, target, spec_a, spec_b, direct, mid


@pytest.fixture(params=["sync"])
def migration(request: Any, switchyard: RunningProxy, upstream: Any, prefix: str) -> Any:
    found = start_migration(switchyard, upstream, prefix, request.param)
    yield found
    _admin(switchyard, f"/migrations/{found[-1]}/transition", {"name": "cancel"})  # frees an active slot
    found[5].close()


def _embed(spec: ModelSpec, texts: list[str]) -> np.ndarray:
    async def go() -> np.ndarray:
        e = make_embedder(spec)
        try:
            return await e.embed(texts)
        finally:
            await e.aclose()
    return asyncio.run(go())


def _vec(i: int) -> list[float]:
    return [float((i * 7 + k) % 5) / 5 + 0.1 for k in range(DIM_A)]


def _assert_in_sync(direct: QdrantClient, source: str, target: str, spec_a: ModelSpec, spec_b: ModelSpec) -> dict[str, Any]:
    src = {str(p.id): p for p in direct.scroll(source, limit=1000, with_vectors=True)[0]}
    tgt = {str(p.id): p for p in direct.scroll(target, limit=1000, with_vectors=True)[0]}
    assert sorted(src) == sorted(tgt)
    for pid, sp in src.items():
        tp = tgt[pid]
        content = {k: v for k, v in (sp.payload or {}).items() if not k.startswith("embedding_")}
        tcontent = {k: v for k, v in (tp.payload or {}).items()
                    if not k.startswith("embedding_") and k != DIGEST_FIELD}
        assert tcontent == content, pid
        assert sp.payload["embedding_model_id"] == spec_a.id
        assert tp.payload["embedding_model_id"] == spec_b.id and tp.payload["embedding_dimensions"] == DIM_B
        assert tp.payload[DIGEST_FIELD] == source_digest(sp.payload)
        assert len(sp.vector) == DIM_A and len(tp.vector) == DIM_B
        want = _embed(spec_b, [content["text"]])[0]
        assert np.allclose(tp.vector, want, atol=1e-5), pid
    return src


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_every_write_kind_is_mirrored(switchyard: RunningProxy, migration: Any, grpc: bool) -> None:
    alias, source, target, spec_a, spec_b, direct, _ = migration
    with closing(QdrantClient(url=switchyard.rest_url, prefer_grpc=grpc, grpc_port=switchyard.grpc_port,
                              check_compatibility=False)) as c:
        c.upsert(alias, [models.PointStruct(id=i, vector=_vec(i), payload={"text": f"doc {i}", "n": i, "tag": "a" if i % 2 else "b"})
                         for i in range(1, 9)])
        c.upsert(alias, models.Batch(ids=[20, 21], vectors=[_vec(20), _vec(21)],
                                     payloads=[{"text": "batch twenty", "n": 20}, {"text": "batch 21", "n": 21}]))
        c.set_payload(alias, {"text": "doc one, edited", "extra": {"deep": [1, 2.5]}}, points=[1])
        c.set_payload(alias, {"flag": True}, points=models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="tag", match=models.MatchValue(value="a"))])))
        c.overwrite_payload(alias, {"text": "overwritten two", "n": 2}, points=[2])
        c.delete_payload(alias, ["extra"], points=[1])
        c.set_payload(alias, {"nested": {"k": 1}}, points=[4], key="meta")
        c.update_vectors(alias, [models.PointVectors(id=3, vector=_vec(99))])
        c.delete(alias, [5])
        c.delete(alias, models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="n", match=models.MatchValue(value=6))])))
        c.batch_update_points(alias, [
            models.UpsertOperation(upsert=models.PointsList(points=[
                models.PointStruct(id=30, vector=_vec(30), payload={"text": "from a batch", "n": 30})])),
            models.SetPayloadOperation(set_payload=models.SetPayload(payload={"text": "seven, batch-edited"}, points=[7])),
            models.DeleteOperation(delete=models.PointIdsList(points=[8])),
        ])
        c.upsert(alias, [models.PointStruct(id=4, vector=_vec(4), payload={"text": "never applied"})],
                 update_mode=models.UpdateMode.INSERT_ONLY)
    src = _assert_in_sync(direct, source, target, spec_a, spec_b)
    assert sorted(src, key=int) == ["1", "2", "3", "4", "7", "20", "21", "30"]
    assert src["4"].payload["text"] == "doc 4"  # insert_only did not overwrite, on either side
    assert src["1"].payload["text"] == "doc one, edited" and "extra" not in src["1"].payload
    assert src["4"].payload["meta"] == {"nested": {"k": 1}}


@pytest.mark.parametrize("point_id, key", [
    (7, "7"), (2**64 - 1, str(2**64 - 1)),
    ("936da01f-9abd-4d9d-80c7-02af85c822a8", "936da01f-9abd-4d9d-80c7-02af85c822a8"),
    ("936DA01F9ABD4d9d80C702AF85C822A8", "936da01f-9abd-4d9d-80c7-02af85c822a8"),
    ("urn:uuid:936DA01F-9ABD-4d9d-80C7-02AF85C822A8", "936da01f-9abd-4d9d-80c7-02af85c822a8"),
    ("{936da01f-9abd-4d9d-80c7-02af85c822a8}", "936da01f-9abd-4d9d-80c7-02af85c822a8"),
    ("Not-A-UUID", "not-a-uuid"),
])
def test_point_key_table(point_id: Any, key: str) -> None:
    assert point_key(point_id) == key


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_uuid_forms_name_one_point(switchyard: RunningProxy, migration: Any, grpc: bool) -> None:
    """Qdrant takes a UUID in any of its text forms and answers with the hyphenated one; the
    mirror keys ids canonically, so a re-read point matches the id it was asked for. Keyed as
    written, the batch below (a delete of one point, an edit of another named in simple form)
    left the edited point out of the re-read's match and deleted it from the target as gone."""
    alias, source, target, spec_a, spec_b, direct, _ = migration
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    with closing(QdrantClient(url=switchyard.rest_url, prefer_grpc=grpc, grpc_port=switchyard.grpc_port,
                              check_compatibility=False)) as c:
        c.upsert(alias, [models.PointStruct(id=kept.hex.upper(), vector=_vec(1), payload={"text": "kept"}),
                         models.PointStruct(id="{%s}" % dropped, vector=_vec(2), payload={"text": "dropped"})])
        c.batch_update_points(alias, [
            models.DeleteOperation(delete=models.PointIdsList(points=[f"urn:uuid:{dropped}"])),
            models.SetPayloadOperation(set_payload=models.SetPayload(payload={"text": "kept, edited"},
                                                                     points=[kept.hex])),
        ])
    src = _assert_in_sync(direct, source, target, spec_a, spec_b)
    assert list(src) == [str(kept)] and src[str(kept)].payload["text"] == "kept, edited"


def test_failed_secondary_goes_to_repair_log(switchyard: RunningProxy, migration: Any) -> None:
    alias, source, target, spec_a, spec_b, direct, mid = migration
    direct.delete_collection(target)  # the mirror's leg now fails (404 from the upstream)
    with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as c:
        result = c.upsert(alias, [models.PointStruct(id=i, vector=_vec(i), payload={"text": f"t{i}"}) for i in (41, 42)])
        assert result.status == models.UpdateStatus.COMPLETED  # the client's write succeeded
    assert direct.count(source).count == 2

    async def go() -> list[Any]:
        from switchyard.proxy.state.store import StateStore
        from qdrant_client import AsyncQdrantClient
        client = AsyncQdrantClient(url=switchyard.upstream_rest_url, check_compatibility=False)
        try:
            return [e.data["point_id"] for e in await StateStore(client).list("repair") if e.data["migration"] == mid]
        finally:
            await client.close()

    assert sorted(asyncio.run(go())) == [41, 42]


@pytest.mark.parametrize("migration", ["async"], indirect=True)
def test_async_mirror_catches_up_without_delaying_the_client(switchyard: RunningProxy, migration: Any) -> None:
    alias, source, target, spec_a, spec_b, direct, _ = migration
    with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as c:
        for i in range(1, 6):
            c.upsert(alias, [models.PointStruct(id=i, vector=_vec(i), payload={"text": f"async {i}"})])
        c.set_payload(alias, {"text": "async three, edited"}, points=[3])
        c.delete(alias, [5])
    deadline = time.monotonic() + 10
    while direct.count(target).count != 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(50):  # the last queued write may still be landing
        try:
            _assert_in_sync(direct, source, target, spec_a, spec_b)
            break
        except AssertionError:
            time.sleep(0.1)
    _assert_in_sync(direct, source, target, spec_a, spec_b)


def test_target_outage_loses_nothing(upstream: Any, prefix: str) -> None:
    """A relay between proxy and upstream cuts every call to the target for a while: client
    writes keep succeeding, the repair log holds exactly the affected ids, and after the outage
    the backfill's repair drain brings the target level with the source."""
    import subprocess
    import sys
    from urllib.parse import urlparse

    from fault_relay import FaultRelay
    from proxy_fixtures import start_proxy

    parsed = urlparse(upstream.rest_url)
    with FaultRelay(parsed.hostname or "127.0.0.1", parsed.port or 80) as relay:
        running = start_proxy(relay.url, upstream.grpc_host, upstream.grpc_port)
        try:
            alias, source, target, spec_a, spec_b, direct, mid = start_migration(running, upstream, prefix)
            with closing(QdrantClient(url=running.rest_url, check_compatibility=False, timeout=30)) as c:
                c.upsert(alias, [models.PointStruct(id=1, vector=_vec(1), payload={"text": "before"})])
                relay.fail(f"/collections/{target}/")
                for i in (2, 3, 4):
                    c.upsert(alias, [models.PointStruct(id=i, vector=_vec(i), payload={"text": f"during {i}"})])
                c.set_payload(alias, {"text": "edited during"}, points=[1])
                relay.fail(None)
                c.upsert(alias, [models.PointStruct(id=5, vector=_vec(5), payload={"text": "after"})])
            assert relay.cut >= 4
            assert direct.count(source).count == 5

            async def repairs() -> list[Any]:
                from qdrant_client import AsyncQdrantClient

                from switchyard.proxy.state.store import StateStore
                client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
                try:
                    return [e.data["point_id"] for e in await StateStore(client).list("repair")
                            if e.data["migration"] == mid]
                finally:
                    await client.close()

            assert sorted(asyncio.run(repairs())) == [1, 2, 3, 4]
            assert direct.count(target).count == 2  # 1 (as before the edit) and 5
            subprocess.run([sys.executable, "-m", "switchyard.proxy", "backfill", mid, "--once", "--url", upstream.rest_url],
                           check=True, capture_output=True, timeout=120)
            _assert_in_sync(direct, source, target, spec_a, spec_b)
            assert asyncio.run(repairs()) == []
            _admin(running, f"/migrations/{mid}/transition", {"name": "cancel"})
            direct.close()
        finally:
            running.proxy.stop()

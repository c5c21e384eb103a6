"""Merged and shadow reads through the real proxy, with the official qdrant-client (REST, gRPC).

Alias ``<prefix>docs`` is bound to model A (hashing, 8-d). Documents 0..19 are written before
the migration (source only); then the migration to model B (hashing, 12-d) starts and
documents 20..29 are written through the proxy, so the mirror puts them in the target too.
Each side stamps its own ``embedding_model_id``, which tells which version a hit is.
Queries are sent as inference objects (``models.Document``, ``cloud_inference=True`` so the
client forwards them): the proxy embeds the text per side.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from qdrant_client import QdrantClient, models

from dataplane_reads_fixtures import corpus
from switchyard.proxy.dataplane.read_transport import MERGE_HEADER
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

QUERIES = ("cats small quick", "dogs blue", "fish calm old")


def _admin(proxy: RunningProxy, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        proxy.rest_url + "/switchyard/v1" + path, method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["result"]


def _wait(proxy: RunningProxy, mid: str, phase: str, read_mode: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = proxy.interceptor.cache.snapshot.migrations.get(mid)
        if m is not None and m.phase == phase and m.read_mode == read_mode:
            return
        time.sleep(0.05)
    raise AssertionError(f"proxy never saw {mid} in {phase}/{read_mode}")


@pytest.fixture
def merged(switchyard: RunningProxy, upstream: Any, prefix: str) -> Iterator[Any]:
    tag = uuid.uuid4().hex[:6]
    a = ModelSpec(id=f"ra-{tag}", provider="hashing", model=f"ra-{tag}", dimensions=8)
    b = ModelSpec(id=f"rb-{tag}", provider="hashing", model=f"rb-{tag}", dimensions=12)
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    source, alias = f"{prefix}docs_v1", f"{prefix}docs"
    direct.create_collection(source, vectors_config=a.vector_params())
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])
    switchyard.register_and_bind(a, Binding(source, a.id))
    switchyard.register_and_bind(b, Binding(source, a.id))  # registers B too
    texts = corpus(30)
    client = QdrantClient(url=switchyard.rest_url, check_compatibility=False, cloud_inference=True)
    # inference objects in points: the proxy embeds them with the bound model
    points = [models.PointStruct(id=i, vector=models.Document(text=texts[i], model=a.id),
                                 payload={"doc_id": f"d{i}", "text": texts[i]}) for i in range(20)]
    client.upsert(alias, points, wait=True)
    planned = _admin(switchyard, "/migrations", {"logical": alias, "to_model": b.id})
    mid = planned["migration"]["id"]
    _admin(switchyard, f"/migrations/{mid}/transition", {"name": "start"})
    _admin(switchyard, f"/migrations/{mid}/read-mode", {"mode": "merged"})
    _wait(switchyard, mid, "dual_write", "merged")
    client.upsert(alias, [models.PointStruct(id=i, vector=direct_vector(a, texts[i]),
                                             payload={"doc_id": f"d{i}", "text": texts[i]})
                          for i in range(20, 30)], wait=True)
    target = planned["migration"]["target"]
    deadline = time.monotonic() + 15  # the mirror is the write path's business: wait for it
    while direct.count(target, exact=True).count < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert direct.count(target, exact=True).count == 10
    try:
        yield alias, a, b, mid, client
    finally:
        client.close()
        _admin(switchyard, f"/migrations/{mid}/transition", {"name": "cancel"})
        direct.close()


def direct_vector(spec: ModelSpec, text: str) -> list[float]:
    from switchyard.proxy.embedders.hashing import HashingEmbedder

    return [float(x) for x in HashingEmbedder(spec).embed_sync([text])[0]]


def _model(point: Any) -> str:
    return str((point.payload or {})["embedding_model_id"])


def _check(points: list[Any], a: ModelSpec, b: ModelSpec) -> None:
    ids = [int(p.id) for p in points]
    assert len(ids) == len(set(ids))
    for p in points:
        want = b.id if int(p.id) >= 20 else a.id  # 20..29 were mirrored: only their B version
        assert _model(p) == want, (p.id, p.payload)


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_merged_reads_through_the_proxy(switchyard: RunningProxy, merged: Any, grpc: bool) -> None:
    alias, a, b, _, _ = merged
    client = QdrantClient(url=switchyard.rest_url, prefer_grpc=grpc, grpc_port=switchyard.grpc_port,
                          check_compatibility=False, cloud_inference=True)
    try:
        seen_b = 0
        for q in QUERIES:
            res = client.query_points(alias, query=models.Document(text=q, model=a.id), limit=8,
                                      with_payload=True)
            _check(res.points, a, b)
            seen_b += sum(1 for p in res.points if _model(p) == b.id)
            page2 = client.query_points(alias, query=models.Document(text=q, model=a.id), limit=4,
                                        offset=4)
            assert [p.id for p in page2.points] == [p.id for p in res.points[4:]]
            groups = client.query_points_groups(
                alias, group_by="doc_id", query=models.Document(text=q, model=a.id), limit=5,
                group_size=1, with_payload=True)
            assert len(groups.groups) == 5
            for g in groups.groups:
                _check(g.hits, a, b)
                assert (g.hits[0].payload or {})["doc_id"] == g.id
        assert seen_b > 0
        # a raw model-A vector cannot search the target: source only, and said so
        vec = direct_vector(a, QUERIES[0])
        hits = client.query_points(alias, query=vec, limit=5, with_payload=True).points
        assert all(_model(p) == a.id for p in hits)
    finally:
        client.close()


def test_merge_header_explains(switchyard: RunningProxy, merged: Any) -> None:
    alias, a, _, _, _ = merged
    body = json.dumps({"query": {"text": QUERIES[1], "model": a.id}, "limit": 5}).encode()
    req = urllib.request.Request(f"{switchyard.rest_url}/collections/{alias}/points/query", data=body,
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        header = resp.headers[MERGE_HEADER]
        result = json.loads(resp.read())["result"]
    assert header.startswith("target=") and "placement=rank" in header and "returned=5" in header
    assert len(result["points"]) == 5


def test_shadow_serves_source_and_records(switchyard: RunningProxy, merged: Any) -> None:
    alias, a, b, mid, client = merged
    _admin(switchyard, f"/migrations/{mid}/read-mode", {"mode": "shadow"})
    _wait(switchyard, mid, "dual_write", "shadow")
    before = REGISTRY.get_sample_value("switchyard_shadow_overlap_at_k_count", {"collection": alias}) or 0
    for q in QUERIES:
        res = client.query_points(alias, query=models.Document(text=q, model=a.id), limit=6,
                                  with_payload=True)
        assert all(_model(p) == a.id for p in res.points)
    deadline = time.monotonic() + 20
    count = before
    while time.monotonic() < deadline and count < before + len(QUERIES):
        time.sleep(0.05)
        count = REGISTRY.get_sample_value("switchyard_shadow_overlap_at_k_count", {"collection": alias}) or 0
    assert count == before + len(QUERIES)

"""The ``has_vector`` filter condition everywhere a filter applies (query, query batch, prefetch, scroll,
count, facet, delete by filter, set payload by filter, conditional upsert and update_vectors),
inside ``must``, ``must_not`` and ``should``, on every engine, over REST and gRPC.

Points 1-4 have vector ``b`` (set at upsert or afterwards), points 5-8 only ``a``.
"""

from __future__ import annotations

import pytest
from qdrant_client import models

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

HAS_B = models.HasVectorCondition(has_vector="b")
WITH_B = models.Filter(must=[HAS_B])
WITHOUT_B = models.Filter(must_not=[HAS_B])
WITH = {1, 2, 3, 4}
WITHOUT = {5, 6, 7, 8}


def _seed(client, name: str) -> None:
    client.create_collection(name, vectors_config={
        "a": models.VectorParams(size=2, distance=models.Distance.DOT),
        "b": models.VectorParams(size=2, distance=models.Distance.DOT)})
    client.create_payload_index(name, "kind", models.PayloadSchemaType.KEYWORD)
    client.upsert(name, [
        models.PointStruct(id=i, vector={"a": [1.0, float(i)], **({"b": [float(i), 1.0]} if i <= 2 else {})},
                           payload={"kind": "even" if i % 2 == 0 else "odd", "n": i})
        for i in range(1, 9)])
    client.update_vectors(name, [models.PointVectors(id=i, vector={"b": [float(i), 1.0]}) for i in (3, 4)])


def _ids(points) -> set:
    return {p.id for p in points}


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_has_vector_in_reads(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}hv"
    _seed(rest, name)

    assert client.count(name, count_filter=WITH_B, exact=True).count == 4
    assert client.count(name, count_filter=WITHOUT_B, exact=True).count == 4
    assert _ids(client.scroll(name, scroll_filter=WITH_B, limit=100)[0]) == WITH
    assert _ids(client.scroll(name, scroll_filter=WITHOUT_B, limit=100)[0]) == WITHOUT
    either = models.Filter(should=[HAS_B, models.FieldCondition(key="n", match=models.MatchValue(value=8))])
    assert _ids(client.scroll(name, scroll_filter=either, limit=100)[0]) == WITH | {8}
    # by the old vector, restricted to the points that lack the new one (a merged read's half)
    hits = client.query_points(name, query=[0.0, 1.0], using="a", query_filter=WITHOUT_B, limit=10).points
    assert [h.id for h in hits] == [8, 7, 6, 5]
    hits = client.query_points(name, query=[1.0, 0.0], using="b", query_filter=WITH_B, limit=10).points
    assert [h.id for h in hits] == [4, 3, 2, 1]
    # inside a prefetch, and combined with a payload condition
    odd_with_b = models.Filter(must=[HAS_B, models.FieldCondition(key="kind", match=models.MatchValue(value="odd"))])
    hits = client.query_points(name, prefetch=models.Prefetch(query=[0.0, 1.0], using="a", filter=odd_with_b),
                               query=[1.0, 0.0], using="b", limit=10).points
    assert [h.id for h in hits] == [3, 1]
    facet = client.facet(name, "kind", facet_filter=WITHOUT_B, exact=True)
    assert {(h.value, h.count) for h in facet.hits} == {("odd", 2), ("even", 2)}
    batch = client.query_batch_points(name, [
        models.QueryRequest(query=[0.0, 1.0], using="a", filter=WITH_B, limit=2),
        models.QueryRequest(query=[0.0, 1.0], using="a", filter=WITHOUT_B, limit=2)])
    assert [[h.id for h in r.points] for r in batch] == [[4, 3], [8, 7]]


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_has_vector_in_writes(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}hw"
    _seed(rest, name)

    # conditional writes: applied only where the filter holds for the stored point
    client.upsert(name, [models.PointStruct(id=i, vector={"a": [9.0, 9.0]}, payload={"n": 100 + i})
                         for i in (1, 5)], update_filter=WITHOUT_B)
    got = {r.id: r.payload["n"] for r in rest.retrieve(name, [1, 5])}
    assert got == {1: 1, 5: 105}
    client.update_vectors(name, [models.PointVectors(id=i, vector={"b": [0.5, 0.5]}) for i in (2, 6)],
                          update_filter=WITHOUT_B)
    vecs = {r.id: r.vector.get("b") for r in rest.retrieve(name, [2, 6], with_vectors=["b"])}
    assert vecs == {2: [2.0, 1.0], 6: [0.5, 0.5]}

    client.set_payload(name, {"tag": "new"}, points=WITH_B)
    tagged = _ids(rest.scroll(name, scroll_filter=models.Filter(must=[models.FieldCondition(
        key="tag", match=models.MatchValue(value="new"))]), limit=100)[0])
    assert tagged == WITH | {6}
    client.delete(name, points_selector=models.FilterSelector(filter=WITHOUT_B))
    assert _ids(rest.scroll(name, limit=100)[0]) == WITH | {6}

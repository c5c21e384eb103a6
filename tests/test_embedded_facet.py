"""Facets (``POST /collections/{c}/facet``, gRPC ``Points/Facet``): counts per value of an indexed
payload field, with a filter, a limit and ``exact``, ordered by count then value, as Qdrant
answers; refused (400 / INVALID_ARGUMENT) on a field without an index that supports matches.
On every engine, over REST and gRPC.
"""

from __future__ import annotations

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

SOURCES = {"wiki": 5, "news": 3, "blog": 3, "forum": 1}


def _seed(client, name: str) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.create_payload_index(name, "source", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(name, "year", models.PayloadSchemaType.INTEGER)
    client.create_payload_index(name, "live", models.PayloadSchemaType.BOOL)
    points, pid = [], 0
    for source, n in SOURCES.items():
        for j in range(n):
            pid += 1
            points.append(models.PointStruct(id=pid, vector=[1.0, float(pid)], payload={
                "source": source, "year": 2020 + j % 2, "live": j == 0, "tags": ["x", "y"] if j else ["x"]}))
    points.append(models.PointStruct(id=99, vector=[1.0, 0.0], payload={"other": 1}))
    client.upsert(name, points)


def _pairs(response) -> list[tuple]:
    return [(h.value, h.count) for h in response.hits]


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_facet_counts(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}fc"
    _seed(rest, name)

    assert _pairs(client.facet(name, "source", exact=True)) == [("wiki", 5), ("blog", 3), ("news", 3), ("forum", 1)]
    assert _pairs(client.facet(name, "source", limit=2, exact=True)) == [("wiki", 5), ("blog", 3)]
    assert _pairs(client.facet(name, "source")) == [("wiki", 5), ("blog", 3), ("news", 3), ("forum", 1)]
    live = models.Filter(must=[models.FieldCondition(key="live", match=models.MatchValue(value=True))])
    assert _pairs(client.facet(name, "source", facet_filter=live, exact=True)) == [
        ("blog", 1), ("forum", 1), ("news", 1), ("wiki", 1)]
    assert _pairs(client.facet(name, "year", exact=True)) == [(2020, 8), (2021, 4)]
    assert _pairs(client.facet(name, "live", exact=True)) == [(False, 8), (True, 4)]
    # the split kind's use: the values of a field, then a count per value
    values = [h.value for h in client.facet(name, "source", limit=100, exact=True).hits]
    for value in values:
        flt = models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value=value))])
        assert rest.count(name, count_filter=flt, exact=True).count == SOURCES[value]


def test_facet_needs_an_index(target: Target, clients, prefix: str) -> None:
    rest, grpc = clients
    name = f"{prefix}fi"
    _seed(rest, name)
    with pytest.raises(UnexpectedResponse) as err:
        rest.facet(name, "tags", exact=True)
    assert err.value.status_code == 400
    assert "index" in err.value.content.decode()
    with pytest.raises(Exception) as gerr:
        grpc.facet(name, "tags", exact=True)
    assert "INVALID_ARGUMENT" in str(gerr.value)
    rest.create_payload_index(name, "tags", models.PayloadSchemaType.KEYWORD)
    assert _pairs(rest.facet(name, "tags", exact=True)) == [("x", 12), ("y", 8)]
    rest.delete_payload_index(name, "tags")
    with pytest.raises(UnexpectedResponse):
        rest.facet(name, "tags", exact=True)
    with pytest.raises(UnexpectedResponse) as err:
        rest.facet(f"{prefix}missing", "source")
    assert err.value.status_code == 404

"""Named vectors added to and removed from an existing collection
(``PUT`` / ``DELETE /collections/{c}/vectors/{name}``, gRPC ``CreateVectorName`` /
``DeleteVectorName``), on every engine, with the official client over REST and gRPC.

Existing points get no value for a new vector; writes may set it from then on; a dropped vector
is gone from the config and from every point, and writing it is refused.
"""

from __future__ import annotations

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

HAS_B = models.Filter(must=[models.HasVectorCondition(has_vector="b")])


def _seed(client, name: str) -> None:
    client.create_collection(name, vectors_config={"a": models.VectorParams(size=3, distance=models.Distance.DOT)})
    client.upsert(name, [models.PointStruct(id=i, vector={"a": [1.0, float(i), 0.0]}, payload={"n": i})
                         for i in range(1, 7)])


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_add_and_drop_named_vector(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}vn"
    _seed(rest, name)

    result = client.create_vector_name(
        name, "b", models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=2, distance=models.Distance.COSINE)))
    assert result.status in (models.UpdateStatus.COMPLETED, models.UpdateStatus.ACKNOWLEDGED)
    vectors = rest.get_collection(name).config.params.vectors
    assert set(vectors) == {"a", "b"}
    assert vectors["b"].size == 2 and vectors["b"].distance == models.Distance.COSINE

    # existing points have no value for the new vector
    records = rest.retrieve(name, [1, 2], with_vectors=True)
    assert all(set(r.vector) == {"a"} for r in records)
    assert rest.count(name, count_filter=HAS_B, exact=True).count == 0

    # the new vector can be written and searched from now on
    client.update_vectors(name, [models.PointVectors(id=1, vector={"b": [0.0, 1.0]}),
                                 models.PointVectors(id=2, vector={"b": [1.0, 0.0]})])
    client.upsert(name, [models.PointStruct(id=9, vector={"a": [0.0, 0.0, 1.0], "b": [1.0, 1.0]})])
    assert client.count(name, count_filter=HAS_B, exact=True).count == 3
    hits = client.query_points(name, query=[0.0, 1.0], using="b", limit=10).points
    assert [h.id for h in hits][0] == 1 and {h.id for h in hits} == {1, 2, 9}
    with pytest.raises(Exception):  # wrong dimension for the new vector
        client.update_vectors(name, [models.PointVectors(id=3, vector={"b": [1.0, 0.0, 0.0]})])

    result = client.delete_vector_name(name, "b")
    assert result.status in (models.UpdateStatus.COMPLETED, models.UpdateStatus.ACKNOWLEDGED)
    assert set(rest.get_collection(name).config.params.vectors) == {"a"}
    assert all(set(r.vector) == {"a"} for r in rest.retrieve(name, [1, 2, 9], with_vectors=True))
    assert rest.count(name, exact=True).count == 7
    with pytest.raises(Exception):
        rest.update_vectors(name, [models.PointVectors(id=1, vector={"b": [0.0, 1.0]})])


def test_sparse_vector_name_and_refusals(target: Target, clients, prefix: str) -> None:
    rest, grpc = clients
    name = f"{prefix}vs"
    _seed(rest, name)
    grpc.create_vector_name(name, "s", models.SparseVectorNameConfig(sparse=models.SparseVectorConfig()))
    assert set(rest.get_collection(name).config.params.sparse_vectors or {}) == {"s"}
    rest.update_vectors(name, [models.PointVectors(
        id=3, vector={"s": models.SparseVector(indices=[1, 5], values=[0.5, 1.0])})])
    hits = rest.query_points(name, query=models.SparseVector(indices=[5], values=[1.0]), using="s").points
    assert [h.id for h in hits] == [3]

    # a name of the other kind, or an existing name with another size, is refused
    with pytest.raises(UnexpectedResponse) as err:
        rest.create_vector_name(name, "a", models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=8, distance=models.Distance.DOT)))
    assert err.value.status_code == 400
    with pytest.raises(UnexpectedResponse) as err:
        rest.create_vector_name(name, "s", models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=2, distance=models.Distance.DOT)))
    assert err.value.status_code == 400
    # re-creating an identical vector is accepted and changes nothing
    rest.create_vector_name(name, "a", models.DenseVectorNameConfig(
        dense=models.DenseVectorConfig(size=3, distance=models.Distance.DOT)))
    assert rest.retrieve(name, [1], with_vectors=True)[0].vector["a"] == [1.0, 1.0, 0.0]

    grpc.delete_vector_name(name, "s")
    assert not rest.get_collection(name).config.params.sparse_vectors
    with pytest.raises(UnexpectedResponse) as err:
        rest.delete_vector_name(name, "nope")
    assert err.value.status_code in (400, 404)
    with pytest.raises(UnexpectedResponse) as err:
        rest.create_vector_name(f"{prefix}missing", "b", models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=2, distance=models.Distance.DOT)))
    assert err.value.status_code == 404

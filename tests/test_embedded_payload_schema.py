"""Payload indexes reported in the collection info's ``payload_schema`` as Qdrant reports them:
one entry per indexed field with its ``data_type``, the ``params`` it was created with, and the
number of points it holds; dropped with the index and with the collection. On every engine,
read over REST and gRPC.
"""

from __future__ import annotations

import pytest
from qdrant_client import models

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

T = models.PayloadSchemaType


def _seed(client, name: str) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, [
        models.PointStruct(id=i, vector=[1.0, float(i)], payload={
            "source": f"s{i % 3}", "year": 2000 + i, **({"body": "hello world"} if i <= 4 else {})})
        for i in range(1, 11)])


@pytest.mark.parametrize("proto", ["rest", "grpc"])
def test_payload_schema_reports_indexes(target: Target, clients, prefix: str, proto: str) -> None:
    rest, grpc = clients
    client = grpc if proto == "grpc" else rest
    name = f"{prefix}ps"
    _seed(rest, name)
    assert rest.get_collection(name).payload_schema == {}

    client.create_payload_index(name, "source", T.KEYWORD)
    client.create_payload_index(name, "year", T.INTEGER)
    client.create_payload_index(name, "body", models.TextIndexParams(
        type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True))
    client.create_payload_index(name, "missing", T.KEYWORD)
    schema = client.get_collection(name).payload_schema
    assert {f: (s.data_type, s.points) for f, s in schema.items()} == {
        "source": (T.KEYWORD, 10), "year": (T.INTEGER, 10), "body": (T.TEXT, 4), "missing": (T.KEYWORD, 0)}
    if target.name != "edge":  # Edge's Python API reports an index's type and size, not its params
        params = schema["body"].params
        assert isinstance(params, models.TextIndexParams)
        assert params.tokenizer == models.TokenizerType.WORD and params.lowercase is True

    # the counts follow the data
    rest.upsert(name, [models.PointStruct(id=11, vector=[1.0, 1.0], payload={"missing": "now"})])
    rest.delete(name, points_selector=models.PointIdsList(points=[1, 2]))
    schema = rest.get_collection(name).payload_schema
    assert (schema["missing"].points, schema["source"].points, schema["body"].points) == (1, 8, 2)

    client.delete_payload_index(name, "year")
    assert set(rest.get_collection(name).payload_schema) == {"source", "body", "missing"}

    # a collection created again under the same name starts without indexes
    rest.delete_collection(name)
    _seed(rest, name)
    assert rest.get_collection(name).payload_schema == {}


def test_payload_schema_through_an_alias(target: Target, clients, prefix: str) -> None:
    rest, grpc = clients
    name, alias = f"{prefix}pa", f"{prefix}pa_alias"
    _seed(rest, name)
    rest.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=name, alias_name=alias))])
    grpc.create_payload_index(alias, "source", T.KEYWORD)
    assert set(rest.get_collection(name).payload_schema) == {"source"}
    assert rest.get_collection(alias).payload_schema["source"].points == 10

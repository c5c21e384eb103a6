"""Pure routing helpers: REST/gRPC call classification and collection renaming."""

from __future__ import annotations

import pytest
from qdrant_client import grpc as qgrpc

from switchyard.proxy.intercept.routes import grpc_collection, grpc_kind, rename_grpc, rest_path, rest_target

REST_TABLE = [
    ("PUT", "/collections/docs/points", ("docs", "/points", "write")),
    ("POST", "/collections/docs/points", ("docs", "/points", "read")),  # retrieve
    ("GET", "/collections/docs/points/17", ("docs", "/points/17", "read")),
    ("POST", "/collections/docs/points/query", ("docs", "/points/query", "read")),
    ("POST", "/collections/docs/points/search/matrix/pairs", ("docs", "/points/search/matrix/pairs", "read")),
    ("POST", "/collections/docs/facet", ("docs", "/facet", "read")),
    ("POST", "/collections/docs/points/batch", ("docs", "/points/batch", "write")),
    ("POST", "/collections/docs/points/payload/clear", ("docs", "/points/payload/clear", "write")),
    ("PUT", "/collections/my%20docs/points/vectors", ("my docs", "/points/vectors", "write")),
    ("GET", "/collections/docs", None),  # collection management keeps its name
    ("DELETE", "/collections/docs", None),
    ("PUT", "/collections/docs/index", None),
    ("GET", "/collections/docs/points", None),
    ("POST", "/telemetry", None),
]


@pytest.mark.parametrize(("method", "path", "want"), REST_TABLE)
def test_rest_target(method: str, path: str, want: object) -> None:
    assert rest_target(method, path) == want


def test_rest_path_quotes() -> None:
    assert rest_path("a b/c", "/points") == "/collections/a%20b%2Fc/points"


@pytest.mark.parametrize(("method", "want"), [
    ("/qdrant.Points/Upsert", "write"), ("/qdrant.Points/UpdateBatch", "write"),
    ("/qdrant.Points/Query", "read"), ("/qdrant.Points/Scroll", "read"),
    ("/qdrant.Points/CreateFieldIndex", None), ("/qdrant.Collections/Get", None),
    ("/grpc.health.v1.Health/Check", None),
])
def test_grpc_kind(method: str, want: object) -> None:
    assert grpc_kind(method) == want


def test_rename_grpc_keeps_everything_else() -> None:
    msg = qgrpc.QueryPoints(collection_name="docs", limit=7, with_payload=qgrpc.WithPayloadSelector(enable=True),
                            query=qgrpc.Query(nearest=qgrpc.VectorInput(dense=qgrpc.DenseVector(data=[0.25] * 300))))
    raw = msg.SerializeToString()
    assert grpc_collection(raw) == "docs"
    renamed = rename_grpc(raw, "docs_v2_with_a_much_longer_name" * 5)
    out = qgrpc.QueryPoints()
    out.ParseFromString(renamed)
    assert out.collection_name == "docs_v2_with_a_much_longer_name" * 5
    out.collection_name = "docs"
    assert out == msg
    assert grpc_collection(b"\xff\xff") is None and rename_grpc(b"\xff", "x") == b"\xff"


def _named(*names: str, tail: bytes = b"") -> bytes:
    return b"".join(b"\x0a" + bytes([len(n)]) + n.encode() for n in names) + tail


@pytest.mark.parametrize("raw, collection", [
    (_named("docs"), "docs"),
    (_named("docs", "_switchyard"), "_switchyard"),          # protobuf keeps the last: so do we
    (b"\x10\x01" + _named("a") + b"\x10\x00" + _named("b"), "b"),
    (_named("docs", tail=b"\xd8"), None),                    # a truncated tag: the upstream refuses it too
    (_named("docs", tail=b"\x12\x05ab"), None),              # a truncated length-delimited field
    (_named("docs", tail=b"\x0b"), None),                    # a group start: not in qdrant.Points requests
    (b"\x00\x01" + _named("docs"), None),                    # field number 0
    (b"", None),
])
def test_grpc_collection_is_the_one_the_upstream_reads(raw: bytes, collection: object) -> None:
    assert grpc_collection(raw) == collection
    if collection is not None:  # what protobuf itself reads
        parsed = qgrpc.DeletePoints()
        parsed.ParseFromString(raw)
        assert parsed.collection_name == collection


def test_rename_grpc_overrides_every_occurrence() -> None:
    raw = _named("docs", "_switchyard") + b"\x10\x01"
    renamed = rename_grpc(raw, "docs_v1")
    assert renamed == raw + _named("docs_v1")  # the client's bytes as sent, then the override
    assert grpc_collection(renamed) == "docs_v1"
    parsed = qgrpc.DeletePoints()
    parsed.ParseFromString(renamed)
    assert parsed.collection_name == "docs_v1" and parsed.wait
    truncated = _named("docs", tail=b"\x12\x05ab")
    assert rename_grpc(truncated, "x") == truncated  # never mended into a valid request

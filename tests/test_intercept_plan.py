"""Table tests of the pure planner and of both codecs (no servers)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client import grpc as qgrpc
from qdrant_client.conversions.conversion import grpc_to_payload, payload_to_grpc

from switchyard.proxy.dataplane.writes import grpc_intent
from switchyard.proxy.intercept import grpc_codec, rest_codec
from switchyard.proxy.intercept.operation import OpKind, Operation, PointInfo, VectorInfo, VectorKind
from switchyard.proxy.intercept.planner import Action, metadata_for, plan
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateSnapshot

SPEC = ModelSpec(
    id="mini-a", provider="hashing", model="hash-a", dimensions=4, distance="Cosine",
    normalize=True, version="1",
)
OTHER = ModelSpec(
    id="mini-b", provider="hashing", model="hash-b", dimensions=4, distance="Cosine",
    normalize=True, version="2",
)


def snapshot(enforce: bool, vector: str = "") -> StateSnapshot:
    return StateSnapshot(
        models=MappingProxyType({SPEC.id: SPEC, OTHER.id: OTHER}),
        bindings=MappingProxyType({"docs": Binding("docs", SPEC.id, enforce, vector)}),
        aliases=MappingProxyType({"docs_alias": "docs"}),
    )


def dense(n: int) -> VectorInfo:
    return VectorInfo(VectorKind.DENSE, n)


def op(*points: PointInfo, collection: str = "docs") -> Operation:
    return Operation(OpKind.UPSERT, collection, points, "rest")


FITS = PointInfo("1", {"": dense(4)})
SHORT = PointInfo("2", {"": dense(3)})
SPARSE = PointInfo("3", {"": VectorInfo(VectorKind.SPARSE)})
NO_VECTOR = PointInfo("4", {"other": dense(4)})
FOREIGN = PointInfo("5", {"": dense(4)}, {"embedding_model_id": "mini-b"})
SAME_MODEL = PointInfo("6", {"": dense(4)}, {"embedding_model_id": "mini-a"})
WRONG_DIMS_META = PointInfo("7", {"": dense(4)}, {"embedding_dimensions": 8})
DOCUMENT = PointInfo("8", {"": VectorInfo(VectorKind.INFERENCE)})

PLAN_TABLE = [
    # (operation, enforce, action, text in reason, foreign ids)
    (op(FITS, collection="unbound"), False, Action.FORWARD, "not bound", ()),
    (op(FITS), False, Action.STAMP, "stamping 1 point", ()),
    (op(FITS, collection="docs_alias"), False, Action.STAMP, "mini-a", ()),
    (op(FITS, SHORT), False, Action.STAMP, "enrich", ()),
    (op(FITS, FOREIGN), False, Action.STAMP, "1 point(s) name another model", ("5",)),
    (op(FITS), True, Action.STAMP, "enforce", ()),
    (op(SAME_MODEL), True, Action.STAMP, "enforce", ()),
    (op(DOCUMENT), True, Action.STAMP, "enforce", ()),
    (op(FITS, SHORT), True, Action.REJECT, "point 2: vector (unnamed) has 3 dimensions", ()),
    (op(SPARSE), True, Action.REJECT, "is sparse", ()),
    (op(NO_VECTOR), True, Action.REJECT, "has no vector (unnamed)", ()),
    (op(FOREIGN), True, Action.REJECT, "names embedding_model_id `mini-b`", ()),
    (op(WRONG_DIMS_META), True, Action.REJECT, "embedding_dimensions 8", ()),
    (op(SHORT, SHORT, SHORT, SHORT), True, Action.REJECT, "(and 1 more)", ()),
]


@pytest.mark.parametrize(("operation", "enforce", "action", "reason", "foreign"), PLAN_TABLE)
def test_plan_table(
    operation: Operation, enforce: bool, action: Action, reason: str, foreign: tuple[str, ...]
) -> None:
    result = plan(operation, snapshot(enforce))
    assert result.action is action
    assert reason in result.reason
    if action is Action.REJECT:
        assert "nothing was written" in result.reason
    if action is Action.STAMP:
        assert dict(result.stamp) == metadata_for(SPEC)
        assert result.foreign == foreign


def test_plan_named_vector_binding() -> None:
    named = PointInfo("1", {"text": dense(4), "img": dense(9)})
    assert plan(op(named), snapshot(True, vector="text")).action is Action.STAMP
    assert plan(op(named), snapshot(True, vector="img")).action is Action.REJECT


def test_metadata_includes_fingerprint_when_known() -> None:
    spec = ModelSpec(
        id="fp", provider="hashing", model="h", dimensions=4, distance="Cosine",
        normalize=True, version="3", fingerprint="sha256:" + "ab" * 32,
    )
    assert metadata_for(spec) == {
        "embedding_model_id": "fp", "embedding_dimensions": 4, "embedding_version": "3",
        "embedding_fingerprint": "sha256:" + "ab" * 32,
    }
    assert "embedding_fingerprint" not in metadata_for(SPEC)


# --- REST codec -------------------------------------------------------------------------------

TYPED_PAYLOAD = {
    "int": 7, "float": 7.0, "big": 2**62, "neg": -1.5e-300, "nested": {"a": [1, 2.5, None, {"b": True}]},
    "null": None, "str": "x", "embedding_version": "client-set",
}


def test_rest_list_upsert_stamps_and_keeps_types() -> None:
    body = {"points": [
        {"id": 1, "vector": [0.1, 0.2, 0.3, 0.4], "payload": dict(TYPED_PAYLOAD)},
        {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": {"": [1, 2, 3, 4]}},
    ]}
    operation, message = rest_codec.decode(OpKind.UPSERT, "docs", orjson.dumps(body))  # type: ignore[misc]
    assert [p.id for p in operation.points] == ["1", "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]
    assert operation.points[0].vectors[""] == dense(4)
    rest_codec.stamp(message, metadata_for(SPEC))
    out = orjson.loads(message.encode())
    first = out["points"][0]["payload"]
    for key, value in TYPED_PAYLOAD.items():
        assert first[key] == value and type(first[key]) is type(value)
    assert first["embedding_version"] == "client-set"  # enrich keeps what the client set
    assert first["embedding_model_id"] == "mini-a"
    assert out["points"][1]["payload"]["embedding_dimensions"] == 4
    assert out["points"][0]["vector"] == body["points"][0]["vector"]


def test_rest_batch_form_and_batch_update() -> None:
    batch = {"batch": {"ids": [1, 2], "vectors": {"text": [[1, 2, 3, 4], [5, 6, 7, 8]]}, "payloads": None}}
    operation, message = rest_codec.decode(OpKind.UPSERT, "docs", orjson.dumps(batch))  # type: ignore[misc]
    assert operation.points[1].vectors["text"] == dense(4)
    rest_codec.stamp(message, {"embedding_model_id": "m"})
    assert orjson.loads(message.encode())["batch"]["payloads"] == [
        {"embedding_model_id": "m"}, {"embedding_model_id": "m"}
    ]
    ops = {"operations": [
        {"delete": {"points": [9]}},
        {"upsert": {"points": [{"id": 3, "vector": {"indices": [1], "values": [0.5]}}]}},
        {"upsert": {"batch": {"ids": [4], "vectors": [[1, 2, 3, 4]]}}},
    ]}
    operation, message = rest_codec.decode(OpKind.BATCH, "docs", orjson.dumps(ops))  # type: ignore[misc]
    assert [p.id for p in operation.points] == ["3", "4"]
    assert operation.points[0].vectors[""].kind is VectorKind.SPARSE
    rest_codec.stamp(message, {"embedding_model_id": "m"})
    out = orjson.loads(message.encode())
    assert out["operations"][0] == {"delete": {"points": [9]}}
    assert out["operations"][2]["upsert"]["batch"]["payloads"] == [{"embedding_model_id": "m"}]


def test_rest_wide_integers_survive() -> None:
    raw = b'{"points":[{"id":1,"vector":[1,2,3,4],"payload":{"huge":123456789012345678901234567890}}]}'
    _, message = rest_codec.decode(OpKind.UPSERT, "docs", raw)  # type: ignore[misc]
    rest_codec.stamp(message, {"embedding_model_id": "m"})
    assert json.loads(message.encode())["points"][0]["payload"]["huge"] == 123456789012345678901234567890


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"points": 5}', b'{"points": [{"vector": [1]}]}',
                                 b'{"batch": {"ids": [1], "payloads": [{}, {}]}}', b'{"something": 1}'])
def test_rest_non_writes_are_left_alone(raw: bytes) -> None:
    assert rest_codec.decode(OpKind.UPSERT, "docs", raw) is None


def test_rest_inference_object_is_not_a_named_map() -> None:
    body = {"points": [{"id": 1, "vector": {"text": "hello", "model": "mini-a"}}]}
    operation, _ = rest_codec.decode(OpKind.UPSERT, "docs", orjson.dumps(body))  # type: ignore[misc]
    assert operation.points[0].vectors == {"": VectorInfo(VectorKind.INFERENCE)}


# --- gRPC codec -------------------------------------------------------------------------------

def _grpc_point(pid: int, dims: int, payload: dict | None = None) -> qgrpc.PointStruct:
    point = qgrpc.PointStruct(
        id=qgrpc.PointId(num=pid),
        vectors=qgrpc.Vectors(vector=qgrpc.Vector(dense=qgrpc.DenseVector(data=[0.5] * dims))),
    )
    for key, value in (payload or {}).items():
        point.payload[key].CopyFrom(value)
    return point


def test_grpc_upsert_stamps_and_keeps_client_values() -> None:
    msg = qgrpc.UpsertPoints(collection_name="docs", points=[
        _grpc_point(1, 4, {"embedding_version": qgrpc.Value(string_value="mine"),
                           "n": qgrpc.Value(integer_value=3), "f": qgrpc.Value(double_value=3.0)}),
        _grpc_point(2, 3),
    ])
    operation, message = grpc_codec.decode(grpc_codec.UPSERT_METHOD, msg.SerializeToString())  # type: ignore[misc]
    assert operation.collection == "docs"
    assert [p.vectors[""] for p in operation.points] == [dense(4), dense(3)]
    assert operation.points[0].meta == {"embedding_version": "mine"}
    grpc_codec.stamp(message, metadata_for(SPEC))
    out = qgrpc.UpsertPoints()
    out.ParseFromString(message.encode())
    first, second = out.points
    assert first.payload["embedding_version"].string_value == "mine"
    assert first.payload["n"].WhichOneof("kind") == "integer_value"
    assert first.payload["f"].WhichOneof("kind") == "double_value"
    assert second.payload["embedding_model_id"].string_value == "mini-a"
    assert second.payload["embedding_dimensions"].integer_value == 4
    assert list(second.vectors.vector.dense.data) == [0.5] * 3


def test_grpc_batch_update_only_touches_upserts() -> None:
    msg = qgrpc.UpdateBatchPoints(collection_name="docs", operations=[
        qgrpc.PointsUpdateOperation(upsert=qgrpc.PointsUpdateOperation.PointStructList(
            points=[_grpc_point(7, 4)])),
        qgrpc.PointsUpdateOperation(delete_points=qgrpc.PointsUpdateOperation.DeletePoints(
            points=qgrpc.PointsSelector(points=qgrpc.PointsIdsList(ids=[qgrpc.PointId(num=1)])))),
    ])
    operation, message = grpc_codec.decode(grpc_codec.BATCH_METHOD, msg.SerializeToString())  # type: ignore[misc]
    assert [p.id for p in operation.points] == ["7"]
    grpc_codec.stamp(message, {"embedding_model_id": "m"})
    out = qgrpc.UpdateBatchPoints()
    out.ParseFromString(message.encode())
    assert out.operations[0].upsert.points[0].payload["embedding_model_id"].string_value == "m"
    assert out.operations[1] == msg.operations[1]


_SCALAR = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=6)
_PAYLOADS = st.dictionaries(
    st.sampled_from(["text", "n", "embedding_model_id", "embedding_dimensions", "embedding_version", "x"]),
    _SCALAR | st.lists(_SCALAR, max_size=3), max_size=5)
_IDS = st.integers(0, 2**64 - 1) | st.uuids().map(str)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_IDS, _PAYLOADS), max_size=6))
def test_grpc_one_walk_reads_what_two_walks_read(points: list[tuple[Any, dict[str, Any]]]) -> None:
    """``decode(with_payloads=True)`` gives the planner the same points as the plain decode
    (ids, metadata keys; metadata values as JSON, as qdrant-client reads them), and the mirror's intent built from its ``points_json`` equals the intent
    built by walking the message again."""
    msg = qgrpc.UpsertPoints(collection_name="docs")
    for pid, payload in points:
        point = msg.points.add(payload=payload_to_grpc(payload))
        point.id.CopyFrom(qgrpc.PointId(num=pid) if isinstance(pid, int) else qgrpc.PointId(uuid=pid))
        point.vectors.vector.dense.data.extend([0.5, 0.25])
    raw = msg.SerializeToString()
    plain, one = grpc_codec.decode(grpc_codec.UPSERT_METHOD, raw), grpc_codec.decode(
        grpc_codec.UPSERT_METHOD, raw, with_payloads=True)
    assert plain is not None and one is not None and plain[1].points_json is None
    assert [p.id for p in one[0].points] == [p.id for p in plain[0].points]
    as_json = [grpc_to_payload(p.payload) for p in msg.points]  # qdrant-client's reading
    assert [list(p.meta) for p in one[0].points] == [list(p.meta) for p in plain[0].points]
    assert [orjson.dumps(dict(p.meta), option=orjson.OPT_SORT_KEYS) for p in one[0].points] == [
        orjson.dumps({k: j[k] for k in p.meta}, option=orjson.OPT_SORT_KEYS) for p, j in zip(plain[0].points, as_json)]
    assert [pid for pid, _ in one[1].points_json or []] == [pid for pid, _ in points]
    walked = grpc_intent("Upsert", raw, "text", plain[1].message)
    read = grpc_intent("Upsert", raw, "text", one[1].message, one[1].points_json)
    assert walked is not None and read is not None
    assert walked.ids == read.ids and walked.kinds == read.kinds
    assert [(p.id, orjson.dumps(p.payload, option=orjson.OPT_SORT_KEYS), p.text, p.vector) for p in walked.upserts] == [
        (p.id, orjson.dumps(p.payload, option=orjson.OPT_SORT_KEYS), p.text, p.vector) for p in read.upserts]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_IDS, _PAYLOADS), max_size=6), st.booleans(), st.booleans())
def test_grpc_upsert_known_metadata_plans_and_stamps_as_a_full_look(
        points: list[tuple[Any, dict[str, Any]]], enforce: bool, with_payloads: bool) -> None:
    """The upsert decode marks the points that set metadata; the plan read from those alone,
    and the stamp that skips its lookups, equal a plan of every point and a stamp that looks."""
    msg = qgrpc.UpsertPoints(collection_name="docs")
    for pid, payload in points:
        point = msg.points.add(payload=payload_to_grpc(payload))
        point.id.CopyFrom(qgrpc.PointId(num=pid) if isinstance(pid, int) else qgrpc.PointId(uuid=pid))
        point.vectors.vector.dense.data.extend([0.5] * 4)
    raw = msg.SerializeToString()
    decoded = grpc_codec.decode(grpc_codec.UPSERT_METHOD, raw, with_payloads=with_payloads)
    looked = grpc_codec.decode(grpc_codec.UPSERT_METHOD, raw)
    assert decoded is not None and looked is not None
    op, message = decoded
    every = list(op.points)
    marked = [p for p in every if p.meta]
    assert op.with_meta is not None and len(op.points) == len(points)
    assert [(p.id, repr(dict(p.meta))) for p in op.with_meta] == [  # NaN != NaN: compare as text
        (p.id, repr(dict(p.meta))) for p in marked]
    full = replace(op, points=tuple(every), with_meta=None)
    state = snapshot(enforce)
    assert plan(op, state) == plan(full, state)
    looked[1].metadata_at = None  # the stamp looks in every payload
    grpc_codec.stamp(message, metadata_for(SPEC))
    grpc_codec.stamp(looked[1], metadata_for(SPEC))
    assert message.encode() == looked[1].encode()


def test_grpc_garbage_is_left_alone() -> None:
    assert grpc_codec.decode(grpc_codec.UPSERT_METHOD, b"\xff\xff\xff") is None


@pytest.mark.parametrize("bindings, aliases, name, physical, expected", [
    # no migration: the call stays on the name the client used
    ({"docs": "a"}, {}, "docs", "docs", "docs"),
    # a migration routes writes on an alias-bound logical name to the alias's own collection
    ({"docs": "a"}, {"docs": "docs_v1"}, "docs", "docs_v1", "docs"),
    # ... to the target, bound to model B: the target's binding wins
    ({"docs": "a", "docs_v2": "b"}, {"docs": "docs_v1"}, "docs", "docs_v2", "docs_v2"),
    # the source itself bound: its binding
    ({"docs_v1": "a"}, {"docs": "docs_v1"}, "docs", "docs_v1", "docs_v1"),
    # routed somewhere the alias does not point: never the alias's binding
    ({"docs": "a"}, {"docs": "docs_v1"}, "docs", "other", "other"),
])
def test_binding_name_follows_an_alias_binding_only_to_its_own_collection(
        bindings: dict[str, str], aliases: dict[str, str], name: str, physical: str, expected: str) -> None:
    snap = StateSnapshot(models=MappingProxyType({SPEC.id: SPEC}),
                         bindings=MappingProxyType({c: Binding(c, SPEC.id) for c in bindings}),
                         aliases=MappingProxyType(aliases))
    assert snap.binding_name(name, physical) == expected

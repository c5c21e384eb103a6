"""Tables for the pure parts of the ``named-vector`` (in place) kind: write planning, read
rewriting, the backfill's conditional fill, verify's verdicts, routing and plan reasons."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from qdrant_client import grpc as pb
from qdrant_client import models

from switchyard.proxy.dataplane import in_place
from switchyard.proxy.dataplane.in_place import (
    VECTOR_DIGEST, InPlace, check_point, fill_operations, plan_grpc_points, plan_rest_write,
    rewrite_grpc, rewrite_rest, side_filter_grpc, side_filter_rest, text_digest,
)
from switchyard.proxy.dataplane.in_place_reads import switched_plan, write_config
from switchyard.proxy.dataplane.query_vectors import SlotInfo
from switchyard.proxy.migration.kinds import named_vector
from switchyard.proxy.migration.record import (
    CANCELLED, COMPLETE, DUAL_WRITE, PLANNED, READS_SWITCHED, VERIFIED, WRITES_SWITCHED, Migration,
)
from switchyard.proxy.modelspec import ModelSpec

CFG = InPlace(new="b", old="a", text_field="text", model_b=("mb", "prov-b"), model_a=("ma",))
B = [0.5, 0.25]


def _apply(plan: in_place.WritePlan, vector: list[float] = B) -> None:
    for fill in plan.fills:
        fill.put(vector)


# ---------------------------------------------------------------- writes (REST)

WRITE_ROWS: list[tuple[str, dict[str, Any], int, int, int]] = [
    # (case, point, fills, client-sent, refusals)
    ("text in payload", {"id": 1, "vector": {"a": [1.0]}, "payload": {"text": "hi"}}, 1, 0, 0),
    ("no vector at all", {"id": 1, "payload": {"text": "hi"}}, 1, 0, 0),
    ("client sent b", {"id": 1, "vector": {"a": [1.0], "b": [0.1, 0.2]}, "payload": {"text": "hi"}}, 0, 1, 0),
    ("client sent b, no text", {"id": 1, "vector": {"b": [0.1, 0.2]}}, 0, 1, 0),
    ("inference object for b", {"id": 1, "vector": {"a": [1.0], "b": {"text": "t", "model": "mb"}}}, 1, 0, 0),
    ("inference object for a only", {"id": 1, "vector": {"a": {"text": "t", "model": "ma"}}}, 2, 0, 0),
    ("no text, no b", {"id": 1, "vector": {"a": [1.0]}, "payload": {"other": 1}}, 0, 0, 1),
    ("unnamed vector", {"id": 1, "vector": [1.0], "payload": {"text": "x"}}, 0, 0, 1),
    ("text not a string", {"id": 1, "vector": {"a": [1.0]}, "payload": {"text": 5}}, 0, 0, 1),
]


@pytest.mark.parametrize("case,point,fills,sent,refused", WRITE_ROWS, ids=[r[0] for r in WRITE_ROWS])
def test_rest_point_plan(case: str, point: dict[str, Any], fills: int, sent: int, refused: int) -> None:
    plan, _ = plan_rest_write("/points", {"points": [point]}, CFG)
    assert (len(plan.fills), plan.client_sent, len(plan.refusals)) == (fills, sent, refused)
    if refused:
        assert "point 1" in plan.reason() and "nothing was written" in plan.reason()


def test_rest_fill_keeps_old_vector_and_stamps_digest_on_a_copy() -> None:
    body = {"points": [{"id": 7, "vector": {"a": [1.0, 0.0]}, "payload": {"text": "doc", "k": 1}}]}
    plan, result = plan_rest_write("/points", body, CFG)
    _apply(plan)
    out = result()
    assert out["points"][0]["vector"] == {"a": [1.0, 0.0], "b": B}
    assert out["points"][0]["payload"] == {"text": "doc", "k": 1, VECTOR_DIGEST: {"b": text_digest("doc")}}
    assert body["points"][0]["vector"] == {"a": [1.0, 0.0]}  # the client's body is not changed


def test_rest_inference_object_for_b_is_replaced_by_the_vector() -> None:
    body = {"points": [{"id": 1, "vector": {"a": [1.0], "b": {"text": "q", "model": "mb"}}}]}
    plan, result = plan_rest_write("/points", body, CFG)
    assert [f.text for f in plan.fills] == ["q"]
    _apply(plan)
    assert result()["points"][0]["vector"]["b"] == B
    assert result()["points"][0]["payload"][VECTOR_DIGEST] == {"b": text_digest("q")}


def test_client_sent_new_vector_gets_the_digest_of_its_text() -> None:
    body = {"points": [{"id": 1, "vector": {"a": [1.0], "b": [0.3, 0.4]}, "payload": {"text": "z"}}]}
    plan, result = plan_rest_write("/points", body, CFG)
    assert not plan.fills
    out = result()["points"][0]
    assert out["vector"]["b"] == [0.3, 0.4]
    assert out["payload"][VECTOR_DIGEST] == {"b": text_digest("z")}


def test_batch_form_becomes_points() -> None:
    body = {"batch": {"ids": [1, 2], "vectors": {"a": [[1.0], [2.0]]},
                      "payloads": [{"text": "one"}, {"text": "two"}]}}
    plan, result = plan_rest_write("/points", body, CFG)
    assert [f.text for f in plan.fills] == ["one", "two"]
    _apply(plan)
    points = result()["points"]
    assert [p["id"] for p in points] == [1, 2]
    assert [p["vector"] for p in points] == [{"a": [1.0], "b": B}, {"a": [2.0], "b": B}]


def test_batch_update_plans_upserts_only() -> None:
    body = {"operations": [
        {"upsert": {"points": [{"id": 1, "vector": {"a": [1.0]}, "payload": {"text": "t"}}]}},
        {"delete": {"points": [2]}},
        {"set_payload": {"payload": {"text": "new"}, "points": [3]}},
    ]}
    plan, result = plan_rest_write("/points/batch", body, CFG)
    assert [f.point_id for f in plan.fills] == [1] and not plan.refusals
    _apply(plan)
    assert result()["operations"][1:] == body["operations"][1:]


@pytest.mark.parametrize("rest,body", [
    ("/points/delete", {"points": [1]}),
    ("/points/payload", {"payload": {"x": 1}, "points": [1]}),
    ("/points/vectors", {"points": [{"id": 1, "vector": {"a": [1.0]}}]}),
])
def test_writes_without_points_plan_nothing(rest: str, body: dict[str, Any]) -> None:
    plan, result = plan_rest_write(rest, body, CFG)
    assert (plan.fills, plan.client_sent, plan.refusals) == ([], 0, [])
    assert result() == body


def test_writes_switched_fills_the_old_vector_too() -> None:
    cfg = dataclasses.replace(CFG, fill_old=True, require_old=True)
    body = {"points": [{"id": 1, "vector": {"b": [0.3, 0.4]}, "payload": {"text": "t"}},
                       {"id": 2, "vector": {"b": [0.3, 0.4]}}]}
    plan, result = plan_rest_write("/points", body, cfg)
    assert [(f.point_id, f.role) for f in plan.fills] == [(1, "old")]
    assert len(plan.refusals) == 1 and "point 2" in plan.refusals[0] and "model A" in plan.refusals[0]
    _apply(plan, [9.0])
    assert result()["points"][0]["vector"] == {"b": [0.3, 0.4], "a": [9.0]}
    best_effort = dataclasses.replace(CFG, fill_old=True)  # before switch-writes, and after its rollback
    plan, _ = plan_rest_write("/points", body, best_effort)
    assert [(f.point_id, f.role) for f in plan.fills] == [(1, "old")] and not plan.refusals


# ---------------------------------------------------------------- writes (gRPC)

def _grpc_point(pid: int, vectors: dict[str, Any] | None, payload: dict[str, Any]) -> Any:
    p = pb.PointStruct(id=pb.PointId(num=pid))
    for k, v in payload.items():
        p.payload[k].string_value = v
    for name, value in (vectors or {}).items():
        if isinstance(value, tuple):
            p.vectors.vectors.vectors[name].document.CopyFrom(pb.Document(text=value[0], model=value[1]))
        else:
            p.vectors.vectors.vectors[name].dense.data[:] = value
    return p


def test_grpc_points_plan_and_fill() -> None:
    points = [
        _grpc_point(1, {"a": [1.0]}, {"text": "one"}),
        _grpc_point(2, {"a": [1.0], "b": [0.7, 0.7]}, {"text": "two"}),
        _grpc_point(3, {"a": [1.0], "b": ("three", "mb")}, {}),
        _grpc_point(4, {"a": [1.0]}, {}),
    ]
    unnamed = pb.PointStruct(id=pb.PointId(num=5), vectors=pb.Vectors(vector=pb.Vector(data=[1.0])))
    plan = plan_grpc_points([*points, unnamed], CFG)
    assert [(f.point_id, f.text) for f in plan.fills] == [(1, "one"), (3, "three")]
    assert plan.client_sent == 1
    assert [r.split(":")[0] for r in plan.refusals] == ["point 4", "point 5"]
    _apply(plan)
    assert list(points[0].vectors.vectors.vectors["b"].dense.data) == B
    assert list(points[0].vectors.vectors.vectors["a"].dense.data) == [1.0]
    assert points[2].vectors.vectors.vectors["b"].WhichOneof("vector") == "dense"
    digest = points[0].payload[VECTOR_DIGEST].struct_value.fields["b"].string_value
    assert digest == text_digest("one")
    assert points[1].payload[VECTOR_DIGEST].struct_value.fields["b"].string_value == text_digest("two")


# ---------------------------------------------------------------- reads

REWRITE_ROWS: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("query without using", "query", {"query": [1.0]}, "b", {"query": [1.0], "using": "b"}),
    ("query naming old", "query", {"query": [1.0], "using": "a"}, "b", {"query": [1.0], "using": "b"}),
    ("query naming another vector", "query", {"query": [1.0], "using": "sparse"}, "b",
     {"query": [1.0], "using": "sparse"}),
    ("recommend", "recommend", {"positive": [1]}, "b", {"positive": [1], "using": "b"}),
    ("search plain vector", "search", {"vector": [1.0]}, "b", {"vector": {"name": "b", "vector": [1.0]}}),
    ("search named old", "search", {"vector": {"name": "a", "vector": [1.0]}}, "b",
     {"vector": {"name": "b", "vector": [1.0]}}),
    ("prefetch", "query", {"prefetch": [{"query": [1.0]}], "query": {"fusion": "rrf"}}, "b",
     {"prefetch": [{"query": [1.0], "using": "b"}], "query": {"fusion": "rrf"}, "using": "b"}),
]


@pytest.mark.parametrize("case,family,body,to,expected", REWRITE_ROWS, ids=[r[0] for r in REWRITE_ROWS])
def test_rewrite_rest_using(case: str, family: str, body: dict[str, Any], to: str, expected: dict[str, Any]) -> None:
    assert rewrite_rest(family, body, CFG, to) == expected


def test_rest_sides_are_disjoint_and_keep_the_client_filter() -> None:
    flt = {"must": [{"key": "k", "match": {"value": 1}}]}
    new = rewrite_rest("query", {"query": [1.0], "filter": flt}, CFG, "b", True)
    old = rewrite_rest("query", {"query": [1.0], "filter": flt}, CFG, "a", False)
    assert new == {"query": [1.0], "using": "b", "filter": {"must": [{"has_vector": "b"}, flt]}}
    assert old == {"query": [1.0], "using": "a", "filter": {"must": [flt], "must_not": [{"has_vector": "b"}]}}
    assert side_filter_rest(None, "b", True) == {"must": [{"has_vector": "b"}]}
    assert side_filter_rest(None, "b", False) == {"must_not": [{"has_vector": "b"}]}


def test_rewrite_grpc_using_and_sides() -> None:
    msg = pb.QueryPoints(collection_name="c", query=pb.Query(nearest=pb.VectorInput(dense=pb.DenseVector(data=[1.0]))),
                         prefetch=[pb.PrefetchQuery(using="a")])
    out = rewrite_grpc("query", msg, CFG, "b", True)
    assert out.using == "b" and out.prefetch[0].using == "b"
    assert out.filter.must[0].has_vector.has_vector == "b"
    assert out.prefetch[0].filter.must[0].has_vector.has_vector == "b"
    assert not msg.HasField("using")  # the client's message is not changed
    search = rewrite_grpc("search", pb.SearchPoints(collection_name="c", vector=[1.0], vector_name="sparse"),
                          CFG, "b")
    assert search.vector_name == "sparse"
    search = rewrite_grpc("search", pb.SearchPoints(collection_name="c", vector=[1.0]), CFG, "a", False)
    assert search.vector_name == "a" and search.filter.must_not[0].has_vector.has_vector == "b"
    client = pb.Filter(must=[pb.Condition(has_id=pb.HasIdCondition(has_id=[pb.PointId(num=1)]))])
    both = side_filter_grpc(client, "b", False)
    assert both.must_not[0].has_vector.has_vector == "b" and both.must[0].filter == client


SPEC_A = ModelSpec(id="ma", provider="hashing", model="ma", dimensions=4, distance="Cosine")
SPEC_B = ModelSpec(id="mb", provider="hashing", model="prov-b", dimensions=8, distance="Cosine")
MODELS = {"ma": SPEC_A, "mb": SPEC_B}


@pytest.mark.parametrize("phase,slots,to,model,fills,kept", [
    (READS_SWITCHED, [], "b", "mb", (), False),
    (READS_SWITCHED, [SlotInfo(text="q", model="ma")], "b", "mb", ((0, "q"),), False),  # A's document: B embeds it
    (READS_SWITCHED, [SlotInfo(text="q", model="unknown")], "b", "mb", (), False),
    (READS_SWITCHED, [SlotInfo(dims=8)], "b", "mb", (), False),  # B's raw vector
    (READS_SWITCHED, [SlotInfo(dims=4)], "a", "ma", (), True),  # A's raw vector: ranked by the old vector
    (COMPLETE, [SlotInfo(text="q", model="mb")], "b", "mb", ((0, "q"),), False),
    (DUAL_WRITE, [SlotInfo(text="q", model="ma")], "a", "ma", ((0, "q"),), False),  # before: the old one
    (VERIFIED, [SlotInfo(dims=4)], "a", "ma", (), False),
    (DUAL_WRITE, [SlotInfo(dims=8)], "b", "mb", (), True),
])
def test_switched_plan(phase: str, slots: list[SlotInfo], to: str, model: str, fills: tuple[Any, ...],
                       kept: bool) -> None:
    plan = switched_plan(slots, CFG, SPEC_A, SPEC_B, phase, MODELS)
    assert (plan.to, plan.model, plan.fills, bool(plan.kept)) == (to, model, fills, kept)


# ---------------------------------------------------------------- backfill and verify

def test_fill_operations_are_conditional_per_point() -> None:
    ops = fill_operations(CFG, [(1, [0.1], "x"), (2, [0.2], "y")])
    assert [type(o).__name__ for o in ops] == ["UpdateVectorsOperation", "SetPayloadOperation"] * 2
    first = ops[0].update_vectors
    assert first.points[0].id == 1 and first.points[0].vector == {"b": [0.1]}
    assert first.update_filter.must_not == [models.HasVectorCondition(has_vector="b")]
    assert first.update_filter.must[0].match.value == "x"
    digest = ops[1].set_payload
    assert digest.payload == {VECTOR_DIGEST: {"b": text_digest("x")}}
    assert models.HasIdCondition(has_id=[1]) in digest.filter.must
    assert models.HasVectorCondition(has_vector="b") in digest.filter.must
    repair = fill_operations(CFG, [(1, [0.1], "x")], lacking_only=False)
    assert repair[0].update_vectors.update_filter.must_not is None


@pytest.mark.parametrize("names,payload,verdict", [
    (["a", "b"], {"text": "t", VECTOR_DIGEST: {"b": text_digest("t")}}, "ok"),
    (["a"], {"text": "t"}, "missing"),
    (["a", "b"], {"text": "t"}, "stale"),
    (["a", "b"], {"text": "changed", VECTOR_DIGEST: {"b": text_digest("t")}}, "stale"),
    (["b"], {}, "ok"),  # no text: the client's own vector
    (["a", "b"], {VECTOR_DIGEST: {"b": "x"}}, "stale"),
])
def test_check_point(names: list[str], payload: dict[str, Any], verdict: str) -> None:
    assert check_point(names, payload, CFG)[0] == verdict


# ---------------------------------------------------------------- kind: routing, phases, plan

def _m(phase: str, read_mode: str = "source") -> Migration:
    return Migration(id="m", logical="docs", source="docs", target="docs", model_a="ma", model_b="mb",
                     vector="a", kind="named-vector", options={"vector": "b", "old_vector": "a"},
                     phase=phase, read_mode=read_mode)


@pytest.mark.parametrize("phase,mode,merge,shadow", [
    (PLANNED, "merged", False, False), (DUAL_WRITE, "source", False, False),
    (DUAL_WRITE, "merged", True, False), (VERIFIED, "shadow", False, True),
    (READS_SWITCHED, "merged", False, False), (WRITES_SWITCHED, "source", False, False),
    (COMPLETE, "source", False, False), (CANCELLED, "merged", False, False),
])
def test_route_never_mirrors(phase: str, mode: str, merge: bool, shadow: bool) -> None:
    m = _m(phase, mode)
    read, write = named_vector.route(m, "read"), named_vector.route(m, "write")
    assert (read.merge, read.shadow) == (merge, shadow)
    assert write.secondary is None and read.secondary is None
    assert {read.primary, read.authority, write.primary, write.authority} == {"docs"}


@pytest.mark.parametrize("phase,fills,fill_old,require_old", [
    (PLANNED, False, False, False), (DUAL_WRITE, True, True, False), (VERIFIED, True, True, False),
    (READS_SWITCHED, True, True, False), (WRITES_SWITCHED, True, True, True),
    (COMPLETE, True, False, False), (CANCELLED, False, False, False),
])
def test_write_phases(phase: str, fills: bool, fill_old: bool, require_old: bool) -> None:
    cfg = write_config(_m(phase), MODELS)
    assert (cfg is not None) == fills
    if cfg is not None:
        assert (cfg.new, cfg.old, cfg.fill_old, cfg.require_old, cfg.model_b) == (
            "b", "a", fill_old, require_old, ("mb", "prov-b"))


@pytest.mark.parametrize("options,reason", [
    ({}, "needs --vector"),
    ({"vector": "has space"}, "letters, digits"),
    ({"vector": "b", "size": 3}, "unknown named-vector option `size`"),
])
def test_option_reasons(options: dict[str, Any], reason: str) -> None:
    assert any(reason in r for r in named_vector.option_reasons(options))
    assert named_vector.option_reasons({"vector": "dense_b"}) == []


def test_cleanup_removes_the_old_vector_only() -> None:
    kind = named_vector.NamedVectorKind()
    lines = kind.cleanup_removes(_m(COMPLETE))
    assert len(lines) == 1 and "vector `a`" in lines[0] and "DELETE /collections/docs/vectors/a" in lines[0]
    assert kind.target_vector_name(_m(COMPLETE)) == "b"


def test_cli_vector_flag_is_the_vector_option() -> None:
    import argparse

    from switchyard.proxy.migration.command import plan_options, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["migrate", "plan", "docs", "--kind", "named-vector", "--to-model", "b",
                              "--vector", "dense_b"])
    assert plan_options(args) == {"vector": "dense_b"}

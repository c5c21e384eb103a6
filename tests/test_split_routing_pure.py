"""Tables for the split kind's pure routing: keys, admission, levelling, read pins and merges."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.proxy.dataplane.split_reads import (check_fanout, fanout_limit, id_order, merge_count,
                                                    merge_retrieve, merge_scored, merge_scroll, pins,
                                                    targets_for)
from switchyard.proxy.dataplane.split_routing import MISSING, SplitLayout, admit_rest_batch, admit_rest_write, \
    field_value, key_id, level
from switchyard.proxy.errors import BadRequest

SOURCES = ("wiki", "news", "docs")
TYPES = ("text", "code")


def layout() -> SplitLayout:
    return SplitLayout(("source_title", "type"),
                       {key_id([s, t]): f"{s}_{t}" for s in SOURCES for t in TYPES})


def nested_layout() -> SplitLayout:
    return SplitLayout(("meta.tenant",), {key_id([1]): "t1", key_id([2]): "t2", key_id([True]): "tt"})


@pytest.mark.parametrize("payload,path,expected", [
    ({"a": 1}, "a", 1),
    ({"a": {"b": "x"}}, "a.b", "x"),
    ({"a": {"b": None}}, "a.b", None),
    ({"a": [{"b": 1}]}, "a.b", MISSING),
    ({}, "a", MISSING),
    ("not a dict", "a", MISSING),
])
def test_field_value(payload: Any, path: str, expected: Any) -> None:
    assert field_value(payload, path) == expected or field_value(payload, path) is expected


def test_key_ids_keep_types_apart() -> None:
    assert len({key_id([1]), key_id([True]), key_id(["1"])}) == 3


@pytest.mark.parametrize("payload,target,why", [
    ({"source_title": "wiki", "type": "code"}, "wiki_code", ""),
    ({"source_title": "wiki"}, None, "`type` is missing"),
    ({"source_title": "wiki", "type": ["code"]}, None, "list, not a keyword"),
    ({"source_title": "blog", "type": "code"}, None, "has no target"),
    ({"source_title": "wiki", "type": None}, None, "NoneType"),
])
def test_target_of(payload: dict[str, Any], target: str | None, why: str) -> None:
    name, reason = layout().target_of(payload)
    assert name == target
    assert why in reason


def test_nested_and_typed_keys() -> None:
    lay = nested_layout()
    assert lay.target_of({"meta": {"tenant": 1}})[0] == "t1"
    assert lay.target_of({"meta": {"tenant": True}})[0] == "tt"
    assert lay.target_of({"meta": {"tenant": "1"}})[0] is None


def test_layout_refuses_colliding_targets_and_round_trips() -> None:
    with pytest.raises(BadRequest):
        SplitLayout(("a",), {key_id(["x"]): "same", key_id(["y"]): "same"})
    with pytest.raises(BadRequest):
        SplitLayout((), {})
    assert SplitLayout.from_dict(layout().to_dict()) == layout()
    assert layout().collections == tuple(sorted(f"{s}_{t}" for s in SOURCES for t in TYPES))


OK = {"source_title": "news", "type": "text"}


@pytest.mark.parametrize("kind,op,refused", [
    ("upsert", {"points": [{"id": 1, "vector": [0.1], "payload": OK}]}, None),
    ("upsert", {"points": [{"id": 1, "payload": OK}, {"id": 2, "payload": {"type": "text"}}]}, "point 2"),
    ("upsert", {"points": [{"id": 3, "payload": {"source_title": "blog", "type": "text"}}]}, "no target"),
    ("upsert", {"batch": {"ids": [1, 2], "vectors": [[0.1], [0.2]], "payloads": [OK, OK]}}, None),
    ("upsert", {"batch": {"ids": [1, 2], "vectors": [[0.1], [0.2]], "payloads": [OK]}}, "point 2"),
    ("upsert", {"batch": {"ids": [1], "vectors": [[0.1]]}}, "point 1"),
    ("overwrite_payload", {"points": [1], "payload": OK}, None),
    ("overwrite_payload", {"points": [1], "payload": {"other": 1}}, "without a target"),
    ("set_payload", {"points": [1], "payload": {"other": 1}}, None),
    ("set_payload", {"points": [1], "payload": {"type": "code"}}, None),
    ("set_payload", {"points": [1], "payload": {"type": "image"}}, "no target was created"),
    ("set_payload", {"points": [1], "payload": {"type": 5}}, "no target was created"),
    ("set_payload", {"points": [1], "payload": {"type": {"x": 1}}}, "dict"),
    ("delete_payload", {"points": [1], "keys": ["other"]}, None),
    ("delete_payload", {"points": [1], "keys": ["type"]}, "removes split field `type`"),
    ("clear_payload", {"points": [1]}, "clear_payload"),
    ("delete", {"points": [1, 2]}, None),
    ("delete", {"filter": {"must": [{"key": "type", "match": {"value": "x"}}]}}, None),
    ("update_vectors", {"points": [{"id": 1, "vector": [0.1]}]}, None),
])
def test_admission(kind: str, op: dict[str, Any], refused: str | None) -> None:
    why = admit_rest_write(layout(), kind, op)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


@pytest.mark.parametrize("kind,op,refused", [
    ("set_payload", {"points": [1], "payload": {"meta": {"x": 1}}}, "replaces `meta`"),
    ("set_payload", {"points": [1], "payload": {"meta": {"tenant": 2}}}, None),
    ("set_payload", {"points": [1], "payload": {"tenant": 3}, "key": "meta"}, "no target was created"),
    ("set_payload", {"points": [1], "payload": {"tenant": 2}, "key": "meta"}, None),
    ("set_payload", {"points": [1], "payload": {"y": 2}, "key": "other"}, None),
    ("delete_payload", {"points": [1], "keys": ["meta"]}, "meta.tenant"),
])
def test_admission_nested(kind: str, op: dict[str, Any], refused: str | None) -> None:
    why = admit_rest_write(nested_layout(), kind, op)
    assert (why is None) if refused is None else (why is not None and refused in why)


def test_batch_admission_names_first_refusal() -> None:
    ops = [{"upsert": {"points": [{"id": 1, "payload": OK}]}}, {"clear_payload": {"points": [1]}}]
    assert "clear_payload" in (admit_rest_batch(layout(), ops) or "")
    assert admit_rest_batch(layout(), ops[:1]) is None


def test_level_moves_deletes_and_reports() -> None:
    moved = {"id": 1, "payload": {"source_title": "wiki", "type": "code"}}
    stray = {"id": 3, "payload": {"source_title": "blog", "type": "code"}}
    out = level(layout(), [1, 2, 3], {"1": moved, "3": stray})
    assert out.legs["wiki_code"].upserts == [moved]
    assert all(leg.upserts == [] for name, leg in out.legs.items() if name != "wiki_code")
    assert out.legs["wiki_code"].deletes == [2, 3]
    for name, leg in out.legs.items():
        if name != "wiki_code":
            assert leg.deletes == [1, 2, 3]
    assert list(out.unroutable) == ["3"] and "no target" in out.unroutable["3"]


# -- reads ---------------------------------------------------------------------------------------

def must(*conds: Any) -> dict[str, Any]:
    return {"must": list(conds)}


def m(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "match": {"value": value}}


ALL = tuple(sorted(f"{s}_{t}" for s in SOURCES for t in TYPES))


@pytest.mark.parametrize("flt,expected", [
    (None, ALL),
    ({}, ALL),
    (must(m("source_title", "wiki"), m("type", "code")), ("wiki_code",)),
    (must(m("source_title", "wiki")), ("wiki_code", "wiki_text")),
    (must(must(m("source_title", "news")), m("type", "text")), ("news_text",)),  # nested must
    ({"must": m("type", "code")}, ("docs_code", "news_code", "wiki_code")),  # single condition
    (must({"key": "type", "match": {"any": ["code"]}}, m("source_title", "docs")), ("docs_code",)),
    (must({"key": "type", "match": {"any": ["code", "text"]}}, m("source_title", "docs")),
     ("docs_code", "docs_text")),
    (must(m("type", "code"), m("type", "text")), ()),  # contradiction: nothing can match
    (must(m("source_title", "blog")), ()),
    ({"should": [m("source_title", "wiki")]}, ALL),  # should does not pin
    ({"must_not": [m("source_title", "wiki")]}, ALL),
    (must({"should": [m("type", "code")]}, m("source_title", "wiki")), ("wiki_code", "wiki_text")),
    (must({"key": "type", "match": {"text": "code"}}), ALL),  # full-text match does not pin
    (must({"key": "type", "match": {"except": ["code"]}}), ALL),
    (must(m("other", "x")), ALL),
])
def test_targets_for(flt: Any, expected: tuple[str, ...]) -> None:
    route = targets_for(layout(), flt)
    assert route.collections == expected
    assert route.reason.startswith("split: ")


def test_pins_typed_and_deep() -> None:
    assert pins(must(m("meta.tenant", 1)), ("meta.tenant",)) == {"meta.tenant": {key_id([1])}}
    assert targets_for(nested_layout(), must(m("meta.tenant", True))).collections == ("tt",)
    deep: dict[str, Any] = m("meta.tenant", 2)
    for _ in range(5):
        deep = must(deep)
    assert targets_for(nested_layout(), deep).collections == ("t2",)
    for _ in range(10):
        deep = must(deep)
    assert len(targets_for(nested_layout(), deep).collections) == 3  # too deep: not searched


def test_fanout_bound() -> None:
    wide = SplitLayout(("n",), {key_id([i]): f"c{i:03}" for i in range(70)})
    route = targets_for(wide, None)
    assert "at most 64" in (check_fanout(wide, route) or "")
    assert check_fanout(wide, targets_for(wide, must(m("n", 3)))) is None


def hit(pid: int, score: float) -> dict[str, Any]:
    return {"id": pid, "score": score}


@pytest.mark.parametrize("limit,offset,distance,expected", [
    (3, 0, "Cosine", [1, 2, 10]),  # a tie: the earlier target first
    (2, 1, "Cosine", [2, 10]),
    (10, 0, "Cosine", [1, 2, 10, 20, 3]),
    (2, 0, "Euclid", [3, 20]),
    (0, 0, "Cosine", []),
    (3, 4, "Cosine", [3]),
])
def test_merge_scored(limit: int, offset: int, distance: str, expected: list[int]) -> None:
    a = [hit(1, 0.9), hit(2, 0.7), hit(3, 0.1)]
    b = [hit(10, 0.7), hit(20, 0.5)]
    if distance == "Euclid":
        a, b = list(reversed(a)), list(reversed(b))
    assert [p["id"] for p in merge_scored([a, b], limit, offset, distance)] == expected
    assert fanout_limit(limit, offset) == limit + offset


def test_merge_scroll_ids_order_and_next() -> None:
    u1, u2 = "00000000-0000-0000-0000-000000000001", "ffffffff-0000-0000-0000-000000000000"
    pages = [[{"id": 2}, {"id": 9}, {"id": u2}], [{"id": 5}, {"id": u1}]]
    page, nxt = merge_scroll(pages, 3)
    assert [p["id"] for p in page] == [2, 5, 9] and nxt == u1
    page, nxt = merge_scroll(pages, 10)
    assert len(page) == 5 and nxt is None
    assert id_order(7) < id_order(u1) < id_order(u2)


def test_count_and_retrieve() -> None:
    assert merge_count([3, 0, 4]) == 7
    got = merge_retrieve([5, 1, 9, 5], [[{"id": 1}], [{"id": 5}]])
    assert [p["id"] for p in got] == [5, 1]


def test_grpc_admission_decodes_the_request() -> None:
    from qdrant_client import grpc as pb
    from qdrant_client.conversions.conversion import RestToGrpc

    from switchyard.proxy.dataplane.split_mirror import admission_grpc
    from switchyard.proxy.migration.record import Migration

    m = Migration(id="m", logical="l", source="s", target="wiki_code", model_a="a", model_b="a", kind="split",
                  options={"derived": {"layout": layout().to_dict()}})
    good = pb.UpsertPoints(collection_name="l", points=[pb.PointStruct(
        id=pb.PointId(num=7), payload=RestToGrpc.convert_payload(OK))])
    assert admission_grpc(m, "Upsert", good.SerializeToString()) is None
    bad = pb.UpsertPoints(collection_name="l", points=[pb.PointStruct(
        id=pb.PointId(num=8), payload=RestToGrpc.convert_payload({"type": "text"}))])
    assert "point 8 cannot be routed" in (admission_grpc(m, "Upsert", bad.SerializeToString()) or "")
    clear = pb.ClearPayloadPoints(collection_name="l")
    assert "clear_payload" in (admission_grpc(m, "ClearPayload", clear.SerializeToString()) or "")
    dp = pb.DeletePayloadPoints(collection_name="l", keys=["source_title"])
    assert "source_title" in (admission_grpc(m, "DeletePayload", dp.SerializeToString()) or "")
    sp = pb.SetPayloadPoints(collection_name="l", payload=RestToGrpc.convert_payload({"type": "image"}))
    assert "no target was created" in (admission_grpc(m, "SetPayload", sp.SerializeToString()) or "")
    assert admission_grpc(m, "Delete", pb.DeletePoints(collection_name="l").SerializeToString()) is None

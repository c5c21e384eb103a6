"""Table tests of the pure parts of merged reads: query vectors, both codecs, fetch plan,
group merge and the shadow comparison functions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from qdrant_client import grpc as pb

from switchyard.proxy.dataplane.fetch_plan import exact_prefix
from switchyard.proxy.dataplane.group_merge import GroupHits, merge_groups
from switchyard.proxy.dataplane.merge import ESTIMATE_DEPTH, Hit, merge
from switchyard.proxy.dataplane.query_codec import (
    RestQueryCodec, Rewrite, decode_rest, ensure_payload_field, is_similarity_grpc,
    is_similarity_rest,
)
from switchyard.proxy.dataplane.query_codec_grpc import GrpcQueryCodec, decode_grpc
from switchyard.proxy.dataplane.query_vectors import SlotInfo, plan_inference, plan_sides, raw_vector_model
from switchyard.proxy.dataplane.shadow import kendall, overlap_at_k, spearman
from switchyard.proxy.modelspec import ModelSpec

A8 = ModelSpec(id="a", provider="hashing", model="hash-a", dimensions=8)
B8 = ModelSpec(id="b", provider="hashing", model="hash-b", dimensions=8)
B12 = ModelSpec(id="b", provider="hashing", model="hash-b", dimensions=12)
OTHER = ModelSpec(id="c", provider="hashing", model="hash-c", dimensions=8)


# ---------------------------------------------------------------- query vectors

@pytest.mark.parametrize("dims,b,phase,owner", [
    (8, B12, "dual_write", "a"), (12, B12, "dual_write", "b"), (12, B12, "writes_switched", "b"),
    (8, B12, "writes_switched", "a"),  # size decides when the models differ
    (8, B8, "dual_write", "a"), (8, B8, "verified", "a"), (8, B8, "reads_switched", "a"),
    (8, B8, "writes_switched", "b"), (8, B8, "complete", "b"),  # else the phase
    (5, B12, "dual_write", "a"),  # a size of neither: the phase's model (Qdrant will refuse it)
])
def test_raw_vector_model(dims: int, b: ModelSpec, phase: str, owner: str) -> None:
    assert raw_vector_model(dims, A8, b, phase) == owner


@pytest.mark.parametrize("slots,b,target,source", [
    # a Document: both sides embed its text with their own model
    ([SlotInfo(text="q", model="a")], B12, ((0, "q"),), ((0, "q"),)),
    ([SlotInfo(text="q", model="hash-b")], B8, ((0, "q"),), ((0, "q"),)),
    # a raw model-A vector: the target is skipped
    ([SlotInfo(dims=8)], B12, "skip", ()),
    ([SlotInfo(dims=8)], B8, "skip", ()),
    # a raw model-B vector (recognised by size): the source is skipped
    ([SlotInfo(dims=12)], B12, (), "skip"),
    # ids only (no slots): both sides as sent
    ([], B8, (), ()),
    # an unknown model's Document is left for Qdrant, on both sides
    ([SlotInfo(text="q", model="nobody")], B8, (), ()),
    # prefetch mixing a Document and a raw A vector: the target cannot take the raw one
    ([SlotInfo(text="q", model="a"), SlotInfo(dims=8)], B12, "skip", ((0, "q"),)),
])
def test_plan_sides(slots: list[SlotInfo], b: ModelSpec, target: Any, source: Any) -> None:
    models = {"a": A8, "b": b, "c": OTHER}
    t, s = plan_sides(slots, A8, b, "dual_write", models)
    for plan, want, model in ((t, target, "b"), (s, source, "a")):
        assert plan.model_id == model
        if want == "skip":
            assert plan.skip is not None and "Document" in plan.skip
        else:
            assert plan.skip is None and plan.fills == want


@pytest.mark.parametrize("slots,bound,fills", [
    ([SlotInfo(text="q", model="a")], A8, ((0, "q"),)),
    ([SlotInfo(text="q", model="hash-a")], A8, ((0, "q"),)),
    ([SlotInfo(text="q", model="c")], A8, ()),  # another registered model: not this space
    ([SlotInfo(text="q", model="a")], None, ()),  # unbound collection
    ([SlotInfo(dims=8), SlotInfo(text="r", model="a")], A8, ((1, "r"),)),
])
def test_plan_inference(slots: list[SlotInfo], bound: ModelSpec | None, fills: Any) -> None:
    assert plan_inference(slots, bound, {"a": A8, "c": OTHER}) == fills


# ---------------------------------------------------------------- classification

@pytest.mark.parametrize("method,path,want", [
    ("POST", "/collections/c/points/query", True), ("POST", "/points/query/batch", True),
    ("POST", "/collections/c/points/search/groups", True), ("POST", "/points/discover", True),
    ("POST", "/collections/c/points/scroll", False), ("POST", "/points/count", False),
    ("POST", "/collections/c/points/search/matrix/pairs", False), ("PUT", "/points", False),
    ("GET", "/collections/c/points/query", False),
])
def test_is_similarity_rest(method: str, path: str, want: bool) -> None:
    assert is_similarity_rest(method, path) is want


@pytest.mark.parametrize("method,want", [
    ("/qdrant.Points/Query", True), ("/qdrant.Points/SearchGroups", True),
    ("/qdrant.Points/DiscoverBatch", True), ("/qdrant.Points/Scroll", False),
    ("/qdrant.Points/Upsert", False), ("/qdrant.Collections/Get", False),
])
def test_is_similarity_grpc(method: str, want: bool) -> None:
    assert is_similarity_grpc(method) is want


# ---------------------------------------------------------------- REST codec

V8 = [0.5] * 8
DOC = {"text": "hello", "model": "a"}


@pytest.mark.parametrize("suffix,body,slots", [
    ("query", {"query": V8}, [SlotInfo(dims=8)]),
    ("query", {"query": DOC}, [SlotInfo(text="hello", model="a")]),
    ("query", {"query": {"nearest": DOC}}, [SlotInfo(text="hello", model="a")]),
    ("query", {"query": 7}, []),
    ("query", {"query": {"recommend": {"positive": [1, V8], "negative": [DOC]}}},
     [SlotInfo(dims=8), SlotInfo(text="hello", model="a")]),
    ("query", {"query": {"discover": {"target": V8, "context": [{"positive": 1, "negative": DOC}]}}},
     [SlotInfo(dims=8), SlotInfo(text="hello", model="a")]),
    ("query", {"prefetch": [{"query": DOC, "prefetch": {"query": V8}}], "query": {"fusion": "rrf"}},
     [SlotInfo(text="hello", model="a"), SlotInfo(dims=8)]),
    ("search", {"vector": V8, "limit": 3}, [SlotInfo(dims=8)]),
    ("search", {"vector": {"name": "dense", "vector": V8}, "limit": 3}, [SlotInfo(dims=8)]),
    ("recommend", {"positive": [1, 2], "negative": [V8], "limit": 3}, [SlotInfo(dims=8)]),
    ("discover", {"target": 3, "context": [{"positive": V8, "negative": 2}], "limit": 3},
     [SlotInfo(dims=8)]),
])
def test_rest_slots(suffix: str, body: dict[str, Any], slots: list[SlotInfo]) -> None:
    read = decode_rest("POST", f"/collections/c/points/{suffix}", orjson.dumps(body))
    assert read is not None and read.collection == "c"
    assert read.subs[0].slots == slots


@pytest.mark.parametrize("body,ranked", [
    ({"query": V8}, True), ({"query": DOC}, True), ({"query": 3}, True),
    ({"prefetch": {"query": V8}, "query": {"fusion": "rrf"}}, True),
    ({"prefetch": {"query": V8}}, True),
    ({}, False), ({"query": {"order_by": "price"}}, False), ({"query": {"sample": "random"}}, False),
])
def test_rest_ranked(body: dict[str, Any], ranked: bool) -> None:
    read = decode_rest("POST", "/collections/c/points/query", orjson.dumps(body))
    assert read is not None and read.mergeable is ranked


def test_rest_rewrite_changes_only_what_it_must() -> None:
    body = {"query": {"nearest": DOC}, "prefetch": {"query": DOC, "limit": 50}, "limit": 3,
            "offset": 4, "score_threshold": 0.2, "filter": {"must": [{"key": "k", "match": {"value": 1}}]},
            "params": {"hnsw_ef": 64}, "with_payload": ["title"], "using": "dense"}
    read = decode_rest("POST", "/collections/c/points/query", orjson.dumps(body))
    assert read is not None
    sub = read.subs[0]
    assert (sub.limit, sub.offset, sub.score_threshold) == (3, 4, 0.2)
    out = orjson.loads(RestQueryCodec().side_body(
        read, [(0, Rewrite({0: [1.0], 1: [2.0]}, 7, True, "doc_id"))], "side"))
    want = {**body, "query": {"nearest": [1.0]}, "prefetch": {"query": [2.0], "limit": 50},
            "limit": 7, "offset": 0, "with_payload": ["title", "doc_id"]}
    del want["score_threshold"]
    assert out == want


def test_rest_batch_and_groups_decode() -> None:
    batch = {"searches": [{"query": DOC, "limit": 2}, {"query": V8, "offset": 1}], "x": 1}
    read = decode_rest("POST", "/collections/c/points/query/batch", orjson.dumps(batch))
    assert read is not None and read.shape == "batch"
    assert [(s.limit, s.offset) for s in read.subs] == [(2, 0), (10, 1)]
    side = orjson.loads(RestQueryCodec().side_body(read, [(1, Rewrite({}, 11))], "s"))
    assert side == {"searches": [{"query": V8, "offset": 0, "limit": 11}], "x": 1}
    groups = {"query": DOC, "group_by": "topic", "limit": 4}
    read = decode_rest("POST", "/collections/c/points/query/groups", orjson.dumps(groups))
    assert read is not None and read.shape == "groups"
    assert (read.subs[0].limit, read.subs[0].group_size) == (4, 3)
    assert decode_rest("POST", "/collections/c/points/query", b"not json") is None
    assert decode_rest("POST", "/collections/c/points/scroll", b"{}") is None


@pytest.mark.parametrize("selector,want", [
    (None, ["doc_id"]), (False, ["doc_id"]), (True, True), (["a"], ["a", "doc_id"]),
    (["doc_id"], ["doc_id"]), ({"include": ["a"]}, {"include": ["a", "doc_id"]}),
    ({"exclude": ["doc_id", "b"]}, {"exclude": ["b"]}),
])
def test_rest_payload_selector(selector: Any, want: Any) -> None:
    assert ensure_payload_field(selector, "doc_id") == want


@pytest.mark.parametrize("selector,payload,want", [
    (None, {"doc_id": 1}, None), (False, {"doc_id": 1}, None), (True, {"doc_id": 1}, {"doc_id": 1}),
    (["a"], {"a": 1, "doc_id": 2}, {"a": 1}), (["doc_id"], {"doc_id": 2}, {"doc_id": 2}),
    ({"exclude": ["doc_id"]}, {"a": 1, "doc_id": 2}, {"a": 1}),
])
def test_rest_prune(selector: Any, payload: dict[str, Any], want: Any) -> None:
    body = {"query": V8} | ({} if selector is None else {"with_payload": selector})
    read = decode_rest("POST", "/collections/c/points/query", orjson.dumps(body))
    assert read is not None
    out = RestQueryCodec().prune({"id": 1, "score": 0.5, "payload": payload}, read.subs[0], "doc_id")
    assert out.get("payload") == want


# ---------------------------------------------------------------- gRPC codec

def _doc() -> Any:
    return pb.VectorInput(document=pb.Document(text="hello", model="a"))


@pytest.mark.parametrize("method,msg,slots", [
    ("Query", pb.QueryPoints(collection_name="c", query=pb.Query(nearest=_doc())),
     [SlotInfo(text="hello", model="a")]),
    ("Query", pb.QueryPoints(collection_name="c", query=pb.Query(
        nearest=pb.VectorInput(dense=pb.DenseVector(data=V8)))), [SlotInfo(dims=8)]),
    ("Query", pb.QueryPoints(collection_name="c", query=pb.Query(
        nearest=pb.VectorInput(id=pb.PointId(num=3)))), []),
    ("Query", pb.QueryPoints(collection_name="c", prefetch=[pb.PrefetchQuery(
        query=pb.Query(nearest=_doc()), prefetch=[pb.PrefetchQuery(query=pb.Query(
            nearest=pb.VectorInput(dense=pb.DenseVector(data=V8))))])], query=pb.Query(fusion=pb.RRF)),
     [SlotInfo(text="hello", model="a"), SlotInfo(dims=8)]),
    ("Query", pb.QueryPoints(collection_name="c", query=pb.Query(recommend=pb.RecommendInput(
        positive=[pb.VectorInput(id=pb.PointId(num=1)), _doc()]))), [SlotInfo(text="hello", model="a")]),
    ("Search", pb.SearchPoints(collection_name="c", vector=V8, limit=3), [SlotInfo(dims=8)]),
    ("Recommend", pb.RecommendPoints(collection_name="c", positive=[pb.PointId(num=1)],
                                     negative_vectors=[pb.Vector(data=V8)], limit=3), [SlotInfo(dims=8)]),
    ("Discover", pb.DiscoverPoints(collection_name="c", target=pb.TargetVector(single=pb.VectorExample(
        vector=pb.Vector(dense=pb.DenseVector(data=V8)))), limit=3), [SlotInfo(dims=8)]),
])
def test_grpc_slots(method: str, msg: Any, slots: list[SlotInfo]) -> None:
    read = decode_grpc(f"/qdrant.Points/{method}", msg.SerializeToString())
    assert read is not None and read.collection == "c"
    assert read.subs[0].slots == slots


@pytest.mark.parametrize("msg,ranked", [
    (pb.QueryPoints(collection_name="c", query=pb.Query(nearest=_doc())), True),
    (pb.QueryPoints(collection_name="c"), False),
    (pb.QueryPoints(collection_name="c", query=pb.Query(order_by=pb.OrderBy(key="price"))), False),
    (pb.QueryPoints(collection_name="c", query=pb.Query(sample=pb.Random)), False),
    (pb.QueryPoints(collection_name="c", prefetch=[pb.PrefetchQuery(query=pb.Query(nearest=_doc()))],
                    query=pb.Query(fusion=pb.RRF)), True),
])
def test_grpc_ranked(msg: Any, ranked: bool) -> None:
    read = decode_grpc("/qdrant.Points/Query", msg.SerializeToString())
    assert read is not None and read.mergeable is ranked


def test_grpc_rewrite_changes_only_what_it_must() -> None:
    msg = pb.QueryPoints(
        collection_name="logical", query=pb.Query(nearest=_doc()), limit=3, offset=4,
        score_threshold=0.2, using="dense", filter=pb.Filter(must=[pb.Condition(field=pb.FieldCondition(
            key="k", match=pb.Match(integer=1)))]),
        with_payload=pb.WithPayloadSelector(include=pb.PayloadIncludeSelector(fields=["title"])))
    read = decode_grpc("/qdrant.Points/Query", msg.SerializeToString())
    assert read is not None
    assert (read.subs[0].limit, read.subs[0].offset, read.subs[0].score_threshold) == (3, 4, pytest.approx(0.2))
    out = pb.QueryPoints.FromString(GrpcQueryCodec().side_body(
        read, [(0, Rewrite({0: [1.0, 2.0]}, 7, True, "doc_id"))], "physical"))
    want = pb.QueryPoints()
    want.CopyFrom(msg)
    want.collection_name = "physical"
    want.query.nearest.dense.CopyFrom(pb.DenseVector(data=[1.0, 2.0]))
    want.limit, want.offset = 7, 0
    want.ClearField("score_threshold")
    want.with_payload.include.fields.append("doc_id")
    assert out == want


def test_grpc_batch_keeps_envelope_and_selects_subs() -> None:
    batch = pb.SearchBatchPoints(collection_name="logical", timeout=5, search_points=[
        pb.SearchPoints(collection_name="logical", vector=V8, limit=2),
        pb.SearchPoints(collection_name="logical", vector=V8, limit=3, offset=1)])
    read = decode_grpc("/qdrant.Points/SearchBatch", batch.SerializeToString())
    assert read is not None and [(s.limit, s.offset) for s in read.subs] == [(2, 0), (3, 1)]
    out = pb.SearchBatchPoints.FromString(GrpcQueryCodec().side_body(read, [(1, Rewrite({}, 4))], "p"))
    assert out.collection_name == "p" and out.timeout == 5 and len(out.search_points) == 1
    assert (out.search_points[0].limit, out.search_points[0].offset) == (4, 0)
    assert decode_grpc("/qdrant.Points/Query", b"\xff\xff") is None


# ---------------------------------------------------------------- fetch plan

@pytest.mark.parametrize("target,source,in_target,coverage,t_ex,s_ex,final", [
    # nothing dropped, coverage 1: both lists interleave fully up to the shorter bound
    (["t1", "t2"], ["s1", "s2"], set(), 1.0, False, False, 4),
    # every source hit dropped: only target hits ranked before the next unseen source hit
    (["t1", "t2", "t3"], ["t1", "t2", "t3"], set(), 0.5, False, False, 1),
    # both exhausted: everything is final
    (["t1"], ["s1", "t1"], set(), 0.5, True, True, 2),
    # the lookup says s1's document is in the target: dropped, not final
    (["t1", "t2"], ["s1", "s2"], {"s1"}, 1.0, False, False, 3),
])
def test_exact_prefix(target: list[str], source: list[str], in_target: set[str],
                      coverage: float, t_ex: bool, s_ex: bool, final: int) -> None:
    got = exact_prefix(target, source, in_target=in_target, coverage=coverage,
                       target_exhausted=t_ex, source_exhausted=s_ex)
    assert got.final == final


def test_exact_prefix_matches_merge_of_longer_lists() -> None:
    """The final prefix of short lists equals the same prefix merged from longer lists."""
    t_all = [Hit(f"t{i}", 1.0 - i / 100) for i in range(30)]
    s_all = [Hit(f"t{i}" if i % 3 == 0 else f"s{i}", 0.9 - i / 100, side="source") for i in range(30)]
    for n in (3, 5, 8):
        t, s = t_all[:n], s_all[:n]
        known = {h.key for h in t_all}
        ex = exact_prefix([h.key for h in t], [h.key for h in s], in_target=known, coverage=0.4,
                          target_exhausted=False, source_exhausted=False)
        short, _ = merge(t, s, in_target=known, limit=100, coverage=0.4)
        full, _ = merge(t_all, s_all, in_target=known, limit=100, coverage=0.4)
        assert [h.key for h in short[:ex.final]] == [h.key for h in full[:ex.final]]


def test_exact_prefix_is_final_with_the_source_estimate_for_migrated_documents() -> None:
    """Random rankings (seeded): whatever the fetch sizes (the target at least ESTIMATE_DEPTH, as
    the reader asks), the final prefix of the short lists is the full lists' merge, including
    the migrated documents both sides returned, placed by the better of two estimates."""
    import random

    rng = random.Random(12)
    checked = 0
    for _ in range(300):
        n = rng.randint(20, 80)
        docs = [f"d{i}" for i in range(n)]
        migrated = set(rng.sample(docs, rng.randint(1, n - 1)))
        coverage = len(migrated) / n
        a_rank = rng.sample(docs, n)
        b_rank = rng.sample(sorted(migrated), len(migrated))
        t_all = [Hit(k, 1.0 - i / 1000) for i, k in enumerate(b_rank)]
        s_all = [Hit(k, 0.9 - i / 1000, side="source") for i, k in enumerate(a_rank)]
        full, _ = merge(t_all, s_all, in_target=migrated, limit=1000, coverage=coverage)
        t_n, s_n = rng.randint(ESTIMATE_DEPTH, max(ESTIMATE_DEPTH, len(t_all))), rng.randint(16, n)
        t, s_ = t_all[:t_n], s_all[:s_n]
        known = {h.key for h in s_ if h.key in migrated}  # what the lookup finds
        ex = exact_prefix([h.key for h in t], [h.key for h in s_], in_target=known, coverage=coverage,
                          target_exhausted=t_n >= len(t_all), source_exhausted=s_n >= n)
        short, _ = merge(t, s_, in_target=known, limit=1000, coverage=coverage)
        assert [h.key for h in short[:ex.final]] == [h.key for h in full[:ex.final]]
        checked += ex.final
    assert checked > 1000


# ---------------------------------------------------------------- group merge

def _g(key: str, hits: list[tuple[str, float]], side: str = "target") -> GroupHits:
    return GroupHits(key, [Hit(k, sc, k, side) for k, sc in hits])


def test_groups_target_wins_across_groups_and_sizes() -> None:
    target = [_g("x", [("d1", 0.9), ("d2", 0.8)]), _g("y", [("d3", 0.7)])]
    source = [_g("x", [("d2", 0.95), ("d4", 0.6)], "source"),
              _g("z", [("d1", 0.99), ("d5", 0.5), ("d6", 0.4)], "source")]
    groups, report = merge_groups(target, source, in_target={"d6"}, limit=3, group_size=2,
                                  coverage=0.5)
    keys = [(g, [h.key for h in hs]) for g, hs in groups]
    docs = [d for _, ds in keys for d in ds]
    assert len(docs) == len(set(docs))  # each document once
    assert "d6" not in docs  # in the target (lookup) but not returned by it: never from the source
    assert all(h.side == "target" for _, hs in groups for h in hs if h.key in {"d1", "d2", "d3"})
    assert [k for k, _ in keys] == ["x", "z", "y"]  # ordered by best hit; d1 ranks in x, by target
    assert all(len(hs) <= 2 for _, hs in groups) and len(groups) <= 3
    best = [hs[0].score for _, hs in groups]
    assert best == sorted(best, reverse=True)
    assert report.source_dropped_in_target == 3


# ---------------------------------------------------------------- shadow comparisons

@pytest.mark.parametrize("served,merged,k,overlap,rho,tau", [
    (["a", "b", "c"], ["a", "b", "c"], 3, 1.0, 1.0, 1.0),
    (["a", "b", "c"], ["c", "b", "a"], 3, 1.0, -1.0, -1.0),
    (["a", "b", "c"], ["x", "y", "z"], 3, 0.0, None, None),
    (["a", "b", "c", "d"], ["b", "a", "x", "d"], 4, 0.75, 0.5, 1 / 3),
    ([], [], 0, 1.0, None, None),
])
def test_shadow_comparisons(served: list[str], merged: list[str], k: int, overlap: float,
                            rho: float | None, tau: float | None) -> None:
    assert overlap_at_k(served, merged, k) == pytest.approx(overlap)
    assert spearman(served, merged) == (None if rho is None else pytest.approx(rho))
    assert kendall(served, merged) == (None if tau is None else pytest.approx(tau))


@pytest.mark.parametrize("slots,also,fills", [
    ([SlotInfo(text="q", model="b")], B8, ((0, "q"),)),  # read mode source: B's Document, with A
    ([SlotInfo(text="q", model=B8.model)], B8, ((0, "q"),)),
    ([SlotInfo(text="q", model="b")], None, ()),  # outside a migration: not this space
    ([SlotInfo(text="q", model="c"), SlotInfo(text="r", model="a")], B8, ((1, "r"),)),  # others: Qdrant's
])
def test_plan_inference_also_takes_the_migrations_other_model(slots: list[SlotInfo], also: ModelSpec | None,
                                                               fills: Any) -> None:
    assert plan_inference(slots, A8, {"a": A8, "b": B8, "c": OTHER}, also=also) == fills

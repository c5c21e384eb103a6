"""Pure parts of the embedded upstream's engine seam, as tables: the engine choice, Qdrant's
request checks (ids, validation, dimensions, inference objects) and the query helpers the server
adds above Edge (ids as queries, groups)."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded import edge_queries as eq
from switchyard.proxy.embedded import engines, request_checks
from switchyard.proxy.errors import BadRequest, ConfigError, NotFound


@pytest.mark.parametrize(("flag", "env", "default", "available", "want"), [
    (None, None, "local", True, "local"),
    ("edge", None, "local", True, "edge"),
    (None, "edge", "local", True, "edge"),
    ("local", "edge", "local", True, "local"),   # the flag wins over the environment
    (None, None, "edge", True, "edge"),
    (None, None, "edge", False, "local"),         # the default falls back where Edge is missing
])
def test_engine_choice(monkeypatch: pytest.MonkeyPatch, flag: str | None, env: str | None,
                       default: str, available: bool, want: str) -> None:
    monkeypatch.setattr(engines, "DEFAULT_ENGINE", default)
    monkeypatch.setattr(engines, "edge_available", lambda: available)
    if env is None:
        monkeypatch.delenv(engines.ENV, raising=False)
    else:
        monkeypatch.setenv(engines.ENV, env)
    name, reason = engines.choose(flag)
    assert name == want
    assert reason  # always says why


@pytest.mark.parametrize(("flag", "available"), [("edge", False), ("nope", True)])
def test_engine_choice_refuses(monkeypatch: pytest.MonkeyPatch, flag: str, available: bool) -> None:
    monkeypatch.setattr(engines, "edge_available", lambda: available)
    with pytest.raises(ConfigError):
        engines.choose(flag)


POINT = models.PointStruct


@pytest.mark.parametrize(("method", "args", "kwargs", "error", "words"), [
    ("upsert", ("c", [POINT(id=2**64, vector=[1.0])]), {}, BadRequest, "not a valid point ID"),
    ("upsert", ("c",), {"points": models.Batch(ids=[-1], vectors=[[1.0]])}, BadRequest, "-1"),
    ("batch_update_points", ("c", [models.UpsertOperation(upsert=models.PointsList(
        points=[POINT(id=2**64 + 5, vector=[1.0])]))]), {}, BadRequest, "not a valid point ID"),
    ("query_points", ("c",), {"query": [1.0], "limit": 0}, request_checks.ValidationFailed,
     "[limit: value 0 invalid, must be 1 or larger]"),
    ("query_points_groups", ("c",), {"group_by": "g", "limit": 2, "group_size": 0},
     request_checks.ValidationFailed, "group_size: value 0 invalid"),
    ("query_batch", ("c", [{"limit": 3}, {"limit": 0}]), {}, request_checks.ValidationFailed, "limit"),
    ("create_collection", ("c",), {"vectors_config": {"a": models.VectorParams(size=70000, distance="Dot")}},
     request_checks.ValidationFailed, "vectors.a.size: value 70000 invalid, must be from 1 to 65536"),
    ("upsert", ("c", [POINT(id=1, vector={"d": models.Document(text="t", model="m")})]), {},
     request_checks.InferenceUnavailable, "InferenceService is not initialized"),
    ("query_points", ("c",), {"query": models.NearestQuery(nearest=models.Document(text="t", model="m"))},
     request_checks.InferenceUnavailable, "InferenceService"),
])
def test_request_checks_refuse(method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                               error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        request_checks.check_call(method, args, kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize(("method", "args", "kwargs"), [
    ("upsert", ("c", [POINT(id=2**64 - 1, vector=[1.0]), POINT(id=0, vector=[1.0])]), {}),
    ("upsert", ("c", [POINT(id="5c56c793-69f3-4fbf-87e6-c4bf54c28c26", vector=[1.0], payload={"text": "t", "model": "m"})]), {}),
    ("query_points", ("c",), {"query": [1.0], "limit": 1}),
    ("scroll", ("c",), {"limit": None}),
])
def test_request_checks_pass(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    request_checks.check_call(method, args, kwargs)


@pytest.mark.parametrize(("text", "want"), [
    ("shapes (0,4) and (3,) not aligned: 4 (dim 1) != 3 (dim 0)", "Vector dimension error: expected dim: 4, got 3"),
    ("operands could not be broadcast together with shapes (2,3) (4,) ", "Vector dimension error: expected dim: 3, got 4"),
    ("something else", None),
])
def test_dimension_message(text: str, want: str | None) -> None:
    assert request_checks.dimension_message(text) == want


CONFIG = models.CreateCollection(vectors={"a": models.VectorParams(size=2, distance="Dot")},
                                 sparse_vectors={"s": models.SparseVectorParams()})


@pytest.mark.parametrize(("method", "kw", "words"), [
    ("upsert", {"points": [POINT(id=1, vector={"a": [1.0, 2.0]}), POINT(id=2, vector={"a": [1.0]})]},
     "expected dim: 2, got 1"),
    ("upsert", {"points": models.Batch(ids=[1], vectors={"a": [[1.0, 2.0, 3.0]]})}, "got 3"),
    ("upsert", {"points": [POINT(id=1, vector={"b": [1.0, 2.0]})]}, "Not existing vector name error: b"),
    ("batch_update_points", {"update_operations": [models.UpdateVectorsOperation(
        update_vectors=models.UpdateVectors(points=[models.PointVectors(id=1, vector={"a": [1.0]})]))]}, "got 1"),
    ("upsert", {"points": [POINT(id=1, vector={"a": [[1.0, 2.0], [1.0]]})]}, "got 1"),
])
def test_dimensions_checked_before_a_write(method: str, kw: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest) as info:
        request_checks.check_dimensions(CONFIG, method, kw)
    assert words in str(info.value)


def test_dimensions_pass_sparse_and_right_sizes() -> None:
    points = [POINT(id=1, vector={"a": [1.0, 2.0], "s": models.SparseVector(indices=[1], values=[1.0])})]
    request_checks.check_dimensions(CONFIG, "upsert", {"points": points})


def test_ids_as_queries_are_collected_and_substituted() -> None:
    query = models.RecommendQuery(recommend=models.RecommendInput(positive=[1, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"], negative=[[0.0, 1.0]]))
    prefetch = models.Prefetch(query=7, limit=3)
    assert eq.example_ids(query, prefetch) == [1, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", 7]
    vectors = {1: [1.0, 0.0], "5c56c793-69f3-4fbf-87e6-c4bf54c28c26": [0.5, 0.5], 7: [0.0, 2.0]}
    swapped = eq.substitute(query, vectors)
    assert swapped.recommend.positive == [[1.0, 0.0], [0.5, 0.5]]
    assert swapped.recommend.negative == [[0.0, 1.0]]
    assert eq.substitute_prefetch(prefetch, vectors).query == [0.0, 2.0]
    with pytest.raises(NotFound, match="No point with id 9 found"):
        eq.substitute(9, vectors)
    flt = eq.exclude_ids(models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="x"))]), [1])
    assert len(flt.must_not) == 2


def hit(pid: int, score: float, payload: dict[str, Any]) -> models.ScoredPoint:
    return models.ScoredPoint(id=pid, version=0, score=score, payload=payload)


def test_groups_keep_order_size_and_array_values() -> None:
    hits = [hit(1, 0.9, {"g": "a"}), hit(2, 0.8, {"g": ["b", "a"]}), hit(3, 0.7, {"g": "a"}),
            hit(4, 0.6, {"g": True}), hit(5, 0.5, {}), hit(6, 0.4, {"g": "c"}), hit(7, 0.3, {"g": "b"})]
    groups = eq.group_hits(hits, "g", limit=2, group_size=2)
    assert [(g, [h.id for h in members]) for g, members in groups] == [("a", [1, 2]), ("b", [2, 7])]
    assert eq.groups_complete(groups, 2, 2)
    assert eq.group_values({"x": {"y": [1, "k", 2.5]}}, "x.y") == [1, "k"]

"""Qdrant's strict-mode checks (``switchyard.proxy.embedded.strict_mode``) as tables: which call
a config refuses, in Qdrant's words, and which filters must be served by an index."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded import strict_mode
from switchyard.proxy.errors import BadRequest

CFG = models.StrictModeConfig(
    enabled=True, max_query_limit=3, search_allow_exact=False, search_max_hnsw_ef=5,
    search_max_oversampling=2.0, upsert_max_batchsize=2,
    unindexed_filtering_retrieve=False, unindexed_filtering_update=False)
P = models.PointStruct
CITY = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(value="x"))])
N = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=1))])
NESTED = models.Filter(must=[models.NestedCondition(nested=models.Nested(key="a", filter=CITY))])


@pytest.mark.parametrize(("method", "kw", "words"), [
    ("query_points", {"limit": 4}, 'Limit exceeded 4 > 3 for "limit"'),
    ("query_points", {"limit": 3}, None),
    ("query_points", {"limit": 1, "prefetch": [models.Prefetch(
        prefetch=models.Prefetch(limit=9))]}, 'Limit exceeded 9 > 3 for "limit"'),
    ("query_points", {"limit": 1, "search_params": models.SearchParams(exact=True)},
     "Exact search disabled!. Help: Set exact=false."),
    ("query_points", {"limit": 1, "search_params": models.SearchParams(hnsw_ef=6)}, '"hnsw_ef"'),
    ("query_points", {"limit": 1, "search_params": models.SearchParams(
        quantization=models.QuantizationSearchParams(oversampling=2.5))}, '"oversampling"'),
    ("scroll", {"limit": 4}, '"limit"'),
    ("facet", {"limit": 4}, '"limit"'),
    ("count", {}, "Exact search disabled!"),          # count is exact unless told otherwise
    ("count", {"exact": False}, None),
    ("upsert", {"points": [P(id=i, vector=[1.0]) for i in range(3)]}, '"upsert limit"'),
    ("upsert", {"points": models.Batch(ids=[1, 2], vectors=[[1.0], [2.0]])}, None),
    ("update_vectors", {"points": [models.PointVectors(id=i, vector=[1.0]) for i in range(3)]},
     '"update limit"'),
    ("batch_update_points", {"update_operations": [models.UpsertOperation(upsert=models.PointsList(
        points=[P(id=i, vector=[1.0]) for i in range(3)]))]}, '"upsert limit"'),
    ("retrieve", {"ids": [1, 2, 3, 4]}, None),
])
def test_limits(method: str, kw: dict[str, Any], words: str | None) -> None:
    if words is None:
        strict_mode.check_limits(method, kw, CFG)
        return
    with pytest.raises(BadRequest) as caught:
        strict_mode.check_limits(method, kw, CFG)
    assert caught.value.message.startswith("Bad request: ")
    assert words in caught.value.message


@pytest.mark.parametrize(("method", "kw", "cfg", "count"), [
    ("query_points", {"query_filter": CITY}, CFG, 1),
    ("query_points", {"query_filter": CITY, "prefetch": models.Prefetch(filter=N)}, CFG, 2),
    ("query_points", {"query_filter": CITY}, CFG.model_copy(update={"unindexed_filtering_retrieve": None}), 0),
    ("scroll", {"scroll_filter": CITY}, CFG, 1),
    ("count", {"count_filter": None}, CFG, 0),
    ("delete", {"points_selector": models.FilterSelector(filter=N)}, CFG, 1),
    ("delete", {"points_selector": models.PointIdsList(points=[1])}, CFG, 0),
    ("set_payload", {"points": N}, CFG.model_copy(update={"unindexed_filtering_update": True}), 0),
    ("batch_update_points", {"update_operations": [models.DeleteOperation(
        delete=models.FilterSelector(filter=N))]}, CFG, 1),
])
def test_filters_to_index(method: str, kw: dict[str, Any], cfg: models.StrictModeConfig,
                          count: int) -> None:
    assert len(strict_mode.filters_to_index(method, kw, cfg)) == count


@pytest.mark.parametrize(("flt", "schema", "missing"), [
    (CITY, {}, '"city" of one of the following types: [keyword, uuid]'),
    (CITY, {"city": "keyword"}, None),
    (CITY, {"city": "integer"}, '"city"'),                 # an index of a type that cannot serve
    (N, {"n": "float"}, None),
    (N, {}, "[integer, float]"),
    (NESTED, {"city": "keyword"}, '"a[].city"'),
    (NESTED, {"a[].city": "keyword"}, None),
    (models.Filter(must=[models.HasIdCondition(has_id=[1])]), {}, None),
])
def test_index_required(flt: models.Filter, schema: dict[str, str], missing: str | None) -> None:
    if missing is None:
        strict_mode.check_indexed([flt], schema)
        return
    with pytest.raises(BadRequest) as caught:
        strict_mode.check_indexed([flt], schema)
    assert missing in caught.value.message


def test_active_needs_enabled() -> None:
    assert strict_mode.active(CFG)
    assert not strict_mode.active(None)
    assert not strict_mode.active(models.StrictModeConfig(max_query_limit=1))


def _match_any(key: str, n: int) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchAny(any=list(range(n))))


FC = models.FieldCondition(key="n", range=models.Range(gte=1))


@pytest.mark.parametrize(("flt", "conditions", "size"), [
    (models.Filter(), 0, 0),
    (CITY, 1, 0),
    (models.Filter(must=FC, should=[FC, FC], must_not=[FC]), 4, 0),   # a single condition too
    (models.Filter(must=[models.Filter(must=[FC, FC]), models.Filter()]), 2, 0),  # nested through
    (NESTED, 1, 0),
    (models.Filter(min_should=models.MinShould(conditions=[FC, FC], min_count=1)), 2, 0),
    (models.Filter(must=[_match_any("a", 5), _match_any("b", 2)]), 2, 5),
    (models.Filter(must=[models.FieldCondition(
        key="a", match=models.MatchExcept(**{"except": ["x", "y", "z"]}))]), 1, 3),
    (models.Filter(must=[models.HasIdCondition(has_id=[1, 2, 2, 3])]), 1, 3),  # a set: 2 once
    (models.Filter(should=[models.Filter(must=[_match_any("a", 7)])]), 1, 7),
    (models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="a"))]), 1, 0),
])
def test_filter_size(flt: models.Filter, conditions: int, size: int) -> None:
    assert strict_mode.total_conditions(flt) == conditions
    assert strict_mode.max_condition_size(flt) == size


SIZES = models.StrictModeConfig(enabled=True, filter_max_conditions=2, condition_max_size=3)
THREE = models.Filter(must=[FC, FC, FC])
BIG_ANY = models.Filter(must=[_match_any("a", 4)])


@pytest.mark.parametrize(("method", "kw", "words"), [
    ("scroll", {"scroll_filter": THREE}, "Filter condition limit reached (3 > 2). Help: "
                                         "Reduce the amount of conditions of your filter."),
    ("scroll", {"scroll_filter": models.Filter(must=[FC, FC])}, None),
    ("count", {"count_filter": BIG_ANY, "exact": False},
     "Condition size limit reached (4 > 3). Help: Reduce the size of your condition."),
    ("query_points", {"prefetch": models.Prefetch(filter=THREE)}, "(3 > 2)"),
    ("facet", {"facet_filter": THREE}, "(3 > 2)"),
    ("delete", {"points_selector": models.FilterSelector(filter=BIG_ANY)}, "(4 > 3)"),
    ("set_payload", {"points": THREE}, "(3 > 2)"),
    ("batch_update_points", {"update_operations": [models.DeleteOperation(
        delete=models.FilterSelector(filter=THREE))]}, "(3 > 2)"),
    ("delete", {"points_selector": models.PointIdsList(points=list(range(9)))}, None),
])
def test_filter_limits(method: str, kw: dict[str, Any], words: str | None) -> None:
    if words is None:
        strict_mode.check_limits(method, kw, SIZES)
        return
    with pytest.raises(BadRequest) as caught:
        strict_mode.check_limits(method, kw, SIZES)
    assert caught.value.message.startswith("Bad request: ")
    assert words in caught.value.message


@pytest.mark.parametrize(("timeout", "refused"), [(None, False), (5, False), (6, True)])
def test_timeout(timeout: int | None, refused: bool) -> None:
    cfg = models.StrictModeConfig(enabled=True, max_timeout=5)
    if not refused:
        strict_mode.check_timeout(timeout, cfg)
        return
    with pytest.raises(BadRequest) as caught:
        strict_mode.check_timeout(timeout, cfg)
    assert caught.value.message == ('Bad request: Limit exceeded 6 > 5 for "timeout". '
                                    'Help: Reduce the "timeout" parameter to or below 5.')


ALL = models.StrictModeConfig(enabled=True, max_query_limit=3, search_allow_exact=False,
                              search_max_hnsw_ef=5, filter_max_conditions=2, upsert_max_batchsize=1)


@pytest.mark.parametrize(("method", "kw", "first"), [
    # Qdrant's order: batch size, query limit, filter limits, then exact and search params
    ("query_points", {"limit": 9, "query_filter": THREE,
                      "search_params": models.SearchParams(exact=True, hnsw_ef=9)}, '"limit"'),
    ("query_points", {"limit": 1, "query_filter": THREE,
                      "search_params": models.SearchParams(exact=True, hnsw_ef=9)}, "(3 > 2)"),
    ("query_points", {"limit": 1, "search_params": models.SearchParams(exact=True, hnsw_ef=9)},
     '"hnsw_ef"'),
    ("count", {"count_filter": THREE}, "(3 > 2)"),   # before count's default exact=true
])
def test_order_of_checks(method: str, kw: dict[str, Any], first: str) -> None:
    with pytest.raises(BadRequest) as caught:
        strict_mode.check_limits(method, kw, ALL)
    assert first in caught.value.message

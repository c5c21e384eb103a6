"""The embedded engine's fast keyword scroll answers exactly what the local engine answers.

Random payloads (strings, integers, booleans, floats, arrays, nested objects, missing keys),
random exact-match filters, random pages: the fast path's records and next-page offsets must
equal ``QdrantLocal.scroll``'s own, and the fast path must really be taken for its shapes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client.http import models
from qdrant_client.local.qdrant_local import QdrantLocal

from switchyard.proxy.embedded import keyword_scan

KEYS = ["doc_id", "n", "tags"]
SCALARS = st.one_of(st.sampled_from(["a", "b", "c", "1", ""]), st.integers(-2, 3), st.booleans(),
                    st.sampled_from([1.0, 2.5]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.just({"a": 1}),
                   st.lists(st.lists(SCALARS, max_size=2), max_size=2))
# every payload has a `doc_id` from a small set, so filters match several points per page
PAYLOADS = st.fixed_dictionaries({"doc_id": st.one_of(st.sampled_from(["a", "b", 1, True]), VALUES)},
                                 optional={"n": VALUES, "tags": VALUES})
STRS = st.lists(st.sampled_from(["a", "b", "c", "1", "zz"]), max_size=4)
INTS = st.lists(st.integers(-2, 3), max_size=4)
MATCHES = st.one_of(
    st.builds(models.MatchValue,
              value=st.one_of(st.sampled_from(["a", "1"]), st.integers(-1, 2), st.booleans())),
    st.builds(models.MatchAny, any=st.one_of(STRS, INTS)),
)
CONDITIONS = st.builds(models.FieldCondition, key=st.sampled_from(KEYS), match=MATCHES)


@st.composite
def filters(draw: Any) -> models.Filter:
    conds = draw(st.lists(CONDITIONS, min_size=1, max_size=3))
    return models.Filter(should=conds) if draw(st.booleans()) else models.Filter(must=conds)


def _local(payloads: list[dict[str, Any]], deleted: set[int]) -> QdrantLocal:
    local = QdrantLocal(":memory:")
    local.create_collection("c", vectors_config=models.VectorParams(size=2,
                                                                    distance=models.Distance.DOT))
    ids: list[Any] = [i * 3 if i % 2 else str(uuid.UUID(int=i + 1)) for i in range(len(payloads))]
    local.upsert("c", [models.PointStruct(id=pid, vector=[1.0, 0.0], payload=p)
                       for pid, p in zip(ids, payloads)])
    gone = [ids[i] for i in sorted(deleted) if i < len(ids)]
    if gone:
        local.delete("c", models.PointIdsList(points=gone))
    return local


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(PAYLOADS, min_size=2, max_size=25), flt=filters(),
       limit=st.integers(1, 6), deleted=st.sets(st.integers(0, 24), max_size=5),
       with_payload=st.sampled_from([True, False, ["doc_id"]]))
def test_fast_scroll_equals_the_local_engine(payloads: list[dict[str, Any]], flt: models.Filter,
                                             limit: int, deleted: set[int], with_payload: Any) -> None:
    local = _local(payloads, deleted)
    assert keyword_scan.compile_filter(flt) is not None  # this shape takes the fast path
    index = keyword_scan.KeywordIndex()
    offset: Any = None
    for _ in range(30):  # page through everything the filter matches
        kwargs = dict(scroll_filter=flt, limit=limit, offset=offset, with_payload=with_payload)
        fast = keyword_scan.scroll(local, index, "c", **kwargs)
        slow = local.scroll("c", **kwargs)
        assert fast == slow
        offset = slow[1]
        if offset is None:
            break


@pytest.mark.parametrize("flt", [
    None,
    models.Filter(must_not=[models.FieldCondition(key="n", match=models.MatchValue(value=1))]),
    models.Filter(should=[models.FieldCondition(key="a.b", match=models.MatchValue(value=1))]),
    models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=1))]),
    models.Filter(must=[models.FieldCondition(key="n", match=models.MatchText(text="a"))]),
    models.Filter(must=[models.HasIdCondition(has_id=[1])]),
    models.Filter(should=[models.FieldCondition(key="n", match=models.MatchValue(value=1))],
                  must=[models.FieldCondition(key="n", match=models.MatchValue(value=1))]),
    models.Filter(must=[]),
])
def test_other_filters_are_left_to_the_local_engine(flt: models.Filter | None) -> None:
    assert keyword_scan.compile_filter(flt) is None
    local = _local([{"n": 1, "a": {"b": 1}}, {"n": 2}], set())
    assert (keyword_scan.scroll(local, keyword_scan.KeywordIndex(), "c", scroll_filter=flt, limit=5)
            == local.scroll("c", scroll_filter=flt, limit=5))

"""The source digest: a table of payloads that must and must not digest alike."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest, source_digests, vector_repr

SAME = [
    ({"a": 1, "b": {"x": 1, "y": 2.5}}, {"b": {"y": 2.5, "x": 1}, "a": 1}),
    ({"a": 1}, {"a": 1, "embedding_model_id": "m", "embedding_dimensions": 4}),
    ({"a": 1}, {"a": 1, DIGEST_FIELD: "0" * 32}),
    ({}, None),
]
DIFFERENT = [
    ({"a": 1}, {"a": 1.0}),
    ({"a": 1}, {"a": 2}),
    ({"a": [1, 2]}, {"a": [2, 1]}),
    ({"a": 1}, {"a": 1, "b": None}),
    ({"text": "x"}, {"text": "x "}),
]


@pytest.mark.parametrize(("left", "right"), SAME)
def test_same_content_same_digest(left: dict, right: dict | None) -> None:
    assert source_digest(left) == source_digest(right)


@pytest.mark.parametrize(("left", "right"), DIFFERENT)
def test_different_content_different_digest(left: dict, right: dict) -> None:
    assert source_digest(left) != source_digest(right)


def test_vector_bytes_change_the_digest_and_rest_grpc_floats_agree() -> None:
    p = {"a": 1}
    assert source_digest(p, vector_repr([0.1, 0.2])) != source_digest(p)
    assert source_digest(p, vector_repr([0.1, 0.2])) != source_digest(p, vector_repr([0.2, 0.1]))
    import numpy as np
    as_float32 = [float(v) for v in np.asarray([0.1, 0.2], dtype=np.float32)]
    assert vector_repr(as_float32) == vector_repr([0.1, 0.2])
    assert vector_repr({"b": [1.0], "a": [2.0]}) == vector_repr({"a": [2.0], "b": [1.0]})
    assert len(source_digest(p)) == 32


_KEYS = st.sampled_from(["a", "text", "embedding_model_id", "embedding_x", DIGEST_FIELD, "note"])
_VALUES = st.none() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.sampled_from(
    ["embedding_", '"embedding_x"', DIGEST_FIELD, "plain"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.dictionaries(_KEYS, _VALUES | st.dictionaries(_KEYS, _VALUES, max_size=3),
                                            max_size=5), max_size=6))
def test_batched_digests_are_the_single_ones(payloads: list[dict | None]) -> None:
    """``source_digests`` (the mirror's fast path) equals ``source_digest`` point by point,
    metadata and digest keys at the top level or nested, their names inside values too."""
    assert source_digests(payloads) == [source_digest(p) for p in payloads]

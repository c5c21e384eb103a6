"""The source digest: a table of payloads that must and must not digest alike."""

from __future__ import annotations

import pytest

from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest, vector_repr

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

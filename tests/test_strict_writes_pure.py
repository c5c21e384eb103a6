"""Strict mode's limits on what writes put in a collection (``strict_writes``) as tables:
``max_points_count`` and the multivector / sparse limits, in Qdrant's words."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded import strict_writes
from switchyard.proxy.errors import BadRequest

CFG = models.StrictModeConfig(
    enabled=True, max_points_count=10,
    multivector_config={"colbert": models.StrictModeMultivector(max_vectors=2),
                        "": models.StrictModeMultivector(max_vectors=1)},
    sparse_config={"text": models.StrictModeSparse(max_length=2)})
P = models.PointStruct
MULTI3 = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
SPARSE3 = models.SparseVector(indices=[1, 2, 3], values=[0.1, 0.2, 0.3])
SPARSE2 = models.SparseVector(indices=[1, 2], values=[0.1, 0.2])


@pytest.mark.parametrize(("method", "kw", "words"), [
    ("upsert", {"points": [P(id=1, vector={"colbert": MULTI3})]},
     "Bad request: Multivector 'colbert' has a limit of 2 vectors, but 3 were provided!"),
    ("upsert", {"points": [P(id=1, vector={"colbert": MULTI3[:2]})]}, None),
    ("upsert", {"points": [P(id=1, vector=MULTI3[:2])]},            # unnamed: Qdrant's ''
     "Bad request: Multivector '' has a limit of 1 vectors, but 2 were provided!"),
    ("upsert", {"points": [P(id=1, vector=[1.0, 0.0])]}, None),     # dense: no limit
    ("upsert", {"points": models.Batch(ids=[1], vectors={"colbert": [MULTI3]})},
     "has a limit of 2 vectors, but 3 were provided!"),
    ("upsert", {"points": models.Batch(ids=[1, 2], vectors=[MULTI3[:1], MULTI3[:2]])},
     "Multivector '' has a limit of 1 vectors, but 2 were provided!"),
    ("upsert", {"points": [P(id=1, vector={"text": SPARSE3})]},
     "Bad request: Sparse vector 'text' has a limit of 2 indices, but 3 were provided!"),
    ("upsert", {"points": [P(id=1, vector={"text": SPARSE2})]}, None),
    ("upsert", {"points": [P(id=1, vector={"other": SPARSE3})]}, None),  # no limit for it
    ("update_vectors", {"points": [models.PointVectors(id=1, vector={"text": SPARSE3})]},
     "Sparse vector 'text'"),
    ("update_vectors", {"points": [models.PointVectors(id=1, vector={"colbert": MULTI3})]},
     "Multivector 'colbert'"),
    # the multivector limits of a write are checked before its sparse ones
    ("upsert", {"points": [P(id=1, vector={"text": SPARSE3}), P(id=2, vector={"colbert": MULTI3})]},
     "Multivector 'colbert'"),
    ("batch_update_points", {"update_operations": [models.UpsertOperation(
        upsert=models.PointsList(points=[P(id=1, vector={"colbert": MULTI3})]))]},
     "Multivector 'colbert'"),
    ("batch_update_points", {"update_operations": [models.UpdateVectorsOperation(
        update_vectors=models.UpdateVectors(points=[models.PointVectors(
            id=1, vector={"text": SPARSE3})]))]}, "Sparse vector 'text'"),
    ("delete", {"points_selector": models.PointIdsList(points=[1])}, None),
])
def test_vector_limits(method: str, kw: dict[str, Any], words: str | None) -> None:
    if words is None:
        strict_writes.check_vectors(method, kw, CFG)
        return
    with pytest.raises(BadRequest) as caught:
        strict_writes.check_vectors(method, kw, CFG)
    assert words in caught.value.message


@pytest.mark.parametrize(("count", "refused"), [(0, False), (9, False), (10, True), (11, True)])
def test_points_count(count: int, refused: bool) -> None:
    if not refused:
        strict_writes.check_points_count(count, CFG)
        return
    with pytest.raises(BadRequest) as caught:
        strict_writes.check_points_count(count, CFG)
    assert caught.value.message == "Bad request: Max points count limit of 10 reached!"


@pytest.mark.parametrize(("method", "kw", "adds"), [
    ("upsert", {"points": []}, True),
    ("update_vectors", {"points": []}, True),
    ("batch_update_points", {"update_operations": [models.UpsertOperation(
        upsert=models.PointsList(points=[]))]}, True),
    ("batch_update_points", {"update_operations": [models.DeleteOperation(
        delete=models.PointIdsList(points=[1]))]}, False),
    ("set_payload", {"points": [1]}, False),
])
def test_which_writes_the_points_count_limits(method: str, kw: dict[str, Any], adds: bool) -> None:
    assert strict_writes.adds_points(method, kw) is adds


SIZES = models.StrictModeConfig(enabled=True, max_collection_vector_size_bytes=160,
                                max_collection_payload_size_bytes=1000, max_points_count=10)
UPSERT = {"points": [P(id=1, vector=[1.0])]}
SET_PAYLOAD = models.SetPayloadOperation(set_payload=models.SetPayload(payload={}, points=[1]))


@pytest.mark.parametrize(("method", "kw", "limits"), [
    ("upsert", UPSERT, {"vectors", "payload", "points"}),
    ("update_vectors", {"points": []}, {"vectors", "payload", "points"}),
    ("set_payload", {"points": [1]}, {"payload"}),       # Qdrant's SetPayload: payload only
    ("overwrite_payload", {"points": [1]}, {"payload"}),
    ("batch_update_points", {"update_operations": [SET_PAYLOAD]}, {"payload"}),
    ("batch_update_points", {"update_operations": [SET_PAYLOAD, models.UpsertOperation(
        upsert=models.PointsList(points=[]))]}, {"vectors", "payload", "points"}),
    ("delete_payload", {"keys": ["a"], "points": [1]}, set()),
    ("delete", {"points_selector": models.PointIdsList(points=[1])}, set()),
    ("query_points", {}, set()),
])
def test_which_writes_the_size_limits_apply_to(method: str, kw: dict[str, Any],
                                               limits: set[str]) -> None:
    assert strict_writes.size_limits(method, kw, SIZES) == limits
    # only the limits a config sets
    only_points = models.StrictModeConfig(enabled=True, max_points_count=10)
    assert strict_writes.size_limits(method, kw, only_points) == limits & {"points"}


S = strict_writes.Sizes
ALL = frozenset({"vectors", "payload", "points"})


@pytest.mark.parametrize(("limits", "sizes", "words"), [
    (ALL, S(159, 999, 9), None),
    (ALL, S(160, 999, 9), "Bad request: Max vector storage size limit of 0.00015258789MB reached!"),
    (ALL, S(161, 2000, 99), "Max vector storage size limit"),      # vectors first, as in Qdrant
    (ALL, S(0, 1000, 99), "Bad request: Max payload storage size limit of 0.0009536743MB reached!"),
    (ALL, S(0, 0, 10), "Bad request: Max points count limit of 10 reached!"),
    (frozenset({"payload"}), S(999, 999, 99), None),                 # a payload write
    (frozenset({"payload"}), S(0, 1000, 0), "Max payload storage size limit"),
])
def test_size_limits(limits: frozenset[str], sizes: strict_writes.Sizes, words: str | None) -> None:
    if words is None:
        strict_writes.check_sizes(limits, sizes, SIZES)
        return
    with pytest.raises(BadRequest) as caught:
        strict_writes.check_sizes(limits, sizes, SIZES)
    assert words in caught.value.message


@pytest.mark.parametrize(("limit", "printed"), [
    (1024 * 1024, "1"), (1_000_000, "0.9536743"), (1, "0.0000009536743"),
    (5 * 1024 * 1024 * 1024, "5120"), (0, "0"),
])
def test_the_limit_is_printed_as_rust_prints_an_f32(limit: int, printed: str) -> None:
    cfg = models.StrictModeConfig(enabled=True, max_collection_vector_size_bytes=limit)
    with pytest.raises(BadRequest) as caught:
        strict_writes.check_sizes(frozenset({"vectors"}), S(limit, 0, 0), cfg)
    assert caught.value.message == f"Bad request: Max vector storage size limit of {printed}MB reached!"


def test_estimated_sizes_count_stored_widths_and_compact_json() -> None:
    widths = strict_writes.element_bytes({
        "dense": models.VectorParams(size=3, distance=models.Distance.DOT),
        "half": models.VectorParams(size=2, distance=models.Distance.DOT,
                                    datatype=models.Datatype.FLOAT16),
        "bytes": models.VectorParams(size=2, distance=models.Distance.DOT,
                                     datatype=models.Datatype.UINT8)})
    assert widths == {"dense": 4, "half": 2, "bytes": 1}
    records = [
        models.Record(id=1, vector={"dense": [1.0, 2.0, 3.0], "half": [1.0, 2.0],
                                    "bytes": [1.0, 2.0]}, payload={"a": 1}),
        models.Record(id=2, vector={"dense": [1.0, 2.0, 3.0],
                                    "multi": [[1.0, 2.0], [3.0, 4.0]],         # 4 values, f32
                                    "sparse": models.SparseVector(indices=[1, 2], values=[1, 2])},
                      payload=None),
    ]
    assert strict_writes.estimate_sizes(records, widths) == (
        12 + 4 + 2 + 12 + 16 + 16, len('{"a":1}'))
    unnamed = strict_writes.element_bytes(models.VectorParams(size=2, distance=models.Distance.DOT))
    assert strict_writes.estimate_sizes([models.Record(id=1, vector=[1.0, 2.0])], unnamed) == (8, 0)

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

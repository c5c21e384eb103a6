"""Qdrant's request validation that neither engine does on its own, applied at the engine seam.

Both engines take qdrant-client's REST models; pydantic accepts some values Qdrant's serde
refuses, and some shapes reach the engine only to fail there with a foreign message. These pure
checks run before any engine call (:func:`check_call`), so both front ends and both engines
answer as Qdrant does:

- **Point ids** are unsigned 64-bit integers or UUIDs. An integer outside ``0..2^64-1`` is
  refused with Qdrant's deserialize error (400) instead of being stored and breaking retrieval.
- **Inference objects** (``Document``, ``Image``, ``InferenceObject``) need Qdrant's inference
  service, which the embedded upstream does not have: answered as Qdrant without one answers,
  ``Service internal error: InferenceService is not initialized...`` (500 / ``INTERNAL``). The
  proxy in front embeds the objects of models it serves before they get here.
- **Dimension errors** of a query vector carry Qdrant's words (:func:`dimension_message`).
- **Validation** (Qdrant's ``validator`` rules, checked after a body deserialised): a limit or
  group size below 1, a vector size outside 1..65536 answer 422 ``Validation error in JSON
  body: [field: ...]`` (gRPC ``INVALID_ARGUMENT``), where a body that does not deserialise is
  a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest, SwitchyardError

MAX_POINT_ID = 2**64 - 1
INFERENCE_UNAVAILABLE = (
    "InferenceService is not initialized. "
    "Please check if it was properly configured and initialized during startup."
)
_INFERENCE_TYPES = (models.Document, models.Image, models.InferenceObject)
#: engine methods whose arguments carry new point ids
_ID_WRITES = frozenset({"upsert", "batch_update_points"})
#: numpy's messages when a query vector's length differs from the stored vectors'
_NUMPY_SHAPES = (
    re.compile(r"shapes \(\d+,(?P<expected>\d+)\) and \((?P<got>\d+),\) not aligned"),
    re.compile(r"operands could not be broadcast together with shapes "
               r"\(\d+,(?P<expected>\d+)\) \((?P<got>\d+),\)"),
)


class ValidationFailed(BadRequest):
    """A body that deserialised but breaks one of Qdrant's validation rules (422)."""

    http_status = 422
    prefix = ""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"Validation error in JSON body: [{', '.join(problems)}]", raw=True)


#: methods whose ``limit`` (and ``group_size``) Qdrant requires to be at least 1
_LIMITED = frozenset({"query_points", "query_points_groups", "scroll", "facet"})
MAX_VECTOR_SIZE = 65536


def _at_least_one(kw: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [f"{n}: value {kw[n]} invalid, must be 1 or larger"
            for n in names if isinstance(kw.get(n), int) and kw[n] < 1]


def _vector_sizes(config: Any) -> list[str]:
    items = config.items() if isinstance(config, dict) else [(None, config)]
    out = []
    for name, params in items:
        size = getattr(params, "size", None)
        if isinstance(size, int) and not 1 <= size <= MAX_VECTOR_SIZE:
            where = "vectors.size" if name is None else f"vectors.{name}.size"
            out.append(f"{where}: value {size} invalid, must be from 1 to {MAX_VECTOR_SIZE}")
    return out


def validation_problems(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """Qdrant's validation failures of one seam call (empty when it passes)."""
    if method in _LIMITED:
        return _at_least_one(kwargs, ("limit", "group_size"))
    if method == "query_batch" and len(args) == 2:
        return [p for kw in args[1] for p in _at_least_one(kw, ("limit",))]
    if method == "create_collection" and kwargs.get("vectors_config") is not None:
        return _vector_sizes(kwargs["vectors_config"])
    return []


class InferenceUnavailable(SwitchyardError):
    """An inference object reached a server without inference (Qdrant: a service error)."""

    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self) -> None:
        super().__init__(f"Service internal error: {INFERENCE_UNAVAILABLE}", raw=True)


def check_point_id(pid: Any) -> None:
    """Refuse an integer id Qdrant cannot hold (negative or beyond u64)."""
    if isinstance(pid, int) and not isinstance(pid, bool) and not 0 <= pid <= MAX_POINT_ID:
        raise BadRequest(
            f"Format error in JSON body: value {pid} is not a valid point ID, valid values "
            "are either an unsigned integer or a UUID",
            raw=True,
        )


def _new_ids(value: Any) -> Iterable[Any]:
    """The point ids a write would create: upserted points and batches, also inside a batch."""
    if isinstance(value, models.PointStruct):
        yield value.id
    elif isinstance(value, models.Batch):
        yield from value.ids
    elif isinstance(value, (models.PointsList, models.PointsBatch)):
        yield from _new_ids(value.points if isinstance(value, models.PointsList) else value.batch)
    elif isinstance(value, models.UpsertOperation):
        yield from _new_ids(value.upsert)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _new_ids(item)


def _has_inference(value: Any, depth: int = 0) -> bool:
    """Whether a request model holds an inference object anywhere (vectors and queries).

    Lists of numbers (the vectors themselves) are skipped on their first element, so walking a
    large upsert costs one check per vector, not one per float.
    """
    if isinstance(value, _INFERENCE_TYPES):
        return True
    if depth > 12 or value is None or isinstance(value, (str, int, float, bool)):
        return False
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (int, float)):
            return False
        return any(_has_inference(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_has_inference(v, depth + 1) for v in value.values())
    if isinstance(value, BaseModel):
        return any(
            _has_inference(getattr(value, name), depth + 1)
            for name in type(value).model_fields
            if name != "payload"  # user data, never an inference object
        )
    return False


def check_call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse what Qdrant refuses before an engine sees ``method(*args, **kwargs)``."""
    if problems := validation_problems(method, args, kwargs):
        raise ValidationFailed(problems)
    values = (*args, *kwargs.values())
    if method in _ID_WRITES:
        for pid in _new_ids(list(values)):
            check_point_id(pid)
    if any(_has_inference(v) for v in values):
        raise InferenceUnavailable()


def dimension_message(text: str) -> str | None:
    """Qdrant's ``Vector dimension error`` for numpy's shape mismatch, else ``None``."""
    for pattern in _NUMPY_SHAPES:
        if m := pattern.search(text):
            return f"Vector dimension error: expected dim: {m['expected']}, got {m['got']}"
    return None


def _dense_sizes(config: models.CreateCollection) -> dict[str, int]:
    vectors = config.vectors
    if isinstance(vectors, models.VectorParams):
        return {"": vectors.size}
    return {name: p.size for name, p in (vectors or {}).items()}


def _written_vectors(method: str, kw: dict[str, Any]) -> Iterable[Any]:
    """The vectors a write carries (point structs, batches, point vectors; also in a batch)."""
    if method == "batch_update_points":
        for op in kw.get("update_operations") or []:
            if isinstance(op, models.UpsertOperation):
                yield from _written_vectors("upsert", {"points": op.upsert})
            elif isinstance(op, models.UpdateVectorsOperation):
                yield from _written_vectors("update_vectors", {"points": op.update_vectors.points})
        return
    points = kw.get("points")
    if isinstance(points, models.PointsList):
        points = points.points
    elif isinstance(points, models.PointsBatch):
        points = points.batch
    if isinstance(points, models.Batch):
        vectors = points.vectors
        if isinstance(vectors, dict):
            for name, column in vectors.items():
                yield from ({name: v} for v in column)
        else:
            yield from vectors
        return
    for p in points or []:
        yield p.vector


def check_dimensions(config: models.CreateCollection, method: str, kw: dict[str, Any]) -> None:
    """Refuse a write whose dense vectors do not fit the collection, before any is applied
    (Edge applies an upsert's points one by one; Qdrant validates the whole request first)."""
    sizes = _dense_sizes(config)
    sparse = set(config.sparse_vectors or {})
    for vector in _written_vectors(method, kw):
        named = vector if isinstance(vector, dict) else {"": vector}
        for name, value in named.items():
            if name in sparse or isinstance(value, models.SparseVector):
                continue
            if name not in sizes:
                raise BadRequest(f"Not existing vector name error: {name}")
            rows = value if value and isinstance(value[0], list) else [value]
            for row in rows:
                if len(row) != sizes[name]:
                    raise BadRequest(
                        f"Vector dimension error: expected dim: {sizes[name]}, got {len(row)}")

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from qdrant_client.http import models

from proxy.errors import BadRequest, SwitchyardError

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
            f"Json deserialize error: point id {pid} is out of range (an integer id is "
            f"0..{MAX_POINT_ID}): data did not match any variant of untagged enum "
            "ExtendedPointId",
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

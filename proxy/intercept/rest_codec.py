"""REST JSON codec for point writes: body bytes -> ``Operation`` (+ the parsed body) -> body bytes.

Only upsert bodies (``PUT /collections/{c}/points``, list and batch forms) and batch updates
(``POST /collections/{c}/points/batch``) are decoded. Payload values keep their JSON types
(orjson keeps int vs float, nesting and nulls); integers beyond 64 bits fall back to the
standard ``json`` module so nothing is lost. A body that does not parse, or does not have the
shape of a write, is reported as ``None``: the caller forwards it untouched so the client gets
Qdrant's own error for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.intercept.inference import Slot, rest_slots
from proxy.intercept.operation import OpKind, Operation, PointInfo, VectorInfo, VectorKind
from proxy.state.records import META_FIELDS

_INFERENCE_KEYS = ("text", "image", "object")
_LONG_DIGITS = re.compile(rb"\d{19,}")


@dataclass(slots=True)
class RestMessage:
    """A parsed write body and the payload dicts of its points, in point order."""

    body: Any
    payloads: list[dict[str, Any]]
    wide_ints: bool  # parsed with ``json`` because orjson refused (integers beyond 64 bits)

    def stamp(self, fields: Mapping[str, Any]) -> None:
        stamp(self, fields)

    def inference_slots(self) -> list[Slot]:
        return rest_slots(self.body)

    def encode(self) -> bytes:
        if self.wide_ints:
            return json.dumps(self.body, separators=(",", ":")).encode()
        return orjson.dumps(self.body)


def decode(kind: OpKind, collection: str, raw: bytes) -> tuple[Operation, RestMessage] | None:
    body, wide = _loads(raw)
    if not isinstance(body, dict):
        return None
    points: list[PointInfo] = []
    payloads: list[dict[str, Any]] = []
    payload_only: set[str] = set()
    try:
        if kind is OpKind.UPSERT:
            _collect_upsert(body, points, payloads)
        elif kind is OpKind.OVERWRITE:
            _collect_overwrite(body, points, payloads, payload_only)
        else:
            operations = body.get("operations")
            if not isinstance(operations, list):
                return None
            for item in operations:
                if isinstance(item, dict) and isinstance(item.get("upsert"), dict):
                    _collect_upsert(item["upsert"], points, payloads)
                elif isinstance(item, dict) and isinstance(item.get("overwrite_payload"), dict):
                    _collect_overwrite(item["overwrite_payload"], points, payloads, payload_only)
    except _NotAWrite:
        return None
    op = Operation(kind, collection, tuple(points), "rest", frozenset(payload_only))
    return op, RestMessage(body, payloads, wide)


def stamp(message: RestMessage, fields: Mapping[str, Any]) -> None:
    """Fill ``fields`` into every point's payload, keeping values the client set."""
    for payload in message.payloads:
        for key, value in fields.items():
            if key not in payload:
                payload[key] = value


class _NotAWrite(Exception):
    """The body is JSON but not a write Switchyard understands: forward it untouched."""


def _loads(raw: bytes) -> tuple[Any, bool]:
    """Parse with orjson, or with ``json`` when the body may hold integers beyond 64 bits.

    orjson turns such integers into floats (silently losing digits), so any run of 19 or more
    digits sends the body down the exact (slower) path; false alarms only cost speed.
    """
    if _LONG_DIGITS.search(raw):
        try:
            return json.loads(raw), True
        except (ValueError, UnicodeDecodeError):
            return None, False
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw), True
        except (ValueError, UnicodeDecodeError):
            return None, False


def _collect_upsert(
    upsert: dict[str, Any], points: list[PointInfo], payloads: list[dict[str, Any]]
) -> None:
    if isinstance(upsert.get("points"), list):
        for point in upsert["points"]:
            if not isinstance(point, dict) or "id" not in point:
                raise _NotAWrite
            payload = point.get("payload")
            if payload is None:
                payload = point["payload"] = {}
            if not isinstance(payload, dict):
                raise _NotAWrite
            payloads.append(payload)
            points.append(_point_info(point["id"], point.get("vector"), payload))
    elif isinstance(upsert.get("batch"), dict):
        _collect_batch(upsert["batch"], points, payloads)
    else:
        raise _NotAWrite


def _collect_overwrite(
    op: dict[str, Any], points: list[PointInfo], payloads: list[dict[str, Any]], payload_only: set[str]
) -> None:
    """An overwrite replaces the whole payload: it must carry the metadata too (keyed ops,
    which overwrite one nested key only, are left alone)."""
    payload = op.get("payload")
    if not isinstance(payload, dict):
        raise _NotAWrite
    if op.get("key"):
        return
    label = f"payload of {len(op['points'])} point(s)" if isinstance(op.get("points"), list) else "payload (by filter)"
    payloads.append(payload)
    points.append(_point_info(label, None, payload))
    payload_only.add(label)


def _collect_batch(
    batch: dict[str, Any], points: list[PointInfo], payloads: list[dict[str, Any]]
) -> None:
    ids = batch.get("ids")
    if not isinstance(ids, list):
        raise _NotAWrite
    batch_payloads = batch.get("payloads")
    if batch_payloads is None:
        batch_payloads = batch["payloads"] = [{} for _ in ids]
    if not isinstance(batch_payloads, list) or len(batch_payloads) != len(ids):
        raise _NotAWrite
    vectors = batch.get("vectors")
    for i, point_id in enumerate(ids):
        if batch_payloads[i] is None:
            batch_payloads[i] = {}
        payload = batch_payloads[i]
        if not isinstance(payload, dict):
            raise _NotAWrite
        payloads.append(payload)
        points.append(_point_info(point_id, _batch_vector(vectors, i), payload))


def _batch_vector(vectors: Any, i: int) -> Any:
    if isinstance(vectors, list):
        return vectors[i] if i < len(vectors) else None
    if isinstance(vectors, dict):
        return {name: col[i] for name, col in vectors.items() if isinstance(col, list) and i < len(col)}
    return None


def _point_info(point_id: Any, vector: Any, payload: dict[str, Any]) -> PointInfo:
    meta = {k: payload[k] for k in META_FIELDS if k in payload}
    return PointInfo(id=str(point_id), vectors=_vectors(vector), meta=meta)


def _vectors(vector: Any) -> dict[str, VectorInfo]:
    if vector is None:
        return {}
    if isinstance(vector, dict) and not _is_single(vector):
        return {str(name): _shape(v) for name, v in vector.items()}
    return {"": _shape(vector)}


def _is_single(value: dict[str, Any]) -> bool:
    """A dict that is one vector (sparse or inference object), not a map of named vectors."""
    if "indices" in value and "values" in value:
        return True
    return "model" in value and any(k in value for k in _INFERENCE_KEYS)


def _shape(value: Any) -> VectorInfo:
    if isinstance(value, list):
        if value and isinstance(value[0], list):
            return VectorInfo(VectorKind.MULTI, len(value[0]))
        return VectorInfo(VectorKind.DENSE, len(value))
    if isinstance(value, dict):
        if "indices" in value:
            return VectorInfo(VectorKind.SPARSE)
        return VectorInfo(VectorKind.INFERENCE)
    return VectorInfo(VectorKind.INFERENCE)

"""The leaves of a REST write body's walk (:mod:`~switchyard.proxy.intercept.rest_walk`):
reading one value from the bytes, describing a parsed value, and the marks the walk leaves.

- :func:`payload_at` reads the payload object whose ``{`` is at a byte offset (orjson first;
  the exact C scanner when orjson could lose an integer's digits or refuses the text) and
  gives ``None`` when it does not parse.
- :func:`shape`, :func:`is_single`, :func:`is_document`, :func:`point_info`, :func:`meta`,
  :func:`dense_info` and :func:`dense_vectors` say what a parsed value is: its
  ``VectorInfo``, whether a dict is one vector (sparse or inference object) or an inference
  object the proxy can serve, a point's ``PointInfo`` and the embedding metadata it carries.
  The cached ones hand out one shared, read-only object per shape, not one per point.
- :data:`DENSE` stands for a dense vector left unparsed, :data:`Edit` is one splice into the
  client's bytes, and :class:`PayloadSite` is a place where a payload is missing, with the
  edit that fills it when the write is stamped.

All are pure functions of their arguments, except ``PayloadSite.edit``, which also fills the
payload dicts it holds (the light body's, so the body matches the bytes forwarded).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from switchyard.proxy.intercept.json_scan import ScanError, scan_value
from switchyard.proxy.intercept.operation import PointInfo, VectorInfo, VectorKind
from switchyard.proxy.state.records import META_FIELDS

_INFERENCE_KEYS = ("text", "image", "object")
#: How many ``}`` a payload may hold before :func:`payload_at` leaves it to the C scanner.
_PAYLOAD_TRIES = 4
#: orjson reads an integer beyond 64 bits as a float: a payload with floats and a run of 19
#: digits (in an integer, a fraction or a string) goes to the exact C scanner
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_NO_META: Mapping[str, Any] = MappingProxyType({})


class _Dense:
    """Stands for a dense vector the codec did not parse (``RestMessage.body``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DENSE"


DENSE = _Dense()

Edit = tuple[int, int, bytes]  # replace raw[start:end] (byte offsets) with these bytes


@dataclass(slots=True)
class PayloadSite:
    """A place where a payload is missing: ``replace`` a ``null`` payload (or column) by an
    object (or array of objects), or add a ``"payload"`` (``key``) member before the point's
    (or batch's) closing ``}``. Payload objects the client sent are kept in
    ``rest_walk.Walk.opens`` as ``(index after their "{", payload)``: they are the common case
    and a tuple is cheaper.
    """

    form: str  # "replace" | "member"
    start: int
    end: int
    payloads: list[dict[str, Any]]
    key: str = "payload"
    column: bool = False

    def edit(self, fields: Mapping[str, Any], members: bytes) -> Edit:
        for payload in self.payloads:
            payload.update(fields)
        objects = b",".join(b"{" + members + b"}" for _ in self.payloads)
        value = b"[" + objects + b"]" if self.column else objects
        if self.form == "member":
            value = b',"' + self.key.encode() + b'":' + value
        return self.start, self.end, value


def is_document(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("text"), str) and isinstance(value.get("model"), str)


def point_info(point_id: Any, vectors: Mapping[str, VectorInfo], payload: dict[str, Any]) -> PointInfo:
    return PointInfo(str(point_id), dict(vectors), meta(payload))


def meta(payload: dict[str, Any]) -> Mapping[str, Any]:
    """The embedding metadata a client set in a payload (shared empty mapping when none)."""
    if payload.keys().isdisjoint(META_FIELDS):
        return _NO_META
    return {k: payload[k] for k in META_FIELDS if k in payload}


@functools.lru_cache(maxsize=64)
def dense_info(dims: int | None) -> VectorInfo:
    return VectorInfo(VectorKind.DENSE, dims)


@functools.lru_cache(maxsize=64)
def dense_vectors(info: VectorInfo) -> Mapping[str, VectorInfo]:
    """``{"": info}``, one read-only mapping per shape (not one dict per point)."""
    return MappingProxyType({"": info})


def payload_at(data: bytes, pos: int) -> tuple[Any, int] | None:
    """The payload object whose ``{`` is at ``pos`` and the index just past it.

    orjson parses the text up to each ``}`` in turn: a text that parses whole is the object
    (a ``}`` inside a string or a nested object leaves an unfinished text, which fails). orjson
    reads an integer beyond 64 bits as a float, so a payload holding floats is re-read when its
    text has a run of 19 digits. After a few tries, or when orjson refuses (``NaN``, a lone
    surrogate), the C scanner reads it (:func:`scan_value`), exactly; ``None`` when that fails too."""
    close = pos
    for _ in range(_PAYLOAD_TRIES):
        close = data.find(b"}", close + 1)
        if close < 0:
            return None
        try:
            payload = orjson.loads(data[pos:close + 1])
        except orjson.JSONDecodeError:
            continue
        if _has_float(payload) and _LONG_DIGITS.search(data, pos, close) is not None:
            break
        return payload, close + 1
    try:
        return scan_value(data, pos)
    except ScanError:
        return None


def is_single(value: dict[str, Any]) -> bool:
    """A dict that is one vector (sparse or inference object), not a map of named vectors."""
    if "indices" in value and "values" in value:
        return True
    return "model" in value and any(k in value for k in _INFERENCE_KEYS)


def shape(value: Any) -> VectorInfo:
    if isinstance(value, list):
        if value and isinstance(value[0], list):
            return VectorInfo(VectorKind.MULTI, len(value[0]))
        return VectorInfo(VectorKind.DENSE, len(value))
    if isinstance(value, dict):
        if "indices" in value:
            return VectorInfo(VectorKind.SPARSE)
        return VectorInfo(VectorKind.INFERENCE)
    return VectorInfo(VectorKind.INFERENCE)


def _has_float(value: Any) -> bool:
    """Whether a parsed JSON value holds a float anywhere (see :func:`payload_at`)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        return any(map(_has_float, value.values()))
    if kind is list:
        return any(map(_has_float, value))
    return False

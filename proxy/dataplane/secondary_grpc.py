"""The mirror's secondary upsert as gRPC bytes, from the client's own parsed points (no I/O).

A mirrored upsert writes, for every point, the client's payload (minus model A's metadata),
model B's metadata, the source digest and model B's vector. Over REST that body is JSON, and
printing 1,024 x 384 floats costs the proxy ~10 ms of CPU (orjson over the numpy rows), more
than sending it; over gRPC a dense vector is a packed ``repeated float``, exactly the row's
little-endian float32 bytes (``docs/proxy.md``, write path, has the measurements). So when the
client wrote over gRPC, the secondary is built from its parsed ``PointStruct`` messages:

* id and payload are the point's own bytes: its vectors are cleared in place and the point is
  serialized (one C call; no conversion to JSON values and back), after Switchyard's
  per-model fields, the approximate flag and the digest that B's entries do not override are
  deleted (``secondary_leg.STRIPPED``), as ``writes.strip_meta`` does for REST. In place, not
  on a copy: upb's ``MergeFrom`` / ``CopyFrom`` serialize and re-parse (a whole 1,024 x 384
  request's ``CopyFrom`` costs 7.2 ms; copying point by point, this took 8.5 ms, now ~5.5:
  ``docs/proxy.md``, write path); the primary has already been sent, so nothing reads the
  client's vectors again;
* the metadata entries (the same for every point) are encoded once and appended, the digest
  entry is framed per point, and later map entries are what protobuf keeps, so they win;
* the vector field is framed by hand around the row's bytes (a few tags and lengths).

:func:`upsert_request` does no I/O: points, digests, rows and names in, the serialized
``qdrant.UpsertPoints`` (``wait=true``) out, the points consumed. :func:`payload_entries` encodes a JSON-values map
the way a ``PointStruct`` holds it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client.conversions.conversion import payload_to_grpc
from qdrant_client.grpc import points_pb2

METHOD = "/qdrant.Points/Upsert"

# field numbers (qdrant's points.proto and json_with_int.proto)
_UPSERT_COLLECTION, _UPSERT_WAIT, _UPSERT_POINTS = 1, 2, 3
_POINT_PAYLOAD, _POINT_VECTORS = 3, 4
_VECTORS_ONE, _VECTORS_NAMED = 1, 2
_NAMED_MAP = 1
_MAP_KEY, _MAP_VALUE = 1, 2
_VECTOR_DENSE = 101
_DENSE_DATA = 1
_VALUE_STRING = 4


def upsert_request(collection: str, points: Sequence[Any], digests: Sequence[str | None], rows: np.ndarray,
                   vector_name: str, metadata: bytes, stripped: Iterable[str], digest_field: str,
                   sent: Sequence[Mapping[str, Any]] | None = None, stampable: Collection[str] = ()) -> bytes:
    """The serialized ``UpsertPoints(collection, wait=true, points)``: point ``i`` is the client's
    ``points[i]`` (a parsed ``PointStruct``) with its vectors replaced by row ``i`` of the
    float32 matrix ``rows`` (unnamed, or as ``vector_name``), the ``stripped`` payload keys
    removed, then ``metadata`` (from :func:`payload_entries`) and, when ``digests[i]`` is set,
    the digest entry appended. Consumes ``points``: their vectors and stripped keys are removed
    in place (module doc); a second call on them gives the same bytes.

    ``sent``: each point's payload as the client sent it (JSON values), with ``stampable`` the
    keys the proxy's stamp may have added since: a stripped key in neither is not in the point's
    map, so it is not looked up there (upb's map lookups cost ~0.4 µs each, two per point, a
    sixth of this function; with both models fingerprinted none is left to look up)."""
    if not len(points) == len(digests) == len(rows):
        raise ValueError(f"{len(points)} points, {len(digests)} digests and {len(rows)} rows")
    matrix = np.ascontiguousarray(rows, dtype="<f4")
    width = matrix.shape[1] * 4 if matrix.ndim == 2 else 0
    data = memoryview(matrix.tobytes())
    head = _vectors_head(width, vector_name)  # the same for every row
    overridden = set(_entry_keys(metadata))
    drop = tuple(k for k in stripped if k not in overridden)  # later entries win: no delete needed
    out: list[bytes | memoryview] = [_field(_UPSERT_COLLECTION, collection.encode()),
                                     _varint(_UPSERT_WAIT << 3), b"\x01"]
    extend = out.extend  # one join at the end: each row's bytes are copied once
    prefixes: dict[int, bytes] = {}  # digest length -> its entry's bytes before the digest
    heads: dict[int, bytes] = {}  # point size -> the point field's tag and length (sizes repeat)
    tail = len(metadata) + len(head) + width
    stamped = tuple(k for k in drop if k in stampable)
    by_client = frozenset(drop).difference(stamped)
    for i, (point, digest) in enumerate(zip(points, digests)):
        point.ClearField("vectors")
        keys = drop if sent is None or not by_client.isdisjoint(sent[i]) else stamped
        if keys:
            payload = point.payload
            for key in keys:
                if key in payload and (digest is None or key != digest_field):
                    del payload[key]
        own = point.SerializeToString()
        row = data[i * width:(i + 1) * width]
        if digest is not None:
            raw = digest.encode()
            pre = prefixes.get(len(raw))
            if pre is None:
                pre = prefixes[len(raw)] = _string_entry(digest_field, "\0" * len(raw))[:-len(raw)]
            size = len(own) + len(pre) + len(raw) + tail
            field = heads.get(size) or heads.setdefault(size, _head(_UPSERT_POINTS, size))
            extend((field, own, metadata, pre, raw, head, row))
        else:
            size = len(own) + tail
            field = heads.get(size) or heads.setdefault(size, _head(_UPSERT_POINTS, size))
            extend((field, own, metadata, head, row))
    return b"".join(out)


def payload_entries(payload: Mapping[str, Any]) -> bytes:
    """``payload`` (JSON values) as the map entries inside a serialized ``PointStruct``."""
    if not payload:
        return b""
    return bytes(points_pb2.PointStruct(payload=payload_to_grpc(dict(payload))).SerializeToString())


def _entry_keys(entries: bytes) -> list[str]:
    """The keys of serialized ``payload`` map entries (as :func:`payload_entries` makes them)."""
    return list(points_pb2.PointStruct.FromString(entries).payload) if entries else []


def _string_entry(key: str, value: str) -> bytes:
    """One ``payload`` map entry whose value is a string ``Value``."""
    entry = _field(_MAP_KEY, key.encode()) + _field(_MAP_VALUE, _field(_VALUE_STRING, value.encode()))
    return _field(_POINT_PAYLOAD, entry)


def _vectors_head(width: int, name: str) -> bytes:
    """The bytes of ``PointStruct.vectors`` up to a row's ``width`` bytes of floats."""
    dense_head = _head(_DENSE_DATA, width)
    vector_len = len(dense_head) + width
    vector_head = _head(_VECTOR_DENSE, vector_len)
    if not name:
        one = len(vector_head) + vector_len
        return (_head(_POINT_VECTORS, len(_head(_VECTORS_ONE, one)) + one) + _head(_VECTORS_ONE, one)
                + vector_head + dense_head)
    key = _field(_MAP_KEY, name.encode())
    value_len = len(vector_head) + vector_len
    entry_len = len(key) + len(_head(_MAP_VALUE, value_len)) + value_len
    named_len = len(_head(_NAMED_MAP, entry_len)) + entry_len
    return (_head(_POINT_VECTORS, len(_head(_VECTORS_NAMED, named_len)) + named_len)
            + _head(_VECTORS_NAMED, named_len) + _head(_NAMED_MAP, entry_len) + key
            + _head(_MAP_VALUE, value_len) + vector_head + dense_head)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return _head(number, len(data)) + data


def _head(number: int, length: int) -> bytes:
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)

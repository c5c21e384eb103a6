"""The mirror's secondary upsert as gRPC bytes: vectors packed straight from numpy rows.

A mirrored upsert sends the secondary model's vectors for every point. Over REST that body is
JSON, and printing 1,024 x 384 floats costs the proxy ~8 ms of CPU (orjson, the fastest
printer there is); over gRPC a dense vector is a packed ``repeated float``, which is exactly the
row's little-endian float32 bytes, so it costs a copy (``docs/proxy.md``, write path, has the
measurement: the encoder below builds the same 1,024-point request in ~3 ms, qdrant-client's
message constructors in ~15 ms). So the vector and id fields are written here by hand (a few
tags and lengths around ``ndarray.tobytes()``), and everything with structure -- the payload,
JSON values of any shape -- is encoded by protobuf itself through qdrant-client's converter
(``payload_to_grpc``). The constant metadata entries are encoded once per write.

:func:`upsert_request` is pure: ``(collection, ids, payloads, vectors, metadata)`` in, the serialized
``qdrant.UpsertPoints`` out (``wait=true``). A payload the converter refuses (an integer
beyond int64) raises :class:`ValueError`: the caller sends that write over REST instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client.conversions.conversion import payload_to_grpc
from qdrant_client.grpc import points_pb2

METHOD = "/qdrant.Points/Upsert"

# field numbers (qdrant's points.proto)
_UPSERT_COLLECTION, _UPSERT_WAIT, _UPSERT_POINTS = 1, 2, 3
_POINT_ID, _POINT_VECTORS = 1, 4
_ID_NUM, _ID_UUID = 1, 2
_VECTORS_ONE, _VECTORS_NAMED = 1, 2
_NAMED_MAP = 1
_MAP_KEY, _MAP_VALUE = 1, 2
_VECTOR_DENSE = 101
_DENSE_DATA = 1


def upsert_request(collection: str, ids: Sequence[int | str], payloads: Sequence[Mapping[str, Any]],
                   vectors: np.ndarray, vector_name: str, metadata: Mapping[str, Any]) -> bytes:
    """The serialized ``UpsertPoints(collection, wait=true, points)``: point ``i`` has id
    ``ids[i]``, the payload ``payloads[i]`` plus ``metadata`` (which must not share a key with
    it) and row ``i`` of the float32 matrix ``vectors``, as the unnamed vector or as
    ``vector_name``."""
    if len(ids) != len(payloads) or len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids, {len(payloads)} payloads and {len(vectors)} vectors")
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    width = rows.shape[1] * 4 if rows.ndim == 2 else 0
    data = memoryview(rows.tobytes())
    head = _vectors_head(width, vector_name)  # the same for every row
    meta = _payload_entries(metadata)
    out = [_field(_UPSERT_COLLECTION, collection.encode()), _varint(_UPSERT_WAIT << 3), b"\x01"]
    append = out.append
    for i, (pid, payload) in enumerate(zip(ids, payloads)):
        point = b"".join((_field(_POINT_ID, _point_id(pid)), _payload_entries(payload), meta, head,
                          data[i * width:(i + 1) * width]))
        append(_field(_UPSERT_POINTS, point))
    return b"".join(out)


def _vectors_head(width: int, name: str) -> bytes:
    """The bytes of ``PointStruct.vectors`` up to a row's ``width`` bytes of floats."""
    dense_head = _head(_DENSE_DATA, width)
    vector_len = len(dense_head) + width
    vector_head = _head(_VECTOR_DENSE, vector_len)
    if not name:
        one = len(vector_head) + vector_len
        return _head(_POINT_VECTORS, len(_head(_VECTORS_ONE, one)) + one) + _head(_VECTORS_ONE, one) + vector_head + dense_head
    key = _field(_MAP_KEY, name.encode())
    value_len = len(vector_head) + vector_len
    entry_len = len(key) + len(_head(_MAP_VALUE, value_len)) + value_len
    named_len = len(_head(_NAMED_MAP, entry_len)) + entry_len
    return (_head(_POINT_VECTORS, len(_head(_VECTORS_NAMED, named_len)) + named_len)
            + _head(_VECTORS_NAMED, named_len) + _head(_NAMED_MAP, entry_len) + key
            + _head(_MAP_VALUE, value_len) + vector_head + dense_head)


def _payload_entries(payload: Mapping[str, Any]) -> bytes:
    """The ``payload`` map's entries as they sit inside a ``PointStruct`` (protobuf encodes them)."""
    if not payload:
        return b""
    return bytes(points_pb2.PointStruct(payload=payload_to_grpc(dict(payload))).SerializeToString())


def _point_id(pid: int | str) -> bytes:
    if isinstance(pid, bool) or not isinstance(pid, (int, str)):
        raise ValueError(f"point id {pid!r} is neither an unsigned integer nor a UUID string")
    if isinstance(pid, int):
        if not 0 <= pid < 1 << 64:
            raise ValueError(f"point id {pid} is outside 0..2^64-1")
        return _varint(_ID_NUM << 3) + _varint(pid)
    return _field(_ID_UUID, pid.encode())


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

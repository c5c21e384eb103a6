"""The mirror's re-read of the primary over gRPC: ``qdrant.GetPoints`` bytes out, points in (no I/O).

A copy-vectors mirror re-reads the points it touched, with their vectors, because the primary
may store a vector other than the one sent (Cosine normalises) and the target's digest is over
the stored one. Over REST the answer is JSON: 1,024 x 384 floats parse into Python floats
(~28 ms of the proxy's CPU), go through ``numpy`` one point at a time for the digest (~8 ms)
and are printed back (~15 ms). Over gRPC a dense vector is a packed ``repeated float``, so a
point's vector is read as one ``numpy`` row from its bytes (``docs/proxy.md``, write path).

:func:`get_request` builds the request; :func:`points` turns the answer into the points the
REST re-read gives, ``{"id", "payload", "vector"}`` with payloads as JSON values (as
qdrant-client reads them) and the vectors in their REST form but for the floats: a dense vector
is a float32 ``numpy`` row, a multivector a 2-D float32 array, a sparse vector
``{"indices", "values"}`` lists; named vectors a dict of those. Digests (``digest.vector_repr``)
and the printing of the secondary's body (orjson, ``OPT_SERIALIZE_NUMPY``) give the same
bytes for either form. ``None`` from either function: the REST re-read is to be used (an id
gRPC cannot name, a vector kind not known here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client.grpc import points_pb2

from switchyard.proxy.intercept.grpc_codec import payload_json

METHOD = "/qdrant.Points/Get"
_MAX_NUM = 2**64
_PACKED_FIELD_1 = 0x0A  # field 1, length-delimited: a packed ``repeated float data = 1``


def get_request(collection: str, ids: Sequence[Any]) -> bytes | None:
    """The serialized ``GetPoints`` of ``ids`` with payloads and every vector; ``None`` when an
    id is neither an integer in Qdrant's range nor a string (REST carries it as it is)."""
    msg = points_pb2.GetPoints(collection_name=collection, with_payload=points_pb2.WithPayloadSelector(enable=True),
                               with_vectors=points_pb2.WithVectorsSelector(enable=True))
    for pid in ids:
        if isinstance(pid, int) and not isinstance(pid, bool) and 0 <= pid < _MAX_NUM:
            msg.ids.add(num=pid)
        elif isinstance(pid, str):
            msg.ids.add(uuid=pid)
        else:
            return None
    return bytes(msg.SerializeToString())


def points(raw: bytes) -> list[dict[str, Any]] | None:
    """A ``GetResponse``'s points in the REST re-read's form (module doc); ``None`` when one
    holds a vector this module does not read."""
    out = []
    for point in points_pb2.GetResponse.FromString(raw).result:
        pid = point.id
        ident = pid.num if pid.WhichOneof("point_id_options") == "num" else pid.uuid
        vector = _vectors(point.vectors) if point.HasField("vectors") else None
        if vector is _UNKNOWN:
            return None
        out.append({"id": ident, "payload": payload_json(point.payload), "vector": vector})
    return out


_UNKNOWN: Any = object()


def _vectors(vectors: Any) -> Any:
    which = vectors.WhichOneof("vectors_options")
    if which == "vector":
        return _vector(vectors.vector)
    if which == "vectors":
        named = {}
        for name, value in vectors.vectors.vectors.items():
            named[name] = _vector(value)
            if named[name] is _UNKNOWN:
                return _UNKNOWN
        return named
    return None


def _vector(v: Any) -> Any:
    """One ``VectorOutput`` in REST form (module doc); its current oneof, or the deprecated flat
    fields that older servers fill."""
    kind = v.WhichOneof("vector")
    if kind == "dense":
        return _row(v.dense)
    if kind == "sparse":
        return {"indices": list(v.sparse.indices), "values": list(v.sparse.values)}
    if kind == "multi_dense":
        rows = [_row(d) for d in v.multi_dense.vectors]
        return np.stack(rows) if rows else _UNKNOWN
    if kind is not None:
        return _UNKNOWN
    if v.HasField("indices"):
        return {"indices": list(v.indices.data), "values": list(v.data)}
    if v.HasField("vectors_count"):
        flat = _row(v) if v.vectors_count else _UNKNOWN
        return _UNKNOWN if flat is _UNKNOWN or len(flat) % v.vectors_count else flat.reshape(v.vectors_count, -1)
    return _row(v)


def _row(message: Any) -> Any:
    """The float32 row of a message whose ``repeated float data = 1`` is its only field set
    (``DenseVector``, or a flat ``VectorOutput``), read from its own bytes in one copy."""
    raw = message.SerializeToString()
    if not raw:
        return np.zeros(0, dtype=np.float32)
    if raw[0] != _PACKED_FIELD_1:
        return np.asarray(list(message.data), dtype=np.float32)
    length, at = 0, 1
    for shift in range(0, 35, 7):
        byte = raw[at]
        at += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
    if at + length != len(raw) or length % 4:  # another field follows: read the floats one by one
        return np.asarray(list(message.data), dtype=np.float32)
    return np.frombuffer(raw, dtype="<f4", offset=at)  # read-only, over the bytes: nothing writes a re-read row

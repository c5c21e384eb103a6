"""The source-content digest: what the target point was built from, in one stable string.

Backfill, verification and the proxy's mirrored writes all stamp a target point with
``source_digest(source_payload[, source_vector_bytes])`` in payload field
:data:`DIGEST_FIELD`. Comparing a source point's digest with the one on its target point says
whether the target is stale, without re-embedding anything.

Contract: sha256 over canonical JSON (sorted keys, orjson, ints and floats kept distinct) of
the payload *excluding* the ``embedding_*`` metadata fields (the proxy stamps those on the
source too, and they differ between models) and the digest field itself. In copy-vectors
migrations the source vector bytes are part of the digest, since they are the content copied.
The first 32 hex characters are kept: collisions at 128 bits are not a practical concern.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

#: Payload field on target points holding the digest of the source point they came from.
DIGEST_FIELD = "switchyard_source_digest"
#: Payload keys starting with this prefix are model metadata, not content.
METADATA_PREFIX = "embedding_"
DIGEST_CHARS = 32


def content_of(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload fields that are content: without ``embedding_*`` fields and the digest."""
    return {k: v for k, v in (payload or {}).items()
            if k != DIGEST_FIELD and not k.startswith(METADATA_PREFIX)}


def source_digest(payload: Mapping[str, Any] | None, vector_repr: bytes | None = None) -> str:
    """Stable hex digest of a source point's content (and vector bytes when given)."""
    h = hashlib.sha256(orjson.dumps(content_of(payload), option=orjson.OPT_SORT_KEYS))
    if vector_repr is not None:
        h.update(b"\x00vector\x00")
        h.update(vector_repr)
    return h.hexdigest()[:DIGEST_CHARS]


def source_digests(payloads: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """``[source_digest(p) for p in payloads]``, for a mirrored write's points: a payload whose
    canonical JSON holds neither an ``"embedding_`` key prefix nor the digest field's name has
    no key to leave out, so it is hashed as printed, without ``content_of``'s copy (exact: a
    match, even inside a value, only takes the general path)."""
    out = []
    for payload in payloads:
        raw = orjson.dumps(payload or {}, option=orjson.OPT_SORT_KEYS)
        if _METADATA_MARK in raw or _DIGEST_MARK in raw:
            raw = orjson.dumps(content_of(payload), option=orjson.OPT_SORT_KEYS)
        out.append(hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS])
    return out


_METADATA_MARK = f'"{METADATA_PREFIX}'.encode()
_DIGEST_MARK = f'"{DIGEST_FIELD}"'.encode()


def vector_repr(vector: Any) -> bytes:
    """Canonical bytes of a point's vector(s) for copy-vectors digests.

    Dense vectors become float32 bytes (so REST doubles and gRPC floats of the same stored
    vector agree); named vectors are taken in name order; sparse vectors as indices + values;
    anything else (multivectors) as sorted-key JSON of float32-rounded values.
    """
    import numpy as np

    if vector is None:
        return b""
    if isinstance(vector, Mapping):
        if set(vector) >= {"indices", "values"} and len(vector) == 2:
            return (np.asarray(vector["indices"], dtype=np.uint32).tobytes()
                    + np.asarray(vector["values"], dtype=np.float32).tobytes())
        return b"".join(name.encode() + b"\x00" + vector_repr(vector[name]) + b"\x01"
                        for name in sorted(vector))
    if hasattr(vector, "indices") and hasattr(vector, "values"):
        return vector_repr({"indices": list(vector.indices), "values": list(vector.values)})
    arr = np.asarray(vector, dtype=np.float32)
    return arr.tobytes() + str(arr.shape).encode()

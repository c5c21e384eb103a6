"""Which point calls read and which write, and renaming the collection a call addresses.

Pure helpers for routing a logical collection name to the physical collection a migration's
phase dictates. Only point-level calls are routed (``/collections/{name}/points...`` and
``facet`` over REST, ``qdrant.Points/*`` over gRPC); collection management keeps the name the
client used, since aliases already express "which collection is this name" in Qdrant.

gRPC requests are renamed without decoding the message: every ``qdrant.Points`` request has
``collection_name`` as field 1, so :func:`rename_grpc` rewrites that one length-delimited field
and copies the rest of the bytes (vectors included) untouched.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

_COLLECTION_PATH = re.compile(r"^/collections/(?P<c>[^/]+)(?P<rest>/.*)$")
_POINT_ID = re.compile(r"^/points/[^/]+$")

REST_READS = frozenset({
    ("POST", "/points"), ("POST", "/points/scroll"), ("POST", "/points/count"), ("POST", "/facet"),
    ("POST", "/points/query"), ("POST", "/points/query/batch"), ("POST", "/points/query/groups"),
    ("POST", "/points/search"), ("POST", "/points/search/batch"), ("POST", "/points/search/groups"),
    ("POST", "/points/recommend"), ("POST", "/points/recommend/batch"),
    ("POST", "/points/recommend/groups"), ("POST", "/points/discover"),
    ("POST", "/points/discover/batch"), ("POST", "/points/search/matrix/pairs"),
    ("POST", "/points/search/matrix/offsets"),
})
REST_WRITES = frozenset({
    ("PUT", "/points"), ("POST", "/points/delete"), ("PUT", "/points/vectors"),
    ("POST", "/points/vectors/delete"), ("POST", "/points/payload"), ("PUT", "/points/payload"),
    ("POST", "/points/payload/delete"), ("POST", "/points/payload/clear"), ("POST", "/points/batch"),
})
GRPC_READS = frozenset({
    "Get", "Scroll", "Count", "Facet", "Query", "QueryBatch", "QueryGroups", "Search",
    "SearchBatch", "SearchGroups", "Recommend", "RecommendBatch", "RecommendGroups", "Discover",
    "DiscoverBatch", "SearchMatrixPairs", "SearchMatrixOffsets",
})
GRPC_WRITES = frozenset({
    "Upsert", "Delete", "UpdateVectors", "DeleteVectors", "SetPayload", "OverwritePayload",
    "DeletePayload", "ClearPayload", "UpdateBatch",
})
_POINTS_SERVICE = "/qdrant.Points/"


def rest_target(method: str, path: str) -> tuple[str, str, str] | None:
    """``(collection, rest_of_path, "read"|"write")`` for a routable REST call, else ``None``."""
    m = _COLLECTION_PATH.match(path)
    if m is None:
        return None
    rest = m["rest"].rstrip("/") or "/"
    key = (method, rest)
    if key in REST_READS or (method == "GET" and _POINT_ID.match(rest)):
        return unquote(m["c"]), rest, "read"
    if key in REST_WRITES:
        return unquote(m["c"]), rest, "write"
    return None


def rest_path(collection: str, rest: str) -> str:
    return f"/collections/{quote(collection, safe='')}{rest}"


def grpc_kind(method: str) -> str | None:
    """``"read"`` / ``"write"`` for a routable ``qdrant.Points`` method, else ``None``."""
    if not method.startswith(_POINTS_SERVICE):
        return None
    name = method[len(_POINTS_SERVICE):]
    if name in GRPC_READS:
        return "read"
    if name in GRPC_WRITES:
        return "write"
    return None


def grpc_collection(raw: bytes) -> str | None:
    """The ``collection_name`` (field 1) of a ``qdrant.Points`` request, reading only that field.

    Protobuf keeps the *last* value of a repeated singular field, so that is the collection the
    upstream acts on, and the one every rule here must judge (a request naming a harmless
    collection first and ``_switchyard`` last is a call on ``_switchyard``). Bytes that are not a
    well-formed sequence of fields give ``None``: the upstream cannot parse them either."""
    spans = _field1_spans(raw)
    if not spans:
        return None
    start, end, _ = spans[-1]
    try:
        return raw[start:end].decode()
    except UnicodeDecodeError:
        return None


def rename_grpc(raw: bytes, collection: str) -> bytes:
    """``raw`` with its field 1 (every occurrence) replaced by one naming ``collection``, where
    the first stood; every other byte as it was."""
    spans = _field1_spans(raw)
    if not spans:
        return raw
    name = collection.encode()
    out = [raw[:spans[0][2]], b"\x0a", _varint(len(name)), name]
    for i, (_, end, _tag) in enumerate(spans):
        nxt = spans[i + 1][2] if i + 1 < len(spans) else len(raw)
        out.append(raw[end:nxt])
    return b"".join(out)


def _field1_spans(raw: bytes) -> list[tuple[int, int, int]] | None:
    """(value start, value end, tag start) of every top-level length-delimited field 1, or
    ``None`` when the bytes do not scan as fields (truncated, field 0, groups)."""
    spans: list[tuple[int, int, int]] = []
    pos = 0
    n = len(raw)
    while pos < n:
        tag_start = pos
        key, pos = _read_varint(raw, pos)
        if pos < 0:
            return None
        field, wire = key >> 3, key & 7
        if field == 0:
            return None
        if wire == 2:
            length, pos = _read_varint(raw, pos)
            if pos < 0 or pos + length > n:
                return None
            if field == 1:
                spans.append((pos, pos + length, tag_start))
            pos += length
        elif wire == 0:
            _, pos = _read_varint(raw, pos)
            if pos < 0:
                return None
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > n:
                return None
        else:
            return None
    return spans


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(raw):
        byte = raw[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            break
    return 0, -1


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

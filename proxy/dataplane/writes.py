"""What a point write touches, in one form for both protocols: the ``WriteIntent``.

Mirroring a write to the secondary collection needs to know which points it touches (ids, or
filters whose points are resolved on the primary before the write), and, for an unconditional
upsert, the points themselves so the secondary's embedding can start while the primary write
runs. Everything else about the request is irrelevant to the mirror: the secondary is brought
to the primary's state for those points afterwards (see ``mirror.py``), which makes every write
kind (upsert, delete, payload and vector updates, batch updates) one code path.

Decoding is shallow: point ids, filters (as Qdrant REST JSON), payloads and the text field.
Vectors are never decoded: a copy-vectors mirror re-reads the points the primary stored
(``mirror.py``), so the request's vectors would be parsed for nothing (~20 ms per 1,024 x 384
points, ``docs/proxy.md``, write path).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from qdrant_client.conversions.conversion import GrpcToRest
from qdrant_client.grpc import points_pb2

from switchyard.proxy.intercept.grpc_codec import payload_json
from switchyard.proxy.state.records import META_APPROXIMATE, META_FIELDS


def point_key(point_id: Any) -> str:
    """The canonical text of a point id (pure): one key per point whatever form a client wrote.
    Qdrant takes a UUID as hyphenated, simple (32 hex digits), braced or ``urn:uuid:`` text in
    any case, and answers with the hyphenated lower-case form; keyed as written, a re-read
    point would not match the id it was asked for (and the mirror would delete it from the
    secondary as gone). Integers are their decimal text; other text is lower-cased."""
    if isinstance(point_id, str):
        if (len(point_id) == 36 and point_id.islower()
                and point_id[8] == point_id[13] == point_id[18] == point_id[23] == "-"):
            return point_id  # hyphenated lower case already, as Qdrant answers: no parse per id
        try:
            return str(uuid.UUID(point_id))
        except ValueError:
            return point_id.lower()
    return str(point_id)


@dataclass(slots=True)
class NewPoint:
    """A point of an unconditional upsert: id, payload as written, text to embed, vector as sent.
    Not frozen: one is built per point of every mirrored upsert, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) cost 1.5 ms per 1,024 points against 0.4;
    nothing changes one after it is built."""

    id: Any
    payload: dict[str, Any]
    text: str | None
    vector: Any = None  # REST JSON form, as the primary stores it: only from a re-read (copy-vectors)
    wire: Any = None  # the client's parsed gRPC ``PointStruct``, for a secondary sent over gRPC


@dataclass(frozen=True, slots=True)
class WriteIntent:
    ids: tuple[Any, ...] = ()
    filters: tuple[dict[str, Any], ...] = ()
    upserts: tuple[NewPoint, ...] = ()  # only when every operation is an unconditional upsert
    #: the write kinds (``upsert``, ``set_payload``, ..., ``batch``): what a primary's error
    #: answer means depends on them (``primary_outcome.after_primary``)
    kinds: frozenset[str] = frozenset()

    @property
    def fast(self) -> bool:
        """True when the request's own points are the primary's new state (no re-read needed)."""
        return bool(self.upserts) and not self.filters and len(self.ids) == len(self.upserts)


def _text(payload: Any, text_field: str, vector: Any = None) -> str | None:
    """The text to embed: the payload's text field, else an inference object's text."""
    value = payload.get(text_field) if isinstance(payload, dict) else None
    if isinstance(value, str):
        return value
    return _document_text(vector)


def _document_text(vector: Any) -> str | None:
    if isinstance(vector, dict):
        if isinstance(vector.get("text"), str) and "model" in vector:
            return str(vector["text"])
        for inner in vector.values():
            if isinstance(inner, dict) and isinstance(inner.get("text"), str) and "model" in inner:
                return str(inner["text"])
    return None


def strip_meta(payload: dict[str, Any]) -> dict[str, Any]:
    """The client's payload without Switchyard's per-model fields (and the approximate flag)."""
    return {k: v for k, v in payload.items() if k not in META_FIELDS and k != META_APPROXIMATE}


# -- REST --------------------------------------------------------------------------------------

_REST_OPS = {
    ("PUT", "/points"): "upsert", ("POST", "/points/delete"): "delete",
    ("PUT", "/points/vectors"): "update_vectors", ("POST", "/points/vectors/delete"): "delete_vectors",
    ("POST", "/points/payload"): "set_payload", ("PUT", "/points/payload"): "overwrite_payload",
    ("POST", "/points/payload/delete"): "delete_payload", ("POST", "/points/payload/clear"): "clear_payload",
}


def rest_intent(method: str, rest: str, body: Any, text_field: str) -> WriteIntent | None:
    """The intent of a REST point write (``None``: not a body this code understands)."""
    if not isinstance(body, dict):
        return None
    if (method, rest) == ("POST", "/points/batch"):
        ops = body.get("operations")
        if not isinstance(ops, list):
            return None
        parts = []
        for item in ops:
            if not isinstance(item, dict) or len(item) != 1:
                return None
            (kind, op), = item.items()
            part = _rest_op(kind, op, text_field)
            if part is None:
                return None
            parts.append(replace(part, kinds=frozenset({kind})))
        return replace(_combine(parts), kinds=frozenset({"batch"}).union(*(p.kinds for p in parts)))
    kind = _REST_OPS.get((method, rest))
    found = _rest_op(kind, body, text_field) if kind else None
    return None if found is None or kind is None else replace(found, kinds=frozenset({kind}))


def _rest_op(kind: str, op: Any, text_field: str) -> WriteIntent | None:
    if not isinstance(op, dict):
        return None
    if kind == "upsert":
        return _rest_upsert(op, text_field)
    if kind == "update_vectors":
        points = op.get("points")
        if not isinstance(points, list):
            return None
        filters = (op["update_filter"],) if isinstance(op.get("update_filter"), dict) else ()
        return WriteIntent(ids=tuple(p.get("id") for p in points if isinstance(p, dict)), filters=filters)
    return _rest_selector(op)


def _rest_selector(op: dict[str, Any]) -> WriteIntent | None:
    """``points`` (ids or, in old clients, a filter) and/or ``filter`` of a selector-style op."""
    ids: tuple[Any, ...] = ()
    filters: list[dict[str, Any]] = []
    points = op.get("points")
    if isinstance(points, list):
        ids = tuple(points)
    elif isinstance(points, dict) and "filter" in points:
        filters.append(points["filter"])
    if isinstance(op.get("filter"), dict):
        filters.append(op["filter"])
    if not ids and not filters:
        return None
    return WriteIntent(ids=ids, filters=tuple(filters))


def _rest_upsert(op: dict[str, Any], text_field: str) -> WriteIntent | None:
    conditional = op.get("update_filter") is not None or op.get("update_mode") not in (None, "upsert")
    points: list[NewPoint] = []
    if isinstance(op.get("points"), list):
        for p in op["points"]:
            if not isinstance(p, dict) or "id" not in p:
                return None
            payload = p.get("payload") or {}
            points.append(NewPoint(p["id"], payload, _text(payload, text_field, p.get("vector"))))
    elif isinstance(op.get("batch"), dict):
        batch = op["batch"]
        ids, payloads, vectors = batch.get("ids") or [], batch.get("payloads"), batch.get("vectors")
        for i, pid in enumerate(ids):
            payload = (payloads[i] if isinstance(payloads, list) and i < len(payloads) else None) or {}
            vector = _batch_vector(vectors, i)
            points.append(NewPoint(pid, payload, _text(payload, text_field, vector)))
    else:
        return None
    ids = tuple(p.id for p in points)
    return WriteIntent(ids=ids) if conditional else WriteIntent(ids=ids, upserts=tuple(points))


def _batch_vector(vectors: Any, i: int) -> Any:
    if isinstance(vectors, list):
        return vectors[i] if i < len(vectors) else None
    if isinstance(vectors, dict):
        return {n: col[i] for n, col in vectors.items() if isinstance(col, list) and i < len(col)}
    return None


def _combine(parts: list[WriteIntent]) -> WriteIntent:
    ids = tuple(i for p in parts for i in p.ids)
    filters = tuple(f for p in parts for f in p.filters)
    all_fast = all(p.fast for p in parts)
    upserts = tuple(u for p in parts for u in p.upserts) if all_fast else ()
    return WriteIntent(ids=ids, filters=filters, upserts=upserts, kinds=frozenset().union(*(p.kinds for p in parts)))


# -- gRPC --------------------------------------------------------------------------------------

_GRPC_MESSAGES = {
    "Upsert": points_pb2.UpsertPoints, "Delete": points_pb2.DeletePoints,
    "UpdateVectors": points_pb2.UpdatePointVectors, "DeleteVectors": points_pb2.DeletePointVectors,
    "SetPayload": points_pb2.SetPayloadPoints, "OverwritePayload": points_pb2.SetPayloadPoints,
    "DeletePayload": points_pb2.DeletePayloadPoints, "ClearPayload": points_pb2.ClearPayloadPoints,
    "UpdateBatch": points_pb2.UpdateBatchPoints,
}
_GRPC_KINDS = {
    "Upsert": "upsert", "Delete": "delete", "UpdateVectors": "update_vectors",
    "DeleteVectors": "delete_vectors", "SetPayload": "set_payload",
    "OverwritePayload": "overwrite_payload", "DeletePayload": "delete_payload",
    "ClearPayload": "clear_payload", "UpdateBatch": "batch",
}


def grpc_intent(method_name: str, raw: bytes, text_field: str,
                message: Any = None, points_json: Sequence[tuple[Any, dict[str, Any]]] | None = None) -> WriteIntent | None:
    """The intent of a gRPC point write; ``message``: the request already parsed (the stamping
    codec's), so a bound write is parsed once; ``points_json``: an upsert's ids and payloads as
    that codec read them (``GrpcMessage.points_json``), so its points are walked once too."""
    found = _grpc_intent(method_name, raw, text_field, message, points_json)
    return None if found is None else replace(found, kinds=found.kinds | {_GRPC_KINDS[method_name]})


def _grpc_intent(method_name: str, raw: bytes, text_field: str, message: Any = None,
                 points_json: Sequence[tuple[Any, dict[str, Any]]] | None = None) -> WriteIntent | None:
    cls = _GRPC_MESSAGES.get(method_name)
    if cls is None:
        return None
    msg = message
    if msg is None:
        msg = cls()
        try:
            msg.ParseFromString(raw)
        except Exception:  # noqa: BLE001 - undecodable: the mirror cannot know what it touches
            return None
    if method_name == "UpdateBatch":
        return _combine([_grpc_batch_op(op, text_field) for op in msg.operations])
    if method_name == "Upsert":
        return _grpc_upsert(msg.points, msg.HasField("update_filter") or msg.HasField("update_mode"),
                            text_field, points_json if message is not None else None)
    if method_name == "UpdateVectors":
        filters = (_filter(msg.update_filter),) if msg.HasField("update_filter") else ()
        return WriteIntent(ids=tuple(_pid(p.id) for p in msg.points), filters=filters)
    selector = msg.points if method_name in ("Delete", "ClearPayload") else msg.points_selector
    return _grpc_selector(selector, msg)


def _grpc_batch_op(op: Any, text_field: str) -> WriteIntent:
    which = op.WhichOneof("operation")
    part = _grpc_batch_part(which, getattr(op, which), text_field)
    return replace(part, kinds=frozenset({which.removesuffix("_deprecated").replace("_points", "")}))


def _grpc_batch_part(which: str, inner: Any, text_field: str) -> WriteIntent:
    if which == "upsert":
        conditional = inner.HasField("update_filter") or inner.HasField("update_mode")
        return _grpc_upsert(inner.points, conditional, text_field)
    if which == "update_vectors":
        return WriteIntent(ids=tuple(_pid(p.id) for p in inner.points))
    if which in ("delete_deprecated", "clear_payload_deprecated"):
        return _grpc_selector(inner, None)
    selector = inner.points if which in ("delete_points", "clear_payload") else inner.points_selector
    return _grpc_selector(selector, inner)


def _grpc_selector(selector: Any, msg: Any) -> WriteIntent:
    ids: tuple[Any, ...] = ()
    filters: list[dict[str, Any]] = []
    if selector.HasField("points"):
        ids = tuple(_pid(p) for p in selector.points.ids)
    elif selector.HasField("filter"):
        filters.append(_filter(selector.filter))
    if msg is not None and any(f.name == "filter" for f in msg.DESCRIPTOR.fields) and msg.HasField("filter"):
        filters.append(_filter(msg.filter))
    return WriteIntent(ids=ids, filters=tuple(filters))


def _grpc_upsert(points: Any, conditional: bool, text_field: str,
                 read: Sequence[tuple[Any, dict[str, Any]]] | None = None) -> WriteIntent:
    """``read``: each point's id and JSON payload, when the stamping codec has read them."""
    if conditional:
        return WriteIntent(ids=tuple(p[0] for p in read) if read is not None else tuple(_pid(p.id) for p in points))
    pairs = read if read is not None else [(_pid(p.id), payload_json(p.payload)) for p in points]
    new = []
    for p, (pid, payload) in zip(points, pairs):  # the mirror's hot path (docs/proxy.md, write path)
        text = _text(payload, text_field) or _grpc_document_text(p.vectors)
        new.append(NewPoint(pid, payload, text, None, p))
    return WriteIntent(ids=tuple(p.id for p in new), upserts=tuple(new))


def _grpc_document_text(vectors: Any) -> str | None:
    which = vectors.WhichOneof("vectors_options")
    candidates = [vectors.vector] if which == "vector" else (
        list(vectors.vectors.vectors.values()) if which == "vectors" else [])
    for v in candidates:
        if v.WhichOneof("vector") == "document":
            return str(v.document.text)
    return None


def _pid(point_id: Any) -> Any:
    return point_id.num if point_id.WhichOneof("point_id_options") == "num" else point_id.uuid


def _filter(flt: Any) -> dict[str, Any]:
    return GrpcToRest.convert_filter(flt).model_dump(mode="json", exclude_none=True)




# -- the primary leg of a mirrored write is always waited for ----------------------------------

#: ``wait: true`` as a protobuf field: every point-write request has ``optional bool wait = 2``,
#: and a singular field that appears again overrides the earlier value, so appending it is enough.
_GRPC_WAIT_TRUE = b"\x10\x01"


def waited_query(query: str) -> str:
    """``query`` with ``wait=true`` (pure). A mirrored write must have applied when the primary
    answers: with ``wait=false`` Qdrant answers ``acknowledged`` first, and the mirror's re-read
    could see the point as it was before the write (a difference nobody records)."""
    kept = [part for part in query.split("&") if part and part.split("=", 1)[0] != "wait"]
    return "&".join([*kept, "wait=true"])


def waited_request(method_name: str, raw: bytes) -> bytes:
    """The gRPC point-write request ``raw`` with ``wait = true`` (pure; see :func:`waited_query`).
    Only for bytes that parse as the request: appended to a truncated field, the two bytes
    could turn a malformed request into a valid one."""
    return raw + _GRPC_WAIT_TRUE if method_name in _GRPC_MESSAGES else raw

"""Protobuf codec for point writes: ``UpsertPoints`` / ``UpdateBatchPoints`` bytes <-> ``Operation``.

Messages are parsed with qdrant-client's generated classes and re-serialised after stamping.
Vector floats stay inside protobuf's repeated containers: only their lengths are read, and only
when the planner asks (enforce mode: :class:`_Shapes`), which is what keeps this cheap (turning
them into Python floats would cost ~20x the parse; every field access of upb's lazily parsed
messages costs a wrapper object, so a point is touched as little as its plan needs: its id and
whether its payload holds metadata). Payload values are ``qdrant.Value`` messages and are never
re-typed; stamping adds entries only: one ``MergeFromString`` of the metadata entries, encoded
once, into each point whose payload has none of them (the common case), entry by entry otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from dataclasses import dataclass
from typing import Any, overload

from google.protobuf.message import DecodeError
from qdrant_client.conversions.conversion import value_to_json
from qdrant_client.grpc import json_with_int_pb2, points_pb2

from switchyard.proxy.intercept.inference import Slot, grpc_slots
from switchyard.proxy.intercept.operation import OpKind, Operation, PointInfo, VectorInfo, VectorKind
from switchyard.proxy.intercept.rest_values import meta as meta_of
from switchyard.proxy.state.records import META_FIELDS

UPSERT_METHOD = "/qdrant.Points/Upsert"
BATCH_METHOD = "/qdrant.Points/UpdateBatch"
OVERWRITE_METHOD = "/qdrant.Points/OverwritePayload"
METHODS = {UPSERT_METHOD: OpKind.UPSERT, BATCH_METHOD: OpKind.BATCH, OVERWRITE_METHOD: OpKind.OVERWRITE}
_NO_META: Mapping[str, Any] = MappingProxyType({})
_CLASSES = {OpKind.UPSERT: points_pb2.UpsertPoints, OpKind.BATCH: points_pb2.UpdateBatchPoints,
            OpKind.OVERWRITE: points_pb2.SetPayloadPoints}


@dataclass(slots=True)
class GrpcMessage:
    message: Any  # points_pb2.UpsertPoints | UpdateBatchPoints | SetPayloadPoints (overwrite)
    #: an ``UpsertPoints``' points as the client sent them, ``(id, payload as JSON values)`` in
    #: order, when :func:`decode` was asked for them (a mirrored write's intent reads these
    #: instead of walking the points again); ``None`` otherwise
    points_json: list[tuple[Any, dict[str, Any]]] | None = None
    #: positions (in ``point_structs()`` order) of the points whose payload set an embedding
    #: metadata field when decoded (``None``: not known; the stamp looks in each payload)
    metadata_at: frozenset[int] | None = None

    def encode(self) -> bytes:
        return bytes(self.message.SerializeToString())

    def stamp(self, fields: Mapping[str, Any]) -> None:
        stamp(self, fields)

    def inference_slots(self) -> list[Slot]:
        return grpc_slots(self.point_structs())

    def overwrite_payloads(self) -> Iterator[Any]:
        """Payload maps of whole-payload overwrites (keyed overwrites touch one nested key only)."""
        if isinstance(self.message, points_pb2.SetPayloadPoints):
            if not self.message.HasField("key"):
                yield self.message.payload
            return
        if isinstance(self.message, points_pb2.UpdateBatchPoints):
            for op in self.message.operations:
                if op.WhichOneof("operation") == "overwrite_payload" and not op.overwrite_payload.HasField("key"):
                    yield op.overwrite_payload.payload

    def point_structs(self) -> Iterator[Any]:
        if isinstance(self.message, points_pb2.SetPayloadPoints):
            return
        if isinstance(self.message, points_pb2.UpsertPoints):
            yield from self.message.points
            return
        for op in self.message.operations:
            if op.WhichOneof("operation") == "upsert":
                yield from op.upsert.points


def decode(method: str, raw: bytes, with_payloads: bool = False) -> tuple[Operation, GrpcMessage] | None:
    """Decode a write; ``None`` when the bytes do not parse (forward them untouched).

    ``with_payloads``: an ``UpsertPoints``' payloads are also read as JSON values, in the same
    walk over its points, into ``GrpcMessage.points_json`` (the mirror's intent needs them; one
    walk instead of two costs ~0.5 ms less per 1,024 points, ``docs/proxy.md``)."""
    kind = METHODS[method]
    message = _CLASSES[kind]()
    try:
        message.ParseFromString(raw)
    except DecodeError:
        return None
    wrapped = GrpcMessage(message)
    if kind is OpKind.UPSERT:
        return _upsert(message, wrapped, with_payloads), wrapped
    points = [_point_info(p) for p in wrapped.point_structs()]
    labels = [f"payload overwrite #{i + 1}" for i, _ in enumerate(wrapped.overwrite_payloads())]
    for label, payload in zip(labels, wrapped.overwrite_payloads()):
        meta = {k: _plain(payload[k]) for k in META_FIELDS if k in payload}
        points.append(PointInfo(id=label, meta=meta))
    op = Operation(kind, message.collection_name, tuple(points), "grpc", frozenset(labels))
    return op, wrapped


def _upsert(message: Any, wrapped: GrpcMessage, with_payloads: bool) -> Operation:
    """An ``UpsertPoints``' operation. One walk finds the points whose payload sets metadata
    (``metadata_at``, so the stamp need not look again); only those get a ``PointInfo`` now,
    the others when the planner reads them, which it does only in enforce mode (an id's text,
    a ``PointInfo`` and its shapes cost ~0.8 ms per 1,024 points, ``docs/proxy.md``). With
    ``with_payloads`` the walk reads every point's id and payload as JSON values instead (the
    mirror needs them) and marks the points from those; their ``PointInfo`` takes its metadata
    from the JSON values, as the REST codec reads it."""
    known: dict[int, PointInfo] = {}
    if with_payloads:
        structs = list(message.points)
        wrapped.points_json = [_id_and_payload(p) for p in structs]
        for i, (ident, payload) in enumerate(wrapped.points_json):
            if not payload.keys().isdisjoint(META_FIELDS):  # its metadata as the REST codec reads it
                known[i] = PointInfo(str(ident) if isinstance(ident, int) else ident or "0",
                                     _Shapes(structs[i]), meta_of(payload))
        marked = list(known)
    else:
        structs, marked = _with_metadata(message.points)
    points = _LazyPoints(structs, known)
    wrapped.metadata_at = frozenset(marked)
    with_meta = tuple(points[i] for i in marked)
    return Operation(OpKind.UPSERT, message.collection_name, points, "grpc", frozenset(), with_meta)


def _with_metadata(points: Any) -> tuple[list[Any], list[int]]:
    """The ``PointStruct``s, and the positions of those whose payload sets a metadata field."""
    structs: list[Any] = []
    marked: list[int] = []
    for i, point in enumerate(points):
        structs.append(point)
        payload = point.payload
        for key in META_FIELDS:
            if key in payload:
                marked.append(i)
                break
    return structs, marked


class _LazyPoints(Sequence[PointInfo]):
    """An upsert's ``PointInfo``s, each built when it is read (see :func:`_upsert`), but for
    those already ``known`` (by position: the marked points, read once)."""

    __slots__ = ("_structs", "_known")

    def __init__(self, structs: list[Any], known: Mapping[int, PointInfo] | None = None) -> None:
        self._structs = structs
        self._known = known or {}

    def _info(self, index: int) -> PointInfo:
        found = self._known.get(index)
        return found if found is not None else _point_info(self._structs[index])

    def __len__(self) -> int:
        return len(self._structs)

    @overload
    def __getitem__(self, index: int) -> PointInfo: ...

    @overload
    def __getitem__(self, index: slice) -> list[PointInfo]: ...

    def __getitem__(self, index: int | slice) -> PointInfo | list[PointInfo]:
        if isinstance(index, slice):
            return [self._info(i) for i in range(len(self._structs))[index]]
        return self._info(range(len(self._structs))[index])  # a negative index, as a list takes it

    def __iter__(self) -> Iterator[PointInfo]:
        if not self._known:
            return map(_point_info, self._structs)
        return map(self._info, range(len(self._structs)))


def stamp(message: GrpcMessage, fields: Mapping[str, Any]) -> None:
    """Fill ``fields`` into every point's payload, keeping values the client set."""
    values = {key: _value(v) for key, v in fields.items()}
    template = points_pb2.PointStruct()
    for key, value in values.items():
        template.payload[key].CopyFrom(value)
    entries = template.SerializeToString()  # the payload map entries, as a point's bytes
    keys = tuple(values)
    marked = message.metadata_at
    for i, point in enumerate(message.point_structs()):
        if marked is not None:  # the decode knows which points set metadata: no lookups
            if i in marked:
                _fill(point.payload, values)
            else:
                point.MergeFromString(entries)
            continue
        payload = point.payload
        for key in keys:
            if key in payload:
                _fill(payload, values)
                break
        else:  # merging a point's bytes adds map entries (replacing equal keys: there are none)
            point.MergeFromString(entries)
    for payload in message.overwrite_payloads():
        _fill(payload, values)


def _fill(payload: Any, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if key not in payload:
            payload[key].CopyFrom(value)


def _value(v: Any) -> json_with_int_pb2.Value:
    if isinstance(v, bool):
        return json_with_int_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return json_with_int_pb2.Value(integer_value=v)
    if isinstance(v, float):
        return json_with_int_pb2.Value(double_value=v)
    return json_with_int_pb2.Value(string_value=str(v))


def _point_info(point: Any) -> PointInfo:
    pid = point.id
    point_id = pid.uuid or str(pid.num)  # the unset one of the oneof reads as "" / 0
    payload = point.payload
    for key in META_FIELDS:
        if key in payload:
            meta: Mapping[str, Any] = {k: _plain(payload[k]) for k in META_FIELDS if k in payload}
            break
    else:
        meta = _NO_META
    return PointInfo(point_id, _Shapes(point), meta)


def _id_and_payload(point: Any) -> tuple[Any, dict[str, Any]]:
    """A point's id (an integer or a UUID string) and its payload as JSON values."""
    pid = point.id
    ident = pid.num if pid.WhichOneof("point_id_options") == "num" else pid.uuid
    return ident, payload_json(point.payload)


#: ``qdrant.Value`` kinds whose field is the JSON value itself
_SCALAR_KINDS = frozenset({"string_value", "integer_value", "bool_value"})


def payload_json(values: Any) -> dict[str, Any]:
    """A ``map<string, qdrant.Value>`` as JSON values, as qdrant-client's ``grpc_to_payload``
    gives it: strings, integers and booleans read inline, everything else (doubles, for their
    non-finite cases; lists, structs, null) by its ``value_to_json``. Inline, a 1,024-point
    upsert's payloads convert in ~2.5 ms against ~3.2 (the lookups of upb's map dominate)."""
    out = {}
    for key in values:  # upb implements items() in Python: lookups by key are faster
        value = values[key]
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind) if kind in _SCALAR_KINDS else value_to_json(value)
    return out


class _Shapes(Mapping[str, VectorInfo]):
    """A point's vector shapes, read from its message the first time they are asked for: only
    enforce mode asks, and reading them costs more than the rest of the point (module doc)."""

    __slots__ = ("_point", "_shapes")

    def __init__(self, point: Any) -> None:
        self._point = point
        self._shapes: dict[str, VectorInfo] | None = None

    def _read(self) -> dict[str, VectorInfo]:
        if self._shapes is None:
            self._shapes = _vectors(self._point.vectors)
        return self._shapes

    def __getitem__(self, name: str) -> VectorInfo:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __repr__(self) -> str:
        return repr(self._read())


def _plain(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(value, kind)


def _vectors(vectors: Any) -> dict[str, VectorInfo]:
    which = vectors.WhichOneof("vectors_options")
    if which == "vector":
        return {"": _shape(vectors.vector)}
    if which == "vectors":
        return {name: _shape(v) for name, v in vectors.vectors.vectors.items()}
    return {}


def _shape(vector: Any) -> VectorInfo:
    which = vector.WhichOneof("vector")
    if which == "dense":
        return VectorInfo(VectorKind.DENSE, len(vector.dense.data))
    if which == "sparse" or vector.HasField("indices"):
        return VectorInfo(VectorKind.SPARSE)
    if which == "multi_dense":
        inner = vector.multi_dense.vectors
        return VectorInfo(VectorKind.MULTI, len(inner[0].data) if inner else 0)
    if which in ("document", "image", "object"):
        return VectorInfo(VectorKind.INFERENCE)
    if vector.HasField("vectors_count"):  # deprecated flat multi-dense form
        count = vector.vectors_count or 1
        return VectorInfo(VectorKind.MULTI, len(vector.data) // count)
    return VectorInfo(VectorKind.DENSE, len(vector.data))  # deprecated flat dense form

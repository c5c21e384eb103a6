"""REST JSON codec for point writes: body bytes -> ``Operation`` + ``RestMessage`` -> body bytes.

Decoded: upsert bodies (``PUT /collections/{c}/points``, list and batch forms), batch updates
(``POST /collections/{c}/points/batch``) and payload overwrites (``PUT .../points/payload``).
The body is walked with :class:`~switchyard.proxy.intercept.json_scan.Cursor`: ids, payloads and
inference objects are parsed (exactly: integers of any size survive), dense vectors are only
measured, never turned into Python floats. Stamping and serving inference objects are
*splices* into the client's own text: the bytes forwarded are the client's, with the metadata
fields inserted at the start of each payload (or a payload added where a point had none) and
each served inference object replaced by its vector. Nothing else changes, byte for byte.

The same walk gives the mirror what it needs (``RestMessage.body``, a light copy of the body
with ids, payloads, inference objects and options; dense vectors as :data:`DENSE`, or parsed
when ``with_vectors`` asks for them, as copy-vectors migrations do), so one decode serves
stamping, enforcement, inference and mirroring.

A body that does not parse, or does not have the shape of a write, is reported as ``None``:
the caller forwards it untouched so the client gets Qdrant's own error for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from switchyard.proxy.intercept.inference import Slot
from switchyard.proxy.intercept.json_scan import UNMEASURED, Cursor, ScanError, scan_value
from switchyard.proxy.intercept.operation import OpKind, Operation, PointInfo, VectorInfo, VectorKind
from switchyard.proxy.state.records import META_FIELDS

_INFERENCE_KEYS = ("text", "image", "object")
#: ``{"id": <integer token or escape-free string>, "vector"|"payload":`` (the fast point's head)
_POINT_HEAD = re.compile(rb'\{[ \t\n\r]*"id"[ \t\n\r]*:[ \t\n\r]*(?:(-?(?:0|[1-9][0-9]*))|"([^"\\\x00-\x1f]*)")'
                         rb'[ \t\n\r]*,[ \t\n\r]*"(?:(vector)|payload)"[ \t\n\r]*:[ \t\n\r]*')
_NEXT_KEY = re.compile(rb'[ \t\n\r]*,[ \t\n\r]*"(?:(vector)|payload)"[ \t\n\r]*:[ \t\n\r]*')
_NUMBER_BYTES = b"-0123456789"  # a one-byte slice is "in" it when it starts a number
#: How many ``}`` a payload may hold before :func:`_payload_at` leaves it to the C scanner.
_PAYLOAD_TRIES = 4
#: orjson reads an integer beyond 64 bits as a float: a payload with floats and a run of 19
#: digits (in an integer, a fraction or a string) goes to the exact C scanner
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_NO_META: Mapping[str, Any] = MappingProxyType({})
#: ``PointInfo(id, vectors, meta)`` without the Python-level ``__new__`` of a NamedTuple
_new_point: Callable[[tuple[str, Mapping[str, VectorInfo], Mapping[str, Any]]], PointInfo] = functools.partial(
    tuple.__new__, PointInfo)
_CLOSE = re.compile(rb'[ \t\n\r]*\}[ \t\n\r]*')


class _Dense:
    """Stands for a dense vector the codec did not parse (``RestMessage.body``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DENSE"


DENSE = _Dense()

Edit = tuple[int, int, bytes]  # replace raw[start:end] (byte offsets) with these bytes


@dataclass(slots=True)
class _PayloadSite:
    """A place where a payload is missing: ``replace`` a ``null`` payload (or column) by an
    object (or array of objects), or add a ``"payload"`` (``key``) member before the point's
    (or batch's) closing ``}``. Payload objects the client sent are kept in ``_Walk.opens``
    as ``(index after their "{", payload)``: they are the common case and a tuple is cheaper.
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


class RestMessage:
    """A decoded write: the light ``body``, where its payloads are, its inference slots."""

    __slots__ = ("raw", "body", "_opens", "_sites", "_slots", "_edits")

    def __init__(self, raw: bytes, body: Any, walk: _Walk) -> None:
        self.raw = raw
        self.body = body
        self._opens = walk.opens
        self._sites = walk.sites
        self._slots = walk.slots
        self._edits = walk.edits  # served vectors land here (``Slot.put``), stamps too

    def stamp(self, fields: Mapping[str, Any]) -> None:
        stamp(self, fields)

    def inference_slots(self) -> list[Slot]:
        return list(self._slots)

    def parts(self) -> list[bytes | memoryview]:
        """The bytes to forward, in order, without joining them: slices of the client's bytes
        (memoryviews, no copy) with the stamps and served vectors between them."""
        if not self._edits:
            return [self.raw]
        source = memoryview(self.raw)
        parts: list[bytes | memoryview] = []
        last = 0
        for start, end, value in sorted(self._edits):
            parts.append(source[last:start])
            parts.append(value)
            last = end
        parts.append(source[last:])
        return parts

    def encode(self) -> bytes:
        """The client's bytes with the stamps and served vectors spliced in."""
        if not self._edits:
            return self.raw
        return b"".join(self.parts())


def decode(kind: OpKind, collection: str, raw: bytes, *, measure: bool = True,
           with_vectors: bool = False) -> tuple[Operation, RestMessage] | None:
    """Decode a write body; ``None`` when it is not one (forward it untouched).

    ``measure``: count dense vectors' sizes (enforce mode needs them; otherwise their
    ``VectorInfo.dims`` is ``None``). ``with_vectors``: parse dense vectors into
    ``RestMessage.body`` (copy-vectors mirroring).
    """
    walk = _Walk(Cursor(raw), measure, with_vectors)
    try:
        body = walk.body(kind)
        if walk.c.pos != len(raw):
            raise ScanError("trailing characters")
    except (ScanError, RecursionError):
        return None
    op = Operation(kind, collection, tuple(walk.points), "rest", frozenset(walk.payload_only))
    return op, RestMessage(raw, body, walk)


def stamp(message: RestMessage, fields: Mapping[str, Any]) -> None:
    """Fill ``fields`` into every point's payload, keeping values the client set (the payload
    dicts of ``message.body`` change too, as the bytes will)."""
    fields = dict(fields)
    members = orjson.dumps(fields)[1:-1]
    edits = message._edits
    for at, payload in message._opens:
        if payload:
            new = {k: v for k, v in fields.items() if k not in payload}
            if not new:
                continue
            payload.update(new)
            text = members if len(new) == len(fields) else orjson.dumps(new)[1:-1]
            edits.append((at, at, text + b","))
        else:
            payload.update(fields)
            edits.append((at, at, members))
    edits.extend(site.edit(fields, members) for site in message._sites)


class _Walk:
    """One walk over a write body, collecting points, payload sites, slots (module docstring)."""

    def __init__(self, cursor: Cursor, measure: bool, with_vectors: bool) -> None:
        self.c = cursor
        self.measure = measure
        self.with_vectors = with_vectors
        self.points: list[PointInfo] = []
        self.payload_only: set[str] = set()
        self.sites: list[_PayloadSite] = []
        self.opens: list[tuple[int, dict[str, Any]]] = []  # payload objects: after "{", payload
        self.slots: list[Slot] = []
        self.edits: list[Edit] = []

    def body(self, kind: OpKind) -> dict[str, Any]:
        if kind is OpKind.UPSERT:
            return self.upsert()
        if kind is OpKind.OVERWRITE:
            return self.overwrite()
        return self.operations()

    # -- the three body shapes

    def members(self, handlers: Mapping[str, Callable[[], Any]]) -> tuple[dict[str, Any], int]:
        """An object whose listed keys are read by their handler, the rest parsed; returns
        the light object and the index of its closing brace."""
        c = self.c
        out: dict[str, Any] = {}
        if c.peek() != b"{":
            raise ScanError("expected an object")
        if c.opens(b"{", b"}"):
            while True:
                key = c.key()
                handler = handlers.get(key)
                out[key] = handler() if handler is not None else c.value()
                if not c.more(b"}"):
                    break
        return out, c.end - 1

    def upsert(self) -> dict[str, Any]:
        body, close = self.members({"points": self.point_list, "batch": self.batch})
        if not isinstance(body.get("points"), list) and not isinstance(body.get("batch"), dict):
            raise ScanError("an upsert has points or a batch")
        return body

    def operations(self) -> dict[str, Any]:
        body, _ = self.members({"operations": self.operation_list})
        if not isinstance(body.get("operations"), list):
            raise ScanError("a batch update has operations")
        return body

    def operation_list(self) -> list[Any]:
        c, ops = self.c, []
        if c.peek() != b"[":
            return c.value()  # type: ignore[no-any-return]
        if c.opens(b"[", b"]"):
            while True:
                if c.peek() == b"{":
                    op, _ = self.members({"upsert": self.upsert, "overwrite_payload": self.overwrite})
                else:
                    op = c.value()
                ops.append(op)
                if not c.more(b"]"):
                    break
        return ops

    def overwrite(self) -> dict[str, Any]:
        """An overwrite replaces the whole payload: it must carry the metadata too (keyed ops,
        which overwrite one nested key only, are left alone)."""
        sites, opens = len(self.sites), len(self.opens)
        body, _ = self.members({"payload": self.payload_value})
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise ScanError("an overwrite has a payload object")
        if body.get("key"):
            del self.sites[sites:], self.opens[opens:]
            return body
        points = body.get("points")
        label = f"payload of {len(points)} point(s)" if isinstance(points, list) else "payload (by filter)"
        self.points.append(_point_info(label, {}, payload))
        self.payload_only.add(label)
        return body

    # -- points

    def point_list(self) -> list[dict[str, Any]]:
        c, points = self.c, []
        if c.peek() != b"[":
            raise ScanError("points is a list")
        if c.opens(b"[", b"]"):
            while True:
                points.append(self.point())
                if not c.more(b"]"):
                    break
        return points

    def point(self) -> dict[str, Any]:
        start = self.c.pos
        fast = self.fast_point()
        if fast is not None:
            return fast
        self.c.pos = start
        infos: dict[str, VectorInfo] = {}

        def vector() -> Any:
            value, found = self.vector()
            infos.update(found)
            return value

        point, close = self.members({"vector": vector, "payload": self.payload_value})
        if "id" not in point:
            raise ScanError("a point has an id")
        if "payload" not in point:  # add one
            point["payload"] = {}
            self.sites.append(_PayloadSite("member", close, close, [point["payload"]]))
        payload = point["payload"]
        if not isinstance(payload, dict):
            raise ScanError("a payload is an object")
        self.points.append(_point_info(point["id"], infos, payload))
        return point

    def fast_point(self) -> dict[str, Any] | None:
        """The common point, ``{"id": int or plain string, "vector": [numbers], "payload":
        {...}}`` (vector and payload in either order), read with a few C calls over the bytes;
        ``None`` (nothing recorded, the cursor to be put back) for any other shape, which
        :meth:`point` walks member by member. This is the per-point cost of a bound upsert, so
        it is written flat: one regex for the id and the first key, ``bytes.find`` for the
        vector's end, orjson for the payload (:func:`_payload_at`)."""
        data = self.c.data
        head = _POINT_HEAD.match(data, self.c.pos)
        if head is None:
            return None
        number, string, first = head.group(1, 2, 3)
        if number is not None:
            point_id: Any = int(number)
        else:
            try:
                point_id = string.decode("utf-8")
            except UnicodeDecodeError:
                return None
        pos = head.end()
        vector: Any = None
        payload: Any = None
        info: VectorInfo | None = None
        opened = -1
        is_vector = first is not None
        for i in (0, 1):
            if i:
                sep = _NEXT_KEY.match(data, pos)
                if sep is None:
                    return None
                pos = sep.end()
                is_vector = sep.group(1) is not None
            if is_vector:
                if info is not None or data[pos + 1:pos + 2] not in _NUMBER_BYTES:
                    return None
                end = data.find(b"]", pos)  # one pass over the vector's bytes, the only one:
                if end < 0:  # a "]" inside a string of the array (a body Qdrant refuses) is
                    return None  # caught by what must follow (``, "payload":`` or ``}``)
                info = _dense_info(data.count(b",", pos, end) + 1 if self.measure else None)
                vector = orjson.loads(data[pos:end + 1]) if self.with_vectors else DENSE
                pos = end + 1
            else:
                if opened >= 0 or data[pos:pos + 1] != b"{":
                    return None
                found = _payload_at(data, pos)
                if found is None:
                    return None
                payload, after = found
                opened, pos = pos + 1, after
        close = _CLOSE.match(data, pos)
        if close is None or info is None:
            return None
        self.c.pos = close.end()
        self.opens.append((opened, payload))
        self.points.append(_new_point((str(point_id), _dense_vectors(info), _meta(payload))))
        return {"id": point_id, "vector": vector, "payload": payload}

    def payload_value(self) -> Any:
        """A payload object (stamped after its ``{``) or ``null`` (replaced by an object)."""
        c = self.c
        start = c.pos
        if c.peek() == b"{":
            payload = c.value()
            self.opens.append((start + 1, payload))
            return payload
        value = c.value()
        if value is not None:
            raise ScanError("a payload is an object or null")
        payload = {}
        self.sites.append(_PayloadSite("replace", start, start + 4, [payload]))
        return payload

    def batch(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}

        def vectors() -> Any:
            value, infos = self.vector_columns()
            columns["infos"] = infos
            return value

        batch, close = self.members({"vectors": vectors, "payloads": self.payload_column})
        ids = batch.get("ids")
        if not isinstance(ids, list):
            raise ScanError("a batch has ids")
        if "payloads" not in batch:
            batch["payloads"] = [{} for _ in ids]
            self.sites.append(_PayloadSite("member", close, close, batch["payloads"], "payloads", True))
        payloads = batch["payloads"]
        if isinstance(payloads, list) and not payloads and self.sites and self.sites[-1].payloads is payloads:
            payloads.extend({} for _ in ids)  # ``"payloads": null`` becomes one object per id
        if not isinstance(payloads, list) or len(payloads) != len(ids):
            raise ScanError("a batch has one payload per id")
        infos = columns.get("infos", {})
        for i, point_id in enumerate(ids):
            found = {name: col[i] for name, col in infos.items() if i < len(col)}
            self.points.append(_point_info(point_id, found, payloads[i]))
        return batch

    def payload_column(self) -> list[dict[str, Any]]:
        c = self.c
        start = c.pos
        if c.peek() != b"[":
            if c.value() is not None:
                raise ScanError("payloads is a list")
            payloads: list[dict[str, Any]] = []
            site = _PayloadSite("replace", start, start + 4, payloads, column=True)
            self.sites.append(site)
            return payloads  # one per id, once the batch's ids are known (``batch``)
        out: list[dict[str, Any]] = []
        if c.opens(b"[", b"]"):
            while True:
                out.append(self.payload_value())
                if not c.more(b"]"):
                    break
        return out

    # -- vectors

    def vector(self) -> tuple[Any, dict[str, VectorInfo]]:
        """A point's ``vector``: dense, multi-dense, sparse, inference object or named map."""
        c = self.c
        if c.peek() == b"[":
            value, info = self.array_vector()
            return value, {"": info}
        if c.peek() != b"{":
            value = c.value()
            return value, ({} if value is None else {"": _shape(value)})
        start = c.pos
        named: dict[str, Any] = {}
        infos: dict[str, VectorInfo] = {}
        if c.opens(b"{", b"}"):
            while True:
                name = c.key()
                named[name], infos[name] = self.element()
                if not c.more(b"}"):
                    break
        end = c.end
        if not _is_single(named):
            return named, infos
        named = Cursor(c.data, start).value()  # small: a sparse vector or an inference object
        self.slot(named, start, end)
        return named, {"": _shape(named)}

    def element(self) -> tuple[Any, VectorInfo]:
        """One vector inside a named map or a batch column."""
        c = self.c
        if c.peek() == b"[":
            return self.array_vector()
        start = c.pos
        value = c.value()
        self.slot(value, start, c.end)
        return value, _shape(value)

    def array_vector(self) -> tuple[Any, VectorInfo]:
        c = self.c
        start = c.pos
        dims = c.flat_array(self.measure)
        if dims is None:
            value = c.value()
            return value, _shape(value)
        value = orjson.loads(c.data[start:c.end]) if self.with_vectors else DENSE
        return value, _dense_info(None if dims == UNMEASURED else dims)

    def vector_columns(self) -> tuple[Any, dict[str, list[VectorInfo]]]:
        c = self.c
        if c.peek() == b"[":
            column, infos = self.column()
            return column, {"": infos}
        if c.peek() != b"{":
            return c.value(), {}
        named: dict[str, Any] = {}
        found: dict[str, list[VectorInfo]] = {}
        if c.opens(b"{", b"}"):
            while True:
                name = c.key()
                if c.peek() == b"[":
                    named[name], found[name] = self.column()
                else:
                    named[name] = c.value()
                if not c.more(b"}"):
                    break
        return named, found

    def column(self) -> tuple[list[Any], list[VectorInfo]]:
        c = self.c
        values: list[Any] = []
        infos: list[VectorInfo] = []
        if c.opens(b"[", b"]"):
            while True:
                value, info = self.element()
                values.append(value)
                infos.append(info)
                if not c.more(b"]"):
                    break
        return values, infos

    def slot(self, value: Any, start: int, end: int) -> None:
        """Register an inference object spanning ``text[start:end]`` for the proxy to serve."""
        if not _is_document(value):
            return
        edits = self.edits

        def put(vector: list[float]) -> None:
            edits.append((start, end, orjson.dumps(vector)))

        self.slots.append(Slot(value["text"], value["model"], put))


def _is_document(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("text"), str) and isinstance(value.get("model"), str)


def _point_info(point_id: Any, vectors: Mapping[str, VectorInfo], payload: dict[str, Any]) -> PointInfo:
    return PointInfo(str(point_id), dict(vectors), _meta(payload))


def _meta(payload: dict[str, Any]) -> Mapping[str, Any]:
    """The embedding metadata a client set in a payload (shared empty mapping when none)."""
    if payload.keys().isdisjoint(META_FIELDS):
        return _NO_META
    return {k: payload[k] for k in META_FIELDS if k in payload}


@functools.lru_cache(maxsize=64)
def _dense_info(dims: int | None) -> VectorInfo:
    return VectorInfo(VectorKind.DENSE, dims)


@functools.lru_cache(maxsize=64)
def _dense_vectors(info: VectorInfo) -> Mapping[str, VectorInfo]:
    """``{"": info}``, one read-only mapping per shape (not one dict per point)."""
    return MappingProxyType({"": info})


def _payload_at(data: bytes, pos: int) -> tuple[Any, int] | None:
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


def _has_float(value: Any) -> bool:
    """Whether a parsed JSON value holds a float anywhere (see :func:`_payload_at`)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        return any(map(_has_float, value.values()))
    if kind is list:
        return any(map(_has_float, value))
    return False

"""One walk over a REST write body, for :mod:`~switchyard.proxy.intercept.rest_codec`.

``Walk(cursor, measure).body(kind)`` reads an upsert (list or batch form), a
batch update or a payload overwrite from the cursor's position with
:class:`~switchyard.proxy.intercept.json_scan.Cursor`, and returns the light body: ids,
payloads, inference objects and options parsed exactly (integers of any size survive), dense
vectors as :data:`~switchyard.proxy.intercept.rest_values.DENSE` (never parsed: nothing that
reads the body needs their floats). On the way it records, in its lists: ``points`` (one
``PointInfo`` per point; dense sizes only when ``measure``), ``payload_only`` (the labels of
payload overwrites), ``opens`` (each payload object the client sent, with the index just after
its ``{``), ``sites`` (each place a payload is missing), ``slots`` (the inference objects the
proxy can serve) and ``edits`` (filled later: served vectors and stamps). ``RestMessage``
takes these lists over.

A body that does not parse, or does not have the shape of a write, raises ``ScanError`` (a
deeply nested one may raise ``RecursionError``); the walk does not check that the body ends
where it stopped: ``rest_codec.decode`` does both. The common point takes a fast path
(:meth:`Walk.fast_point`); every other shape is walked member by member.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from switchyard.proxy.intercept.inference import Slot
from switchyard.proxy.intercept.json_scan import UNMEASURED, Cursor, ScanError
from switchyard.proxy.intercept.operation import OpKind, PointInfo, VectorInfo
from switchyard.proxy.intercept.rest_values import (
    DENSE,
    Edit,
    PayloadSite,
    dense_info,
    dense_vectors,
    is_document,
    is_single,
    meta,
    payload_at,
    point_info,
    shape,
)

#: ``{"id": <integer token or escape-free string>, "vector"|"payload":`` (the fast point's head)
_POINT_HEAD = re.compile(rb'\{[ \t\n\r]*"id"[ \t\n\r]*:[ \t\n\r]*(?:(-?(?:0|[1-9][0-9]*))|"([^"\\\x00-\x1f]*)")'
                         rb'[ \t\n\r]*,[ \t\n\r]*"(?:(vector)|payload)"[ \t\n\r]*:[ \t\n\r]*')
_NEXT_KEY = re.compile(rb'[ \t\n\r]*,[ \t\n\r]*"(?:(vector)|payload)"[ \t\n\r]*:[ \t\n\r]*')
_NUMBER_BYTES = b"-0123456789"  # a one-byte slice is "in" it when it starts a number
#: ``PointInfo(id, vectors, meta)`` without the Python-level ``__new__`` of a NamedTuple
_new_point: Callable[[tuple[str, Mapping[str, VectorInfo], Mapping[str, Any]]], PointInfo] = functools.partial(
    tuple.__new__, PointInfo)
_CLOSE = re.compile(rb'[ \t\n\r]*\}[ \t\n\r]*')


class Walk:
    """One walk over a write body, collecting points, payload sites, slots (module docstring)."""

    def __init__(self, cursor: Cursor, measure: bool) -> None:
        self.c = cursor
        self.measure = measure
        self.points: list[PointInfo] = []
        self.payload_only: set[str] = set()
        self.sites: list[PayloadSite] = []
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
        c = self.c
        if c.peek() != b"[":
            return c.value()  # type: ignore[no-any-return]
        return c.items(self.operation)

    def operation(self) -> Any:
        if self.c.peek() != b"{":
            return self.c.value()
        op, _ = self.members({"upsert": self.upsert, "overwrite_payload": self.overwrite})
        return op

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
        self.points.append(point_info(label, {}, payload))
        self.payload_only.add(label)
        return body

    # -- points

    def point_list(self) -> list[dict[str, Any]]:
        if self.c.peek() != b"[":
            raise ScanError("points is a list")
        return self.c.items(self.point)

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
            self.sites.append(PayloadSite("member", close, close, [point["payload"]]))
        payload = point["payload"]
        if not isinstance(payload, dict):
            raise ScanError("a payload is an object")
        self.points.append(point_info(point["id"], infos, payload))
        return point

    def fast_point(self) -> dict[str, Any] | None:
        """The common point, ``{"id": int or plain string, "vector": [numbers], "payload":
        {...}}`` (vector and payload in either order), read with a few C calls over the bytes;
        ``None`` (nothing recorded, the cursor to be put back) for any other shape, which
        :meth:`point` walks member by member. This is the per-point cost of a bound upsert, so
        it is written flat: one regex for the id and the first key, ``bytes.find`` for the
        vector's end, orjson for the payload (``rest_values.payload_at``)."""
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
                info = dense_info(data.count(b",", pos, end) + 1 if self.measure else None)
                vector = DENSE
                pos = end + 1
            else:
                if opened >= 0 or data[pos:pos + 1] != b"{":
                    return None
                found = payload_at(data, pos)
                if found is None:
                    return None
                payload, after = found
                opened, pos = pos + 1, after
        close = _CLOSE.match(data, pos)
        if close is None or info is None:
            return None
        self.c.pos = close.end()
        self.opens.append((opened, payload))
        self.points.append(_new_point((str(point_id), dense_vectors(info), meta(payload))))
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
        self.sites.append(PayloadSite("replace", start, start + 4, [payload]))
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
            self.sites.append(PayloadSite("member", close, close, batch["payloads"], "payloads", True))
        payloads = batch["payloads"]
        if isinstance(payloads, list) and not payloads and self.sites and self.sites[-1].payloads is payloads:
            payloads.extend({} for _ in ids)  # ``"payloads": null`` becomes one object per id
        if not isinstance(payloads, list) or len(payloads) != len(ids):
            raise ScanError("a batch has one payload per id")
        infos = columns.get("infos", {})
        for i, point_id in enumerate(ids):
            found = {name: col[i] for name, col in infos.items() if i < len(col)}
            self.points.append(point_info(point_id, found, payloads[i]))
        return batch

    def payload_column(self) -> list[dict[str, Any]]:
        c = self.c
        start = c.pos
        if c.peek() != b"[":
            if c.value() is not None:
                raise ScanError("payloads is a list")
            payloads: list[dict[str, Any]] = []
            site = PayloadSite("replace", start, start + 4, payloads, column=True)
            self.sites.append(site)
            return payloads  # one per id, once the batch's ids are known (``batch``)
        return c.items(self.payload_value)

    # -- vectors

    def vector(self) -> tuple[Any, dict[str, VectorInfo]]:
        """A point's ``vector``: dense, multi-dense, sparse, inference object or named map."""
        c = self.c
        if c.peek() == b"[":
            value, info = self.array_vector()
            return value, {"": info}
        if c.peek() != b"{":
            value = c.value()
            return value, ({} if value is None else {"": shape(value)})
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
        if not is_single(named):
            return named, infos
        named = Cursor(c.data, start).value()  # small: a sparse vector or an inference object
        self.slot(named, start, end)
        return named, {"": shape(named)}

    def element(self) -> tuple[Any, VectorInfo]:
        """One vector inside a named map or a batch column."""
        c = self.c
        if c.peek() == b"[":
            return self.array_vector()
        start = c.pos
        value = c.value()
        self.slot(value, start, c.end)
        return value, shape(value)

    def array_vector(self) -> tuple[Any, VectorInfo]:
        c = self.c
        dims = c.flat_array(self.measure)
        if dims is None:
            value = c.value()
            return value, shape(value)
        value = DENSE
        return value, dense_info(None if dims == UNMEASURED else dims)

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
        pairs = self.c.items(self.element)
        return [value for value, _ in pairs], [info for _, info in pairs]

    def slot(self, value: Any, start: int, end: int) -> None:
        """Register an inference object spanning ``text[start:end]`` for the proxy to serve."""
        if not is_document(value):
            return
        edits = self.edits

        def put(vector: list[float]) -> None:
            edits.append((start, end, orjson.dumps(vector)))

        self.slots.append(Slot(value["text"], value["model"], put))

"""REST JSON codec for point writes: body bytes -> ``Operation`` + ``RestMessage`` -> body bytes.

Decoded: upsert bodies (``PUT /collections/{c}/points``, list and batch forms), batch updates
(``POST /collections/{c}/points/batch``) and payload overwrites (``PUT .../points/payload``).
The body is walked once (:class:`~switchyard.proxy.intercept.rest_walk.Walk`, with
:class:`~switchyard.proxy.intercept.json_scan.Cursor`): ids, payloads and
inference objects are parsed (exactly: integers of any size survive), dense vectors are only
measured, never turned into Python floats. Stamping and serving inference objects are
*splices* into the client's own text: the bytes forwarded are the client's, with the metadata
fields inserted at the start of each payload (or a payload added where a point had none) and
each served inference object replaced by its vector. Nothing else changes, byte for byte.

The same walk gives the mirror what it needs (``RestMessage.body``, a light copy of the body
with ids, payloads, inference objects and options; dense vectors as :data:`DENSE`; a
copy-vectors mirror re-reads what the primary stored), so one decode serves
stamping, enforcement, inference and mirroring.

A body that does not parse, or does not have the shape of a write, is reported as ``None``:
the caller forwards it untouched so the client gets Qdrant's own error for it.

This module is the public API (``decode``, ``stamp``, ``RestMessage`` and :data:`DENSE`); the
walk over the body is in ``rest_walk``, the readers of single values and the payload sites in
``rest_values``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from switchyard.proxy.intercept.inference import Slot
from switchyard.proxy.intercept.json_scan import Cursor, ScanError
from switchyard.proxy.intercept.operation import OpKind, Operation
from switchyard.proxy.intercept.rest_values import DENSE
from switchyard.proxy.intercept.rest_walk import Walk

__all__ = ["DENSE", "RestMessage", "decode", "stamp"]


class RestMessage:
    """A decoded write: the light ``body``, where its payloads are, its inference slots."""

    __slots__ = ("raw", "body", "_opens", "_sites", "_slots", "_edits")

    def __init__(self, raw: bytes, body: Any, walk: Walk) -> None:
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


def decode(kind: OpKind, collection: str, raw: bytes, *,
           measure: bool = True) -> tuple[Operation, RestMessage] | None:
    """Decode a write body; ``None`` when it is not one (forward it untouched).

    ``measure``: count dense vectors' sizes (enforce mode needs them; otherwise their
    ``VectorInfo.dims`` is ``None``).
    """
    walk = Walk(Cursor(raw), measure)
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

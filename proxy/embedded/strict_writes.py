"""Qdrant's strict-mode limits on what a write puts in a collection, for the embedded
upstream: the collection-size limits (``max_collection_vector_size_bytes``,
``max_collection_payload_size_bytes``, ``max_points_count``) and the per-vector
``multivector_config`` / ``sparse_config`` limits. Pure functions, no I/O (the engine passes
the collection's points, or its :class:`Sizes`).

Checked, as Qdrant checks them (``verification/update.rs``), on every upsert and vector update,
alone or inside ``points/batch``, after ``upsert_max_batchsize``:

- the collection-size limits, in Qdrant's order (vectors, payloads, points): each refused once
  the collection's size before the write is at the limit or past it (``Bad request: Max vector
  storage size limit of 0.00015258789MB reached!``, ``... Max payload storage size limit of
  ...MB reached!``, the limit in MiB printed as Rust prints an ``f32``; ``Max points count
  limit of 10 reached!``); like Qdrant the check looks at the size before the write, so one
  upsert may take a collection past a limit and the next is refused. A payload write
  (``set_payload``, ``overwrite_payload``, alone or in ``points/batch``) is checked against the
  payload limit only, as Qdrant's ``SetPayload`` check is;
- ``multivector_config.<name>.max_vectors``: ``Bad request: Multivector 'colbert' has a limit
  of 5 vectors, but 6 were provided!`` (an unnamed multivector is named ``''``, as in Qdrant);
- ``sparse_config.<name>.max_length``: ``Bad request: Sparse vector 'text' has a limit of 4
  indices, but 6 were provided!`` (named sparse vectors only; more values than indices
  counts too, with the number of indices in the words, as in Qdrant).

The sizes are estimated as Qdrant estimates a segment's (:func:`estimate_sizes`): vectors at
their stored width (``float32`` 4 bytes a value, ``float16`` 2, ``uint8`` 1; a multivector all
its rows; a sparse vector 8 bytes an index, a weight and a dimension id); payloads, where Qdrant
takes its payload storage's size on disk, as their compact JSON (a smaller figure: Qdrant's
storage has per-point and page overhead), so a payload limit is reached later than on Qdrant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson
from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest

#: Qdrant's name for the unnamed vector
DEFAULT_VECTOR = ""


def _bad(message: str) -> BadRequest:
    return BadRequest(f"Bad request: {message}", raw=True)


def _is_multi(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], list)


def _named(struct: Any) -> Iterator[tuple[str, Any]]:
    """(name, vector) of one point's vector struct; an unnamed multivector is ``''``."""
    if isinstance(struct, dict):
        yield from struct.items()
    elif _is_multi(struct):
        yield DEFAULT_VECTOR, struct


def _batch_vectors(batch: models.Batch) -> Iterator[tuple[str, Any]]:
    vectors = batch.vectors
    if isinstance(vectors, dict):
        for name, column in vectors.items():
            for v in column:
                yield name, v
    elif isinstance(vectors, list) and vectors and _is_multi(vectors[0]):
        for v in vectors:
            yield DEFAULT_VECTOR, v


def _inserted(points: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(points, models.PointsBatch):
        points = points.batch
    elif isinstance(points, models.PointsList):
        points = points.points
    if isinstance(points, models.Batch):
        yield from _batch_vectors(points)
    elif isinstance(points, list):
        for p in points:
            yield from _named(p.vector)


def _updated(points: list[models.PointVectors] | None) -> Iterator[tuple[str, Any]]:
    for p in points or []:
        yield from _named(p.vector)


def _writes(method: str, kw: Mapping[str, Any]) -> Iterator[Iterator[tuple[str, Any]]]:
    """One vector stream per insert or vector update the call makes."""
    if method == "upsert":
        yield _inserted(kw.get("points"))
    elif method == "update_vectors":
        yield _updated(kw.get("points"))
    elif method == "batch_update_points":
        for op in kw.get("update_operations") or []:
            if isinstance(op, models.UpsertOperation):
                yield _inserted(op.upsert)
            elif isinstance(op, models.UpdateVectorsOperation):
                yield _updated(op.update_vectors.points)


def adds_points(method: str, kw: Mapping[str, Any]) -> bool:
    """Whether ``max_points_count`` applies to the call (it inserts or updates vectors)."""
    return any(True for _ in _writes(method, kw))


def check_points_count(points_count: int, cfg: models.StrictModeConfig) -> None:
    """``max_points_count`` against the collection's count before the write."""
    limit = cfg.max_points_count
    if limit is not None and points_count >= limit:
        raise _bad(f"Max points count limit of {limit} reached!")


class Sizes(NamedTuple):
    """A collection's size before a write, as the collection-size limits compare it."""

    vector_bytes: int = 0
    payload_bytes: int = 0
    points: int = 0


#: bytes a stored value takes, by ``Datatype``; a sparse entry is an f32 weight and a u32 id
ELEMENT_BYTES = {"float32": 4, "float16": 2, "uint8": 1}
SPARSE_ENTRY_BYTES = 8

_PAYLOAD_WRITES = (models.SetPayloadOperation, models.OverwritePayloadOperation)


def size_limits(method: str, kw: Mapping[str, Any], cfg: models.StrictModeConfig) -> frozenset[str]:
    """Which collection-size limits apply to the call (``"vectors"``, ``"payload"``,
    ``"points"``): those ``cfg`` sets, of an insert or vector update (all three) or of a payload
    write (the payload limit), alone or inside ``points/batch``."""
    configured = {"vectors": cfg.max_collection_vector_size_bytes,
                  "payload": cfg.max_collection_payload_size_bytes,
                  "points": cfg.max_points_count}
    wanted: set[str] = set()
    if adds_points(method, kw):
        wanted.update(configured)
    if method in ("set_payload", "overwrite_payload") or (
            method == "batch_update_points" and any(
                isinstance(op, _PAYLOAD_WRITES) for op in kw.get("update_operations") or [])):
        wanted.add("payload")
    return frozenset(k for k in wanted if configured[k] is not None)


def _mib(limit: int) -> str:
    """``limit`` bytes in MiB as Rust's ``{}`` prints the ``f32`` Qdrant computes: the shortest
    decimal that reads back as the same ``f32``, never in exponent form."""
    return str(np.format_float_positional(np.float32(limit) / np.float32(1024 * 1024), trim="-"))


def check_sizes(limits: frozenset[str], sizes: Sizes, cfg: models.StrictModeConfig) -> None:
    """The collection-size ``limits`` (from :func:`size_limits`) against ``sizes``, in Qdrant's
    order: vector storage, payload storage, points count."""
    vectors, payload = cfg.max_collection_vector_size_bytes, cfg.max_collection_payload_size_bytes
    if "vectors" in limits and vectors is not None and sizes.vector_bytes >= vectors:
        raise _bad(f"Max vector storage size limit of {_mib(vectors)}MB reached!")
    if "payload" in limits and payload is not None and sizes.payload_bytes >= payload:
        raise _bad(f"Max payload storage size limit of {_mib(payload)}MB reached!")
    if "points" in limits:
        check_points_count(sizes.points, cfg)


def element_bytes(vectors: Any) -> dict[str, int]:
    """Bytes a value takes by vector name (``''`` unnamed), from a collection's ``vectors``
    config (one ``VectorParams`` or a dict of them); names missing here count 4 (``float32``)."""
    params = vectors if isinstance(vectors, dict) else {DEFAULT_VECTOR: vectors}
    out = {}
    for name, p in params.items():
        datatype = getattr(p, "datatype", None)
        out[name] = ELEMENT_BYTES.get(getattr(datatype, "value", datatype) or "float32", 4)
    return out


def _vector_bytes(value: Any, width: int) -> int:
    if isinstance(value, models.SparseVector):
        return len(value.indices) * SPARSE_ENTRY_BYTES
    if _is_multi(value):
        return sum(len(row) for row in value) * width
    if isinstance(value, list):
        return len(value) * width
    return 0


def estimate_sizes(records: Iterable[models.Record], widths: Mapping[str, int]) -> tuple[int, int]:
    """(vector bytes, payload bytes) of a collection's points, read with vectors and payloads;
    ``widths`` from :func:`element_bytes`. See the module docstring for how each is counted."""
    vector_bytes = payload_bytes = 0
    for r in records:
        vector = r.vector
        named = vector.items() if isinstance(vector, dict) else [(DEFAULT_VECTOR, vector)]
        for name, value in named:
            vector_bytes += _vector_bytes(value, widths.get(name, 4))
        if r.payload:
            payload_bytes += len(orjson.dumps(r.payload))
    return vector_bytes, payload_bytes


def check_vectors(method: str, kw: Mapping[str, Any], cfg: models.StrictModeConfig) -> None:
    """The multivector limits, then the sparse ones, of every write the call makes."""
    multi = {n: c.max_vectors for n, c in (cfg.multivector_config or {}).items()
             if c.max_vectors is not None}
    sparse = {n: c.max_length for n, c in (cfg.sparse_config or {}).items()
              if c.max_length is not None}
    if not multi and not sparse:
        return
    for stream in _writes(method, kw):
        vectors = list(stream)
        for name, v in vectors:
            if name in multi and _is_multi(v) and len(v) > multi[name]:
                raise _bad(f"Multivector '{name}' has a limit of {multi[name]} vectors, "
                           f"but {len(v)} were provided!")
        for name, v in vectors:
            if name and name in sparse and isinstance(v, models.SparseVector):
                limit = sparse[name]
                if len(v.indices) > limit or len(v.values) > limit:
                    raise _bad(f"Sparse vector '{name}' has a limit of {limit} indices, "
                               f"but {len(v.indices)} were provided!")

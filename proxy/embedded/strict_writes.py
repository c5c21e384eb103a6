"""Qdrant's strict-mode limits on what a write puts in a collection, for the embedded
upstream: ``max_points_count`` and the per-vector ``multivector_config`` / ``sparse_config``
limits. Pure functions, no I/O (the engine passes the collection's points count).

Checked, as Qdrant checks them (``verification/update.rs``), on every upsert and vector update,
alone or inside ``points/batch``, after ``upsert_max_batchsize``:

- ``max_points_count``: refused once the collection holds ``max_points_count`` points or more
  before the write (``Bad request: Max points count limit of 10 reached!``); like Qdrant the
  check looks at the count before the write, so one upsert may take a collection past the
  limit and the next is refused;
- ``multivector_config.<name>.max_vectors``: ``Bad request: Multivector 'colbert' has a limit
  of 5 vectors, but 6 were provided!`` (an unnamed multivector is named ``''``, as in Qdrant);
- ``sparse_config.<name>.max_length``: ``Bad request: Sparse vector 'text' has a limit of 4
  indices, but 6 were provided!`` (named sparse vectors only; more values than indices
  counts too, with the number of indices in the words, as in Qdrant).

Not enforced: ``max_collection_vector_size_bytes`` and ``max_collection_payload_size_bytes``
(Qdrant compares them to its own storage-size estimates, which an engine without Qdrant's
storage cannot reproduce).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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

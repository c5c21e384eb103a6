"""One collection's Qdrant Edge shard, served in its own process (see :mod:`edge_engine`).

Edge holds the GIL for the whole of every call, an HNSW build included (seconds to minutes),
so a shard in the server's process would freeze the event loop, and with it every other
collection, the health endpoints and, under ``switchyard up``, the proxy. Here each shard runs
in a worker process of its own and the server talks to it over a pipe: a build stops only the
collection being built.

Protocol (:func:`serve`): the server sends ``(method, kwargs)``; the worker answers
``("ok", result)`` (after a write ``("ok", result, info)``: the counts and payload schema as of
that write) or ``("error", kind, message)``. Arguments and results are qdrant-client's
REST models (picklable); :mod:`edge_convert` translates to and from Edge's objects here, so no
Edge object ever crosses the pipe. Method names and keyword names are ``QdrantLocal``'s, without
the collection name.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest, NotFound, SwitchyardError, Unsupported

_POINT_MISSING = "No point with id "
#: how Edge words Qdrant's ``OperationError::ServiceError`` (storage, WAL, I/O), which Qdrant
#: answers ``500 Service internal error``: the request was fine, the engine failed
_SERVICE_ERROR = "Service runtime error: "
#: methods that change nothing; every other answer carries the shard's info after it
READS = frozenset({"retrieve", "scroll", "count", "facet", "query_points", "query_batch", "info",
                   "storage_sizes", "optimize", "flush", "close"})


def translate_edge(exc: Exception) -> SwitchyardError:
    """Edge raises plain ``Exception`` with Qdrant's own text: map it to Qdrant's status."""
    if isinstance(exc, SwitchyardError):
        return exc
    text = str(exc)
    if text.startswith(_POINT_MISSING):
        tail = text[len(_POINT_MISSING):]
        return NotFound(f"{_POINT_MISSING}{tail}" + ("" if tail.endswith("found") else " found"))
    if text.startswith(_SERVICE_ERROR):
        return SwitchyardError(text[len(_SERVICE_ERROR):])
    return BadRequest(text.removeprefix(BadRequest.prefix))  # Qdrant words it once


class ShardWorker:
    """The methods the server may call on one shard."""

    def __init__(self, path: str, create: models.CreateCollection | None) -> None:
        import qdrant_edge as qe

        from switchyard.proxy.embedded import edge_convert

        self.qe, self.cv = qe, edge_convert
        if create is not None and not os.path.exists(os.path.join(path, "segments")):
            self.shard = qe.EdgeShard.create(path, edge_convert.edge_config(create))
        else:
            self.shard = qe.EdgeShard.load(path)

    # ------------------------------------------------------------ writes

    def _apply(self, op: Any) -> None:
        self.shard.update(op)

    def upsert(self, points: Any, update_filter: Any = None, update_mode: Any = None) -> None:
        pts = points.points if isinstance(points, models.PointsList) else (
            points.batch if isinstance(points, models.PointsBatch) else points)
        self._apply(self.qe.UpdateOperation.upsert_points(
            self.cv.points(pts), condition=self.cv.filter_(update_filter),
            update_mode=self.cv.UPDATE_MODES.get(update_mode) if update_mode else None))

    def delete(self, points_selector: Any) -> None:
        ids, flt = self.cv.selector(points_selector)
        U = self.qe.UpdateOperation
        self._apply(U.delete_points(ids) if ids is not None else U.delete_points_by_filter(flt))

    def update_vectors(self, points: Any, update_filter: Any = None) -> None:
        pv = [self.qe.PointVectors(self.cv.point_id(p.id), self.cv.vector(p.vector)) for p in points]
        self._apply(self.qe.UpdateOperation.update_vectors(pv, condition=self.cv.filter_(update_filter)))

    def delete_vectors(self, vectors: list[str], points: Any) -> None:
        ids, flt = self.cv.selector(points)
        U = self.qe.UpdateOperation
        self._apply(U.delete_vectors(ids, list(vectors)) if ids is not None
                    else U.delete_vectors_by_filter(flt, list(vectors)))

    def set_payload(self, payload: dict[str, Any], points: Any, key: str | None = None) -> None:
        ids, flt = self.cv.selector(points)
        U = self.qe.UpdateOperation
        self._apply(U.set_payload(ids, payload, key) if ids is not None
                    else U.set_payload_by_filter(flt, payload, key))

    def overwrite_payload(self, payload: dict[str, Any], points: Any) -> None:
        ids, flt = self.cv.selector(points)
        U = self.qe.UpdateOperation
        self._apply(U.overwrite_payload(ids, payload) if ids is not None
                    else U.overwrite_payload_by_filter(flt, payload))

    def delete_payload(self, keys: list[str], points: Any) -> None:
        ids, flt = self.cv.selector(points)
        U = self.qe.UpdateOperation
        self._apply(U.delete_payload(ids, list(keys)) if ids is not None
                    else U.delete_payload_by_filter(flt, list(keys)))

    def clear_payload(self, points_selector: Any) -> None:
        ids, flt = self.cv.selector(points_selector)
        U = self.qe.UpdateOperation
        self._apply(U.clear_payload(ids) if ids is not None else U.clear_payload_by_filter(flt))

    def batch_update_points(self, update_operations: list[Any]) -> None:
        """Applied in order, as Qdrant does (no rollback of earlier operations)."""
        for op in update_operations:
            self._batch_op(op)

    def _batch_op(self, op: Any) -> None:
        m = models
        if isinstance(op, m.UpsertOperation):
            u = op.upsert
            self.upsert(u, update_filter=u.update_filter, update_mode=getattr(u, "update_mode", None))
        elif isinstance(op, m.DeleteOperation):
            self.delete(op.delete)
        elif isinstance(op, m.SetPayloadOperation):
            s = op.set_payload
            self.set_payload(s.payload, _sel(s.points, s.filter), key=s.key)
        elif isinstance(op, m.OverwritePayloadOperation):
            s = op.overwrite_payload
            if s.key is not None:
                self.set_payload(s.payload, _sel(s.points, s.filter), key=s.key)
            else:
                self.overwrite_payload(s.payload, _sel(s.points, s.filter))
        elif isinstance(op, m.DeletePayloadOperation):
            d = op.delete_payload
            self.delete_payload(d.keys, _sel(d.points, d.filter))
        elif isinstance(op, m.ClearPayloadOperation):
            self.clear_payload(op.clear_payload)
        elif isinstance(op, m.UpdateVectorsOperation):
            self.update_vectors(op.update_vectors.points, op.update_vectors.update_filter)
        elif isinstance(op, m.DeleteVectorsOperation):
            dv = op.delete_vectors
            self.delete_vectors(dv.vector, _sel(dv.points, dv.filter))
        else:
            raise Unsupported(f"batch operation {type(op).__name__} is not supported by the Edge engine")

    def create_payload_index(self, field_name: str, field_schema: Any = None,
                             field_type: Any = None) -> None:
        schema = field_schema if field_schema is not None else field_type
        if schema is None:
            raise BadRequest("field_schema: an index needs a field type or index params")
        self._apply(self.qe.UpdateOperation.create_field_index(field_name, self.cv.index_schema(schema)))

    def delete_payload_index(self, field_name: str) -> None:
        self._apply(self.qe.UpdateOperation.delete_field_index(field_name))

    def create_vector_name(self, vector_name: str, vector_name_config: Any) -> None:
        U = self.qe.UpdateOperation
        if isinstance(vector_name_config, models.DenseVectorNameConfig):
            d = vector_name_config.dense
            multi = (self.qe.MultiVectorConfig(self.qe.MultiVectorComparator.MaxSim)
                     if d.multivector_config is not None else None)
            datatype = self.cv.DATATYPES.get(models.Datatype(d.datatype)) if d.datatype else None
            self._apply(U.create_dense_vector(vector_name, d.size, self.cv.DISTANCES[d.distance],
                                              multivector_config=multi, datatype=datatype))
        else:
            s = vector_name_config.sparse
            modifier = self.qe.Modifier.Idf if s.modifier == models.Modifier.IDF else None
            self._apply(U.create_sparse_vector(vector_name, modifier=modifier))

    def delete_vector_name(self, vector_name: str) -> None:
        self._apply(self.qe.UpdateOperation.delete_vector_name(vector_name))

    # ------------------------------------------------------------ reads

    def retrieve(self, ids: list[Any], with_payload: Any = True, with_vectors: Any = False) -> Any:
        found = self.shard.retrieve([self.cv.point_id(i) for i in ids],
                                    self.cv.with_payload(with_payload), with_vectors)
        return [self.cv.record(r) for r in found]

    def scroll(self, scroll_filter: Any = None, limit: int = 10, order_by: Any = None,
               offset: Any = None, with_payload: Any = True, with_vectors: Any = False) -> Any:
        records, nxt = self.shard.scroll(self.qe.ScrollRequest(
            offset=self.cv.point_id(offset) if offset is not None else None, limit=limit,
            filter=self.cv.filter_(scroll_filter), with_payload=self.cv.with_payload(with_payload),
            with_vector=with_vectors, order_by=self.cv.order_by(order_by)))
        return [self.cv.record(r) for r in records], (self.cv.out_id(nxt) if nxt is not None else None)

    def count(self, count_filter: Any = None, exact: bool = True) -> models.CountResult:
        n = self.shard.count(self.qe.CountRequest(exact=bool(exact), filter=self.cv.filter_(count_filter)))
        return models.CountResult(count=n)

    def facet(self, key: str, facet_filter: Any = None, limit: int = 10,
              exact: bool = False) -> models.FacetResponse:
        got = self.shard.facet(self.qe.FacetRequest(key, limit=limit, exact=bool(exact),
                                                    filter=self.cv.filter_(facet_filter)))
        return models.FacetResponse(hits=[models.FacetValueHit(value=h.value, count=h.count) for h in got.hits])

    def query_points(self, **kw: Any) -> models.QueryResponse:
        found = self.shard.query(self.cv.query_request(kw))
        return models.QueryResponse(points=[self.cv.scored(p) for p in found])

    def query_batch(self, batch: list[dict[str, Any]]) -> list[models.QueryResponse]:
        return [self.query_points(**kw) for kw in batch]

    def info(self) -> dict[str, Any]:
        i = self.shard.info()
        schema = {}
        for name, idx in i.payload_schema.items():
            schema[name] = {"data_type": self.cv.SCHEMA_NAMES[idx.data_type].value, "points": idx.points}
        return {"points_count": i.points_count, "segments_count": i.segments_count,
                "indexed_vectors_count": i.indexed_vectors_count, "payload_schema": schema}

    def storage_sizes(self, widths: dict[str, int]) -> tuple[int, int]:
        """(vector bytes, payload bytes) for strict mode's size limits, read here so the points
        do not cross the pipe (:func:`strict_writes.estimate_sizes`)."""
        from switchyard.proxy.embedded import strict_writes

        def pages() -> Any:
            offset = None
            while True:
                records, offset = self.scroll(limit=512, offset=offset, with_payload=True,
                                              with_vectors=True)
                yield from records
                if offset is None:
                    return

        return strict_writes.estimate_sizes(pages(), widths)

    def optimize(self) -> bool:
        return bool(self.shard.optimize())

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        self.shard.flush()
        self.shard.close()


def _sel(points: Any, flt: Any) -> Any:
    if points is not None:
        return models.PointIdsList(points=points)
    if flt is not None:
        return models.FilterSelector(filter=flt)
    raise BadRequest("Either `points` or `filter` is required")


def serve(conn: Any) -> None:
    """The worker's main loop: wait for ``("open", {"path", "create"})`` (a worker may be started
    ahead, as a spare), then answer requests until ``close`` or the pipe ends."""
    try:
        method, kwargs = conn.recv()
    except (EOFError, OSError):
        return
    try:
        if method != "open":
            raise BadRequest(f"a shard worker must be opened first, got {method}")
        worker = ShardWorker(kwargs["path"], kwargs["create"])
    except Exception as exc:  # noqa: BLE001 - reported to the server, which refuses the create
        err = translate_edge(exc)
        conn.send(("error", type(err).__name__, err.message))
        return
    conn.send(("ok", None))
    while True:
        try:
            method, kwargs = conn.recv()
        except (EOFError, OSError):
            worker.close()
            return
        try:
            result = getattr(worker, method)(**kwargs)
            reply: tuple[Any, ...] = ("ok", result) if method in READS else ("ok", result, worker.info())
        except Exception as exc:  # noqa: BLE001 - every failure answers the caller
            err = translate_edge(exc)
            if not isinstance(exc, (SwitchyardError,)) and type(exc) is not Exception:
                traceback.print_exc()  # a conversion bug, not an engine refusal
            reply = ("error", type(err).__name__, err.message)
        conn.send(reply)
        if method == "close":
            return

"""Pure translation between qdrant-client's REST models and Qdrant Edge's Python objects.

Imported only where ``qdrant_edge`` is (the Edge worker process). Requests go one way
(``models.*`` → ``qdrant_edge.*``), results the other (Edge records and scored points →
``models.Record`` / ``models.ScoredPoint``). Anything Edge's API cannot express raises
:class:`switchyard.proxy.errors.Unsupported` with the feature named, never a silent approximation.

This module is the per-request data path: filters, points and writes, reads, queries. A
collection's config (vectors, HNSW, quantization, optimizers, payload index schemas) is
:mod:`edge_collection_config`'s; the names of it the worker reaches through this module
(``edge_config``, ``index_schema``, ``DISTANCES``, ``DATATYPES``, ``SCHEMA_NAMES``) are
re-exported here, so the worker keeps one translation module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import qdrant_edge as qe
from qdrant_client.http import models

from switchyard.proxy.embedded.edge_collection_config import DATATYPES as DATATYPES
from switchyard.proxy.embedded.edge_collection_config import DISTANCES as DISTANCES
from switchyard.proxy.embedded.edge_collection_config import SCHEMA_NAMES as SCHEMA_NAMES
from switchyard.proxy.embedded.edge_collection_config import edge_config as edge_config
from switchyard.proxy.embedded.edge_collection_config import index_schema as index_schema
from switchyard.proxy.errors import BadRequest, Unsupported


# ---------------------------------------------------------------- filters


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def filter_(f: models.Filter | None) -> Any:
    if f is None:
        return None
    min_should = None
    if f.min_should is not None:
        min_should = qe.MinShould([condition(c) for c in f.min_should.conditions],
                                  f.min_should.min_count)
    return qe.Filter(
        must=[condition(c) for c in _many(f.must)] or None,
        should=[condition(c) for c in _many(f.should)] or None,
        must_not=[condition(c) for c in _many(f.must_not)] or None,
        min_should=min_should,
    )


def _match(m: Any) -> Any:
    if isinstance(m, models.MatchValue):
        if isinstance(m.value, bool):  # Edge's binding reads a Python bool as the integer 0/1
            flag: Any = np.bool_(m.value)
            return qe.MatchValue(flag)
        return qe.MatchValue(m.value)
    if isinstance(m, models.MatchText):
        return qe.MatchText(m.text)
    if isinstance(m, models.MatchTextAny):
        return qe.MatchTextAny(m.text_any)
    if isinstance(m, models.MatchPhrase):
        return qe.MatchPhrase(m.phrase)
    if isinstance(m, models.MatchAny):
        values: Any = list(m.any)
        return qe.MatchAny(values)
    if isinstance(m, models.MatchExcept):
        return qe.MatchExcept(list(getattr(m, "except_")))
    raise Unsupported(f"match {type(m).__name__} is not supported by the Edge engine")


def _range(r: Any) -> Any:
    if isinstance(r, models.DatetimeRange):
        def iso(v: Any) -> str | None:
            return v.isoformat() if hasattr(v, "isoformat") else v
        return qe.RangeDateTime(gte=iso(r.gte), gt=iso(r.gt), lte=iso(r.lte), lt=iso(r.lt))
    return qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def _geo(p: models.GeoPoint) -> Any:
    return qe.GeoPoint(lon=p.lon, lat=p.lat)


def _field(c: models.FieldCondition) -> Any:
    box = radius = polygon = count = None
    if c.geo_bounding_box is not None:
        box = qe.GeoBoundingBox(_geo(c.geo_bounding_box.top_left), _geo(c.geo_bounding_box.bottom_right))
    if c.geo_radius is not None:
        radius = qe.GeoRadius(_geo(c.geo_radius.center), c.geo_radius.radius)
    if c.geo_polygon is not None:
        polygon = qe.GeoPolygon(
            [_geo(p) for p in c.geo_polygon.exterior.points],
            [[_geo(p) for p in ring.points] for ring in c.geo_polygon.interiors or []] or None,
        )
    if c.values_count is not None:
        v = c.values_count
        count = qe.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
    return qe.FieldCondition(
        c.key,
        match=_match(c.match) if c.match is not None else None,
        range=_range(c.range) if c.range is not None else None,
        geo_bounding_box=box, geo_radius=radius, geo_polygon=polygon, values_count=count,
        is_empty=c.is_empty, is_null=c.is_null,
    )


def condition(c: Any) -> Any:
    if isinstance(c, models.FieldCondition):
        return _field(c)
    if isinstance(c, models.Filter):
        return filter_(c)
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition(set(point_id(i) for i in c.has_id))
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, filter_(c.nested.filter))
    raise Unsupported(f"condition {type(c).__name__} is not supported by the Edge engine")


def point_id(pid: Any) -> Any:
    return str(pid) if not isinstance(pid, int) else pid


# ---------------------------------------------------------------- points and writes


def vector(v: Any) -> Any:
    """A REST vector (dense, multi, sparse, or a dict of named ones) as Edge takes it."""
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    if isinstance(v, dict):
        return {name: vector(x) for name, x in v.items()}
    return v


def points(value: Any) -> list[Any]:
    """``list[PointStruct]`` or a ``Batch`` as Edge points."""
    if isinstance(value, models.Batch):
        return [qe.Point(point_id(p.id), vector(p.vector), p.payload) for p in batch_points(value)]
    return [qe.Point(point_id(p.id), vector(p.vector), p.payload) for p in value]


def batch_points(b: models.Batch) -> list[models.PointStruct]:
    n = len(b.ids)
    if isinstance(b.vectors, dict):
        vecs: list[Any] = [{name: col[i] for name, col in b.vectors.items()} for i in range(n)]
    else:
        vecs = list(b.vectors)
    payloads: list[Any] = list(b.payloads) if b.payloads else [None] * n
    if len(vecs) != n or len(payloads) != n:
        raise BadRequest("Validation error in JSON body: batch ids, vectors and payloads differ in length")
    return [models.PointStruct(id=b.ids[i], vector=vecs[i], payload=payloads[i]) for i in range(n)]


UPDATE_MODES = {
    models.UpdateMode.UPSERT: qe.UpdateMode.Upsert,
    models.UpdateMode.INSERT_ONLY: qe.UpdateMode.InsertOnly,
    models.UpdateMode.UPDATE_ONLY: qe.UpdateMode.UpdateOnly,
}


def selector(sel: Any) -> tuple[list[Any] | None, Any]:
    """(ids, filter) of a points selector, a list of ids, or a bare filter."""
    if isinstance(sel, models.PointIdsList):
        return [point_id(i) for i in sel.points], None
    if isinstance(sel, models.FilterSelector):
        return None, filter_(sel.filter)
    if isinstance(sel, models.Filter):
        return None, filter_(sel)
    if isinstance(sel, list):
        return [point_id(i) for i in sel], None
    raise BadRequest("Either `points` or `filter` is required")


# ---------------------------------------------------------------- reads


def with_payload(value: Any) -> Any:
    if isinstance(value, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    return value


def search_params(p: models.SearchParams | None) -> Any:
    if p is None:
        return None
    quant = None
    if p.quantization is not None:
        q = p.quantization
        quant = qe.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling)
    acorn = None
    if p.acorn is not None:
        acorn = qe.AcornSearchParams(enable=bool(p.acorn.enable), max_selectivity=p.acorn.max_selectivity)
    return qe.SearchParams(hnsw_ef=p.hnsw_ef, exact=bool(p.exact), quantization=quant,
                           indexed_only=bool(p.indexed_only), acorn=acorn)


def f32(values: Any) -> Any:
    """Float32 values (Edge hands them out widened to Python floats) as the doubles nearest to
    their shortest float32 decimal form: what Qdrant's REST prints (``0.1``, not
    ``0.10000000149011612``), and still the same float32 for gRPC. A flat list or a list of
    lists (multi-vectors); orjson formats numpy float32 arrays in the shortest form."""
    if not values:
        return values
    return orjson.loads(orjson.dumps(np.asarray(values, dtype=np.float32),
                                     option=orjson.OPT_SERIALIZE_NUMPY))


def out_vector(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, dict):
        return {name: out_vector(x) for name, x in v.items()}
    if isinstance(v, qe.SparseVector):
        return models.SparseVector(indices=list(v.indices), values=f32(list(v.values)))
    if isinstance(v, list) and v and isinstance(v[0], list) and len({len(x) for x in v}) > 1:
        return [f32(x) for x in v]  # ragged: not one array
    return f32(v)


def out_score(score: float) -> float:
    """A score as Qdrant's REST prints it (a float32, in its shortest form)."""
    return float(orjson.loads(orjson.dumps(np.float32(score), option=orjson.OPT_SERIALIZE_NUMPY)))


def out_id(pid: Any) -> Any:
    return pid if isinstance(pid, int) else str(pid)


def record(r: Any) -> models.Record:
    return models.Record(id=out_id(r.id), payload=r.payload, vector=out_vector(r.vector),
                         order_value=r.order_value)


def scored(p: Any) -> models.ScoredPoint:
    return models.ScoredPoint(id=out_id(p.id), version=p.version, score=out_score(p.score), payload=p.payload,
                              vector=out_vector(p.vector), order_value=p.order_value)


# ---------------------------------------------------------------- queries

#: Qdrant's RRF constant when a fusion query names none
RRF_K = 2


def _avg(vectors: list[list[float]]) -> list[float]:
    return [sum(col) / len(vectors) for col in zip(*vectors)]


def average_vector(positive: list[Any], negative: list[Any]) -> Any:
    """Qdrant's ``average_vector`` recommendation: ``avg(pos) + avg(pos) - avg(neg)`` (dense)."""
    if any(not isinstance(v, list) or (v and isinstance(v[0], list)) for v in positive + negative):
        raise Unsupported("average_vector recommendation needs dense vectors on the Edge engine")
    if not positive:
        raise BadRequest("Recommend API requires at least one positive example with average_vector")
    pos = _avg(positive)
    if not negative:
        return pos
    neg = _avg(negative)
    return [p + p - n for p, n in zip(pos, neg)]


def query(q: Any, using: str | None) -> Any:
    """A REST query (ids already resolved to vectors by the server) as Edge's scoring query."""
    if q is None:
        return None
    if isinstance(q, (list, models.SparseVector)):
        return qe.Query.Nearest(vector(q), using=using)
    if isinstance(q, models.NearestQuery):
        if q.mmr is not None:
            return qe.Mmr(vector(q.nearest), 1.0 - (q.mmr.diversity if q.mmr.diversity is not None else 0.5),
                          q.mmr.candidates_limit or 100, using=using)
        return qe.Query.Nearest(vector(q.nearest), using=using)
    if isinstance(q, models.RecommendQuery):
        r = q.recommend
        pos, neg = [vector(v) for v in r.positive or []], [vector(v) for v in r.negative or []]
        strategy = r.strategy or models.RecommendStrategy.AVERAGE_VECTOR
        if strategy == models.RecommendStrategy.AVERAGE_VECTOR:
            return qe.Query.Nearest(average_vector(pos, neg), using=using)
        make = (qe.Query.RecommendBestScore if strategy == models.RecommendStrategy.BEST_SCORE
                else qe.Query.RecommendSumScores)
        return make(qe.RecommendQuery(pos, neg), using=using)
    if isinstance(q, models.DiscoverQuery):
        pairs = _pairs(q.discover.context)
        return qe.Query.Discover(qe.DiscoverQuery(vector(q.discover.target), pairs), using=using)
    if isinstance(q, models.ContextQuery):
        return qe.Query.Context(qe.ContextQuery(_pairs(q.context)), using=using)
    if isinstance(q, models.OrderByQuery):
        o = q.order_by if isinstance(q.order_by, models.OrderBy) else models.OrderBy(key=q.order_by)
        return order_by(o)
    if isinstance(q, models.FusionQuery):
        return qe.Fusion.Rrf(k=RRF_K) if q.fusion == models.Fusion.RRF else qe.Fusion.Dbsf()
    if isinstance(q, models.RrfQuery):
        return qe.Fusion.Rrf(k=q.rrf.k if q.rrf.k is not None else RRF_K, weights=q.rrf.weights)
    if isinstance(q, models.SampleQuery):
        return qe.Sample.Random
    raise Unsupported(f"query {type(q).__name__} is not supported by the Edge engine")


def _pairs(context: Any) -> list[Any]:
    pairs = context if isinstance(context, list) else [context]
    return [qe.ContextPair(vector(p.positive), vector(p.negative)) for p in pairs]


def order_by(o: models.OrderBy | str | None) -> Any:
    if o is None:
        return None
    if isinstance(o, str):
        o = models.OrderBy(key=o)
    direction = None
    if o.direction is not None:
        direction = qe.Direction.Asc if o.direction == models.Direction.ASC else qe.Direction.Desc
    start: Any = o.start_from
    if start is not None and hasattr(start, "isoformat"):
        start = start.isoformat()
    return qe.OrderBy(o.key, direction=direction, start_from=start)


def prefetch(p: models.Prefetch) -> Any:
    return qe.Prefetch(
        limit=p.limit if p.limit is not None else 10,
        query=query(p.query, p.using),
        prefetches=[prefetch(x) for x in _many(p.prefetch)] or None,
        params=search_params(p.params),
        filter=filter_(p.filter),
        score_threshold=p.score_threshold,
    )


def query_request(kw: dict[str, Any]) -> Any:
    """``QdrantLocal.query_points`` keyword arguments as an Edge ``QueryRequest``."""
    return qe.QueryRequest(
        limit=kw.get("limit") or 10,
        offset=kw.get("offset"),
        query=query(kw.get("query"), kw.get("using")),
        prefetches=[prefetch(p) for p in _many(kw.get("prefetch"))] or None,
        with_vector=kw.get("with_vectors", False),
        with_payload=with_payload(kw.get("with_payload", False)),
        filter=filter_(kw.get("query_filter")),
        score_threshold=kw.get("score_threshold"),
        params=search_params(kw.get("search_params")),
    )

"""What the server does on top of Edge's query: point ids as queries, ``lookup_from``, groups.

Pure functions over qdrant-client's REST models; the engine supplies the I/O.

- **Ids as queries** (nearest, recommend, discover, context examples, in prefetches too): Qdrant
  looks up each id's vector (in ``lookup_from``'s collection and vector if given, else the
  queried one) and searches with it; examples taken from the queried collection are excluded
  from the results. :func:`example_ids` collects the ids, :func:`substitute` swaps in vectors.
- **Groups**: Qdrant over-fetches and groups hits by the payload value at ``group_by`` (string
  or integer values; an array puts the point in each of its values' groups), keeping the
  ``limit`` best groups of at most ``group_size`` hits. :func:`group_hits` is that grouping.
"""

from __future__ import annotations

import uuid
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.errors import NotFound

_ID_TYPES = (int, str, uuid.UUID)


def _is_id(value: Any) -> bool:
    return isinstance(value, _ID_TYPES) and not isinstance(value, bool)


def norm_id(value: Any) -> Any:
    """A point id as results carry it (UUIDs as their canonical string)."""
    return str(value) if isinstance(value, uuid.UUID) else value


def _query_examples(q: Any) -> list[Any]:
    """The examples of a query that may be ids."""
    if _is_id(q):
        return [q]
    if isinstance(q, models.NearestQuery):
        return [q.nearest]
    if isinstance(q, models.RecommendQuery):
        return [*(q.recommend.positive or []), *(q.recommend.negative or [])]
    if isinstance(q, models.DiscoverQuery):
        ctx = q.discover.context if isinstance(q.discover.context, list) else [q.discover.context]
        return [q.discover.target, *[x for p in ctx for x in (p.positive, p.negative)]]
    if isinstance(q, models.ContextQuery):
        ctx = q.context if isinstance(q.context, list) else [q.context]
        return [x for p in ctx for x in (p.positive, p.negative)]
    return []


def _prefetches(value: Any) -> list[models.Prefetch]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def example_ids(query: Any, prefetch: Any) -> list[Any]:
    """Every point id used as a query or example, top level and in prefetches, in order."""
    ids = [norm_id(x) for x in _query_examples(query) if _is_id(x)]
    for p in _prefetches(prefetch):
        ids.extend(example_ids(p.query, p.prefetch))
    return list(dict.fromkeys(ids))


def _swap(value: Any, vectors: dict[Any, Any]) -> Any:
    if _is_id(value):
        key = norm_id(value)
        if key not in vectors:
            raise NotFound(f"No point with id {key} found")
        return vectors[key]
    return value


def substitute(q: Any, vectors: dict[Any, Any]) -> Any:
    """``q`` with every id example replaced by its vector (:class:`NotFound` if one is missing)."""
    if _is_id(q):
        return _swap(q, vectors)
    if isinstance(q, models.NearestQuery):
        return q.model_copy(update={"nearest": _swap(q.nearest, vectors)})
    if isinstance(q, models.RecommendQuery):
        r = q.recommend
        return q.model_copy(update={"recommend": r.model_copy(update={
            "positive": [_swap(x, vectors) for x in r.positive or []],
            "negative": [_swap(x, vectors) for x in r.negative or []]})})
    if isinstance(q, models.DiscoverQuery):
        d = q.discover
        return q.model_copy(update={"discover": d.model_copy(update={
            "target": _swap(d.target, vectors), "context": _pairs(d.context, vectors)})})
    if isinstance(q, models.ContextQuery):
        return q.model_copy(update={"context": _pairs(q.context, vectors)})
    return q


def _pairs(context: Any, vectors: dict[Any, Any]) -> list[models.ContextPair]:
    pairs = context if isinstance(context, list) else [context]
    return [models.ContextPair(positive=_swap(p.positive, vectors), negative=_swap(p.negative, vectors))
            for p in pairs]


def substitute_prefetch(prefetch: Any, vectors: dict[Any, Any]) -> Any:
    if prefetch is None:
        return None
    many = [
        p.model_copy(update={"query": substitute(p.query, vectors),
                             "prefetch": substitute_prefetch(p.prefetch, vectors)})
        for p in _prefetches(prefetch)
    ]
    return many if isinstance(prefetch, list) else many[0]


def vector_of(record: models.Record, using: str | None) -> Any:
    """The vector ``using`` of a retrieved record (the unnamed one for ``None`` / ``""``)."""
    v = record.vector
    if isinstance(v, dict):
        name = using or ""
        if name not in v:
            raise NotFound(f"Vector `{name}` of point {record.id} not found")
        return v[name]
    return v


def exclude_ids(flt: models.Filter | None, ids: list[Any]) -> models.Filter:
    """``flt`` and not any of ``ids`` (Qdrant leaves query examples out of the results)."""
    cond = models.HasIdCondition(has_id=ids)
    if flt is None:
        return models.Filter(must_not=[cond])
    must_not = flt.must_not if isinstance(flt.must_not, list) else ([flt.must_not] if flt.must_not else [])
    return flt.model_copy(update={"must_not": [*must_not, cond]})


def group_values(payload: dict[str, Any] | None, key: str) -> list[Any]:
    """The group ids a point belongs to: string or integer values at ``key`` (dotted path)."""
    value: Any = payload or {}
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, (str, int)) and not isinstance(v, bool)]


def group_hits(
    hits: list[models.ScoredPoint], key: str, limit: int, group_size: int
) -> list[tuple[Any, list[models.ScoredPoint]]]:
    """The first ``limit`` groups, in order of their best hit, each its first ``group_size`` hits."""
    groups: dict[Any, list[models.ScoredPoint]] = {}
    for hit in hits:
        for value in group_values(hit.payload, key):
            members = groups.get(value)
            if members is None:
                if len(groups) >= limit:
                    continue
                members = groups[value] = []
            if len(members) < group_size:
                members.append(hit)
    return list(groups.items())


def groups_complete(groups: list[tuple[Any, list[Any]]], limit: int, group_size: int) -> bool:
    return len(groups) >= limit and all(len(m) >= group_size for _, m in groups)


def matrix_requests(ids: list[Any], vectors: list[Any], using: str | None, limit: int,
                    flt: models.Filter | None) -> list[dict[str, Any]]:
    """One search per sampled point among the other sampled points (Qdrant's distance matrix)."""
    out = []
    for pid, vec in zip(ids, vectors):
        others = [i for i in ids if i != pid]
        cond = models.HasIdCondition(has_id=others)
        must: list[Any] = [cond] if flt is None else [cond, flt]
        out.append({"query": vec, "using": using, "limit": limit,
                    "query_filter": models.Filter(must=must)})
    return out


def matrix_pairs(ids: list[Any], results: list[models.QueryResponse]) -> models.SearchMatrixPairsResponse:
    return models.SearchMatrixPairsResponse(pairs=[
        models.SearchMatrixPair(a=a, b=hit.id, score=hit.score)
        for a, result in zip(ids, results) for hit in result.points])


def matrix_offsets(ids: list[Any], results: list[models.QueryResponse]) -> models.SearchMatrixOffsetsResponse:
    index = {pid: n for n, pid in enumerate(ids)}
    rows, cols, scores = [], [], []
    for row, result in enumerate(results):
        for hit in result.points:
            rows.append(row)
            cols.append(index[hit.id])
            scores.append(hit.score)
    return models.SearchMatrixOffsetsResponse(offsets_row=rows, offsets_col=cols, scores=scores, ids=ids)

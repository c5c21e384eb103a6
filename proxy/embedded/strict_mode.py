"""Qdrant's strict mode for the embedded upstream: a collection's ``strict_mode_config`` checked
against each call before an engine runs it (both engines, through :mod:`strict_enforce`). Pure
functions, no I/O.

Qdrant checks a request against the collection's strict mode only when ``enabled`` is true, and
refuses with 400 ``Bad request: <what>. Help: <how>`` (gRPC ``INVALID_ARGUMENT``), in Qdrant's
own words. Enforced here, per seam call (``QdrantLocal``'s method and keyword names):

- ``max_query_limit``: ``limit`` of query (and of each prefetch, nested), groups, scroll, facet
  (``Limit exceeded 11 > 10 for "limit"``);
- ``search_allow_exact: false``: ``params.exact`` of a query, ``exact`` of count and facet
  (``Exact search disabled!``; count's ``exact`` defaults to true, as in Qdrant);
- ``search_max_hnsw_ef`` and ``search_max_oversampling``: the search params of a query;
- ``upsert_max_batchsize``: points per upsert (``"upsert limit"``) and per vector update
  (``"update limit"``), alone or in ``points/batch``;
- ``unindexed_filtering_retrieve: false`` / ``unindexed_filtering_update: false``: every field
  a read filter (query, prefetch, groups, scroll, count, facet, matrix) or a write filter
  (delete, payload and vector operations by filter) names must have a payload index of a
  fitting type (``Index required but not found for "city" of one of the following types:
  [keyword, uuid]``);
- ``max_timeout``: the request's ``timeout`` (REST query parameter, gRPC ``timeout`` field),
  passed by the front ends on reads (query, batch, groups, the legacy search / recommend /
  discover, scroll, count, facet, retrieve, matrices) and checked after the request's other
  checks, as Qdrant's ``check_strict_mode`` does (``Limit exceeded 6 > 5 for "timeout"``);
- ``filter_max_conditions`` / ``condition_max_size``: every read and write filter above,
  counted as Qdrant counts (:func:`total_conditions`, :func:`max_condition_size`), checked
  before its index check (``Filter condition limit reached (3 > 2)``, ``Condition size limit
  reached (4 > 3)``);
- ``max_points_count`` and the multivector / sparse limits of writes: :mod:`strict_writes`;
- ``read_rate_limit`` / ``write_rate_limit``: :mod:`rate_limits` (429, gRPC
  ``RESOURCE_EXHAUSTED``, with when to retry), charged after every other check.

Writes are not checked against ``max_timeout``: Qdrant's update handlers pass no timeout to
its check either. Not enforced: the storage-size limits (``max_collection_vector_size_bytes``,
``max_collection_payload_size_bytes``: Qdrant compares them to its own storage estimates), and
Qdrant's newer refusal of substring matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest

#: read methods and the keyword holding their filter
READ_FILTERS = {
    "query_points": "query_filter", "query_points_groups": "query_filter",
    "scroll": "scroll_filter", "count": "count_filter", "facet": "facet_filter",
    "search_matrix_pairs": "query_filter", "search_matrix_offsets": "query_filter",
}
#: write methods and the keyword holding their point selector
WRITE_SELECTORS = {
    "delete": "points_selector", "set_payload": "points", "overwrite_payload": "points",
    "delete_payload": "points", "clear_payload": "points_selector", "delete_vectors": "points",
}
LIMITED = frozenset({"query_points", "query_points_groups", "scroll", "facet"})


def active(config: models.StrictModeConfig | None) -> bool:
    """Whether a collection's strict mode is on (Qdrant ignores a config with enabled unset)."""
    return config is not None and bool(config.enabled)


def refuse(what: str, help_: str) -> BadRequest:
    """Qdrant's strict-mode refusal: ``StorageError::BadRequest`` of ``<what>. Help: <help>``."""
    return BadRequest(f"Bad request: {what}. Help: {help_}", raw=True)


def _limit(value: Any, limit: Any, name: str) -> None:
    if value is not None and limit is not None and value > limit:
        raise refuse(f'Limit exceeded {value} > {limit} for "{name}"',
                     f'Reduce the "{name}" parameter to or below {limit}.')


def _exact(value: Any, cfg: models.StrictModeConfig, parameter: str = "exact") -> None:
    if cfg.search_allow_exact is False and value:
        raise refuse("Exact search disabled!", f"Set {parameter}=false.")


def _search_params(params: models.SearchParams | None, cfg: models.StrictModeConfig) -> None:
    if params is None:
        return
    quantization = params.quantization
    _limit(quantization.oversampling if quantization else None, cfg.search_max_oversampling,
           "oversampling")
    _limit(params.hnsw_ef, cfg.search_max_hnsw_ef, "hnsw_ef")
    _exact(params.exact, cfg)


def _prefetches(value: Any) -> Iterator[models.Prefetch]:
    for p in value if isinstance(value, list) else [value] if value is not None else []:
        yield p
        yield from _prefetches(p.prefetch)


def _count_points(points: Any) -> int:
    if isinstance(points, models.Batch):
        return len(points.ids)
    if isinstance(points, models.PointsBatch):
        return len(points.batch.ids)
    if isinstance(points, models.PointsList):
        return len(points.points)
    return len(points) if isinstance(points, list) else 0


def selector_filter(selector: Any) -> models.Filter | None:
    """The filter a point selector selects by (``None`` for ids)."""
    if isinstance(selector, models.Filter):
        return selector
    if isinstance(selector, models.FilterSelector):
        return selector.filter
    return None


def check_timeout(timeout: int | None, cfg: models.StrictModeConfig) -> None:
    """``max_timeout``: the request's ``timeout`` (seconds), checked after the request itself."""
    _limit(timeout, cfg.max_timeout, "timeout")


def check_request(method: str, kw: Mapping[str, Any], cfg: models.StrictModeConfig) -> None:
    """The batch-size limits, ``max_query_limit`` (the query's and each prefetch's), then the
    filter-size limits: Qdrant's order up to a filter's index check."""
    if method == "upsert":
        _limit(_count_points(kw.get("points")), cfg.upsert_max_batchsize, "upsert limit")
    if method == "update_vectors":
        _limit(len(kw.get("points") or []), cfg.upsert_max_batchsize, "update limit")
    if method == "batch_update_points":
        for op in kw.get("update_operations") or []:
            if isinstance(op, models.UpsertOperation):
                _limit(_count_points(op.upsert), cfg.upsert_max_batchsize, "upsert limit")
            elif isinstance(op, models.UpdateVectorsOperation):
                _limit(len(op.update_vectors.points), cfg.upsert_max_batchsize, "update limit")
    if method in LIMITED:
        _limit(kw.get("limit"), cfg.max_query_limit, "limit")
    if method in ("query_points", "query_points_groups"):
        for p in _prefetches(kw.get("prefetch")):
            _limit(p.limit, cfg.max_query_limit, "limit")
    if cfg.filter_max_conditions is not None or cfg.condition_max_size is not None:
        for f in [*read_filters(method, kw), *write_filters(method, kw)]:
            check_filter_limits(f, cfg)


def check_search(method: str, kw: Mapping[str, Any], cfg: models.StrictModeConfig) -> None:
    """``search_allow_exact`` and the search params, which Qdrant checks after the filters."""
    if method in ("query_points", "query_points_groups"):
        _search_params(kw.get("search_params"), cfg)
        for p in _prefetches(kw.get("prefetch")):
            _search_params(p.params, cfg)
    if method == "count":
        _exact(kw.get("exact", True), cfg)
    if method == "facet":
        _exact(kw.get("exact", False), cfg)


def check_limits(method: str, kw: Mapping[str, Any], cfg: models.StrictModeConfig) -> None:
    """Everything but the index checks (those need the collection's payload schema), in
    Qdrant's order; the engine runs the index checks between the two halves."""
    check_request(method, kw, cfg)
    check_search(method, kw, cfg)


def _batch_write_filters(op: Any) -> Iterator[models.Filter | None]:
    if isinstance(op, models.DeleteOperation):
        yield selector_filter(op.delete)
    elif isinstance(op, models.SetPayloadOperation):
        yield op.set_payload.filter
    elif isinstance(op, models.OverwritePayloadOperation):
        yield op.overwrite_payload.filter
    elif isinstance(op, models.DeletePayloadOperation):
        yield op.delete_payload.filter
    elif isinstance(op, models.ClearPayloadOperation):
        yield selector_filter(op.clear_payload)
    elif isinstance(op, models.DeleteVectorsOperation):
        yield op.delete_vectors.filter


def read_filters(method: str, kw: Mapping[str, Any]) -> list[models.Filter]:
    """The filters a read evaluates: its own and each prefetch's."""
    if method not in READ_FILTERS:
        return []
    found: list[models.Filter | None] = [kw.get(READ_FILTERS[method])]
    if method in ("query_points", "query_points_groups"):
        found += [p.filter for p in _prefetches(kw.get("prefetch"))]
    return [f for f in found if f is not None]


def write_filters(method: str, kw: Mapping[str, Any]) -> list[models.Filter]:
    """The filters a write selects its points by (points by id have none)."""
    found: list[models.Filter | None] = []
    if method in WRITE_SELECTORS:
        found.append(selector_filter(kw.get(WRITE_SELECTORS[method])))
    if method == "batch_update_points":
        for op in kw.get("update_operations") or []:
            found += list(_batch_write_filters(op))
    return [f for f in found if f is not None]


def filters_to_index(method: str, kw: Mapping[str, Any],
                     cfg: models.StrictModeConfig) -> list[models.Filter]:
    """The filters whose fields must be indexed under ``cfg`` (empty: nothing to look up)."""
    found: list[models.Filter] = []
    if cfg.unindexed_filtering_retrieve is False:
        found += read_filters(method, kw)
    if cfg.unindexed_filtering_update is False:
        found += write_filters(method, kw)
    return found


def _conditions(f: models.Filter) -> Iterator[Any]:
    for group in (f.must, f.should, f.must_not):
        yield from (group if isinstance(group, list) else [group] if group is not None else [])
    if f.min_should is not None:
        yield from f.min_should.conditions


def total_conditions(f: models.Filter) -> int:
    """Qdrant's ``total_conditions_count``: leaf conditions, nested filters counted through
    (an empty nested filter counts 0)."""
    total = 0
    for c in _conditions(f):
        if isinstance(c, models.Filter):
            total += total_conditions(c)
        elif isinstance(c, models.NestedCondition):
            total += total_conditions(c.nested.filter)
        else:
            total += 1
    return total


def _condition_size(c: Any) -> int:
    if isinstance(c, models.FieldCondition):
        if isinstance(c.match, models.MatchAny):
            return len(c.match.any)
        if isinstance(c.match, models.MatchExcept):
            return len(c.match.except_)
        return 0
    if isinstance(c, models.HasIdCondition):
        return len({str(i) for i in c.has_id})  # a set in Qdrant: duplicates count once
    if isinstance(c, models.Filter):
        return max_condition_size(c)
    if isinstance(c, models.NestedCondition):
        return max_condition_size(c.nested.filter)
    return 0


def max_condition_size(f: models.Filter) -> int:
    """Qdrant's ``max_condition_input_size``: the most values one condition lists
    (``match.any`` / ``match.except`` / ``has_id``), searched through nested filters."""
    return max((_condition_size(c) for c in _conditions(f)), default=0)


def check_filter_limits(f: models.Filter, cfg: models.StrictModeConfig) -> None:
    """``filter_max_conditions`` and ``condition_max_size`` for one filter."""
    if cfg.filter_max_conditions is not None:
        n = total_conditions(f)
        if n > cfg.filter_max_conditions:
            raise refuse(f"Filter condition limit reached ({n} > {cfg.filter_max_conditions})",
                         "Reduce the amount of conditions of your filter.")
    if cfg.condition_max_size is not None:
        size = max_condition_size(f)
        if size > cfg.condition_max_size:
            raise refuse(f"Condition size limit reached ({size} > {cfg.condition_max_size})",
                         "Reduce the size of your condition.")


def field_conditions(f: models.Filter, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full key, condition) of every field condition in ``f``, nested ones as ``a[].b``."""
    for c in _conditions(f):
        if isinstance(c, models.Filter):
            yield from field_conditions(c, prefix)
        elif isinstance(c, models.FieldCondition):
            yield prefix + c.key, c
        elif isinstance(c, models.NestedCondition):
            yield from field_conditions(c.nested.filter, f"{prefix}{c.nested.key}[].")


def fitting_schemas(c: models.FieldCondition) -> list[str]:
    """The payload index types that can serve a field condition."""
    m = c.match
    if isinstance(m, models.MatchValue):
        if isinstance(m.value, bool):
            return ["bool"]
        return ["integer"] if isinstance(m.value, int) else ["keyword", "uuid"]
    if isinstance(m, (models.MatchAny, models.MatchExcept)):
        values = m.any if isinstance(m, models.MatchAny) else m.except_
        return ["integer"] if values and isinstance(values[0], int) else ["keyword", "uuid"]
    if m is not None:  # text, phrase, text_any
        return ["text"]
    if isinstance(c.range, models.DatetimeRange):
        return ["datetime"]
    if c.range is not None:
        return ["integer", "float"]
    if c.geo_bounding_box is not None or c.geo_radius is not None or c.geo_polygon is not None:
        return ["geo"]
    return []


def check_indexed(filters: list[models.Filter], schema: Mapping[str, str]) -> None:
    """Refuse the first field without a fitting index; ``schema`` maps key -> index type."""
    for f in filters:
        for key, c in field_conditions(f):
            wanted = fitting_schemas(c)
            if not wanted:
                continue
            if schema.get(key) not in wanted:
                raise refuse(
                    f'Index required but not found for "{key}" of one of the following types: '
                    f"[{', '.join(wanted)}]",
                    "Create an index for this key or use a different filter.")

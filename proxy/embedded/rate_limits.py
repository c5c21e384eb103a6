"""Qdrant's strict-mode rate limits for the embedded upstream: ``read_rate_limit`` and
``write_rate_limit`` (per minute), as token buckets with an injectable clock, and the cost
Qdrant charges each call. Pure apart from reading the clock; no I/O.

The bucket is Qdrant's (``common::rate_limiting::RateLimiter``): it holds at most ``limit``
tokens, starts full, refills at ``limit / 60`` tokens a second, and a call costing ``cost``
passes when at least ``cost`` tokens are there (and takes them). A call costing more than the
whole bucket can never pass. Qdrant keeps one bucket per collection shard and makes a new,
full one whenever the collection's strict-mode config changes; the engine does the same
(:class:`Limiters`), so an update of the config refills the buckets.

Costs, as Qdrant counts them (``operation_rate_cost`` and the shard's read methods):

- reads: scroll, count and facet 1 plus the conditions of their filter; retrieve the number
  of ids; a query, for each request it plans (each prefetch without prefetches of its own,
  or the query itself), the conditions of the filters that request applies (its own and its
  parents') plus 1 for a scroll or, for a search, Qdrant's ``search_cost``: 1 per dense
  vector, 1 per 64 sparse indices started, 1 per vector of a multivector, summed over a
  recommend / discover / context query's examples; a batch the sum of its queries; groups
  and matrices as one query;
- writes: the points an operation touches, at least 1: those it names (upsert, vector update,
  ids of a delete or payload change), or for a write by filter the shard's estimate of the
  points it selects (the engine passes it in: Qdrant's ``estimate_cardinality``, which a
  ``count`` with ``exact=false`` answers); a batch costs the sum of its operations, charged
  before any is applied (Qdrant charges each as it runs it).

Refusals are 429 in Qdrant's words (``Rate limiting exceeded: Read rate limit exceeded:
Operation requires 3 tokens but only 1.0 were available. Retry after 30s``), gRPC
``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded import strict_mode
from switchyard.proxy.errors import RateLimitExceeded

Clock = Callable[[], float]

#: read methods (the rest of a shard's methods write)
READ_METHODS = frozenset({
    "query_points", "query_batch", "query_points_groups", "scroll", "count", "facet", "retrieve",
    "search_matrix_pairs", "search_matrix_offsets",
})
#: methods Qdrant does not rate-limit (collection metadata, answered without a shard call)
FREE_METHODS = frozenset({"info", "get_collection", "collection_exists"})
TOO_LARGE = "request larger than than rate limiter capacity, please try to split your request"


@dataclass(frozen=True)
class Denied:
    """Why a call did not pass: ``retry_after`` is ``None`` when it never can."""

    cost: float
    tokens_available: float
    retry_after: float | None


@dataclass
class TokenBucket:
    """A bucket of ``per_minute`` tokens, refilled continuously; see the module docstring."""

    per_minute: int
    clock: Clock = time.monotonic
    tokens: float = field(init=False)
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.per_minute)
        self.last = self.clock()

    def try_consume(self, cost: float) -> Denied | None:
        """Take ``cost`` tokens, or say why not (nothing is taken then)."""
        if cost > self.per_minute:
            return Denied(cost, self.tokens, None)
        now = self.clock()
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + rate * max(0.0, now - self.last))
        self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return None
        return Denied(cost, self.tokens, (cost - self.tokens) / rate)


def refusal(denied: Denied, write: bool) -> RateLimitExceeded:
    """Qdrant's ``CollectionError::rate_limit_error`` for a refused call."""
    kind = "Write" if write else "Read"
    if denied.retry_after is None:
        return RateLimitExceeded(f"{kind} rate limit exceeded, {TOO_LARGE}")
    seconds = math.ceil(denied.retry_after)
    return RateLimitExceeded(
        f"{kind} rate limit exceeded: Operation requires {denied.cost:g} tokens but only "
        f"{denied.tokens_available:.1f} were available. Retry after {seconds}s",
        retry_after=seconds)


# ---------------------------------------------------------------- costs


def _filter_cost(f: models.Filter | None) -> int:
    return strict_mode.total_conditions(f) if f is not None else 0


#: sparse dimensions Qdrant counts as one similarity comparison (``SPARSE_DIMS_COST_UNIT``)
SPARSE_DIMS_COST_UNIT = 64


def _vector_cost(v: Any) -> int:
    """Qdrant's ``similarity_cost``: dense 1 (also a point id or an input to embed), sparse one
    per 64 indices started, multivector one per vector."""
    if isinstance(v, models.SparseVector):
        return math.ceil(len(v.indices) / SPARSE_DIMS_COST_UNIT)
    if isinstance(v, list) and v and isinstance(v[0], list):
        return len(v)
    return 1


def _search_cost(query: Any) -> int | None:
    """Qdrant's ``search_cost`` of a query, or ``None`` when it plans no search (no query, an
    order-by or a sample query: a scroll, which costs 1)."""
    if query is None or isinstance(query, (models.OrderByQuery, models.SampleQuery)):
        return None
    if isinstance(query, models.NearestQuery):
        return _vector_cost(query.nearest)
    if isinstance(query, models.RecommendQuery):
        inp = query.recommend
        return sum(_vector_cost(v) for v in [*(inp.positive or []), *(inp.negative or [])])
    if isinstance(query, models.DiscoverQuery):
        pairs = query.discover.context
        pairs = pairs if isinstance(pairs, list) else [pairs] if pairs else []
        return _vector_cost(query.discover.target) + sum(
            _vector_cost(p.positive) + _vector_cost(p.negative) for p in pairs)
    if isinstance(query, models.ContextQuery):
        pairs = query.context if isinstance(query.context, list) else [query.context]
        return sum(_vector_cost(p.positive) + _vector_cost(p.negative) for p in pairs)
    return _vector_cost(query)


def _leaves(prefetch: Any, inherited: int) -> Iterator[tuple[Any, int]]:
    """(query, filter cost) of each request a query plans under ``prefetch``: a prefetch
    without prefetches of its own, applying its own and its parents' filters."""
    for p in prefetch if isinstance(prefetch, list) else [prefetch] if prefetch else []:
        cost = inherited + _filter_cost(p.filter)
        if p.prefetch:
            yield from _leaves(p.prefetch, cost)
        else:
            yield p.query, cost


def query_cost(kw: Mapping[str, Any]) -> int:
    """One query, as Qdrant's planned query costs: each search its ``search_cost``, each scroll
    1, both plus the conditions of the filters they apply (the query's root, when it has
    prefetches, only rescores them and is not charged)."""
    own = _filter_cost(kw.get("query_filter"))
    leaves = list(_leaves(kw.get("prefetch"), own)) or [(kw.get("query"), own)]
    total = 0
    for query, filters in leaves:
        search = _search_cost(query)
        total += (1 if search is None else search) + filters
    return total


#: the points a write by filter selects, as the shard estimates them (``count`` with
#: ``exact=false`` is Qdrant's ``estimate_cardinality``, which Qdrant charges)
Estimate = Callable[[models.Filter], int]


def _no_estimate(_: models.Filter) -> int:
    return 1


def _selected(value: Any, estimate: Estimate) -> int:
    """Points a selector names: its ids, or the estimate for its filter."""
    if isinstance(value, models.PointIdsList):
        return len(value.points)
    if isinstance(value, list):
        return len(value)
    f = strict_mode.selector_filter(value)
    return estimate(f) if f is not None else 0


def _by_ids_or_filter(points: Any, flt: models.Filter | None, estimate: Estimate) -> int:
    return len(points) if points else estimate(flt) if flt is not None else 0


def _batch_op_cost(op: Any, estimate: Estimate) -> int:
    if isinstance(op, models.UpsertOperation):
        n = strict_mode._count_points(op.upsert)
    elif isinstance(op, models.UpdateVectorsOperation):
        n = len(op.update_vectors.points)
    elif isinstance(op, models.DeleteOperation):
        n = _selected(op.delete, estimate)
    elif isinstance(op, models.ClearPayloadOperation):
        n = _selected(op.clear_payload, estimate)
    elif isinstance(op, models.SetPayloadOperation):
        n = _by_ids_or_filter(op.set_payload.points, op.set_payload.filter, estimate)
    elif isinstance(op, models.OverwritePayloadOperation):
        n = _by_ids_or_filter(op.overwrite_payload.points, op.overwrite_payload.filter, estimate)
    elif isinstance(op, models.DeletePayloadOperation):
        n = _by_ids_or_filter(op.delete_payload.points, op.delete_payload.filter, estimate)
    elif isinstance(op, models.DeleteVectorsOperation):
        n = _by_ids_or_filter(op.delete_vectors.points, op.delete_vectors.filter, estimate)
    else:
        n = 0
    return max(1, n)


def cost(method: str, kw: Mapping[str, Any], estimate: Estimate = _no_estimate) -> int:
    """The tokens ``method`` costs in its bucket (read or write: :func:`is_read`); writes by
    filter cost ``estimate(filter)`` (1 when no estimate is given)."""
    if method in ("query_points", "query_points_groups", "search_matrix_pairs",
                  "search_matrix_offsets"):
        return query_cost(kw)
    if method == "query_batch":
        return sum(query_cost(one) for one in kw["batch"])
    if method in ("scroll", "count", "facet"):
        return 1 + _filter_cost(kw.get(strict_mode.READ_FILTERS[method]))
    if method == "retrieve":
        return len(kw.get("ids") or [])
    if method == "batch_update_points":
        return sum(_batch_op_cost(op, estimate) for op in kw.get("update_operations") or [])
    if method == "upsert":
        return max(1, strict_mode._count_points(kw.get("points")))
    if method == "update_vectors":
        return max(1, len(kw.get("points") or []))
    if method in strict_mode.WRITE_SELECTORS:
        return max(1, _selected(kw.get(strict_mode.WRITE_SELECTORS[method]), estimate))
    return 1


def is_read(method: str) -> bool:
    return method in READ_METHODS


@dataclass
class Limiters:
    """One collection's buckets, made new (full) whenever its strict-mode config changes."""

    clock: Clock = time.monotonic
    _config: models.StrictModeConfig | None = None
    _read: TokenBucket | None = None
    _write: TokenBucket | None = None

    def bucket(self, cfg: models.StrictModeConfig | None, method: str) -> TokenBucket | None:
        """The bucket ``method`` is charged to under ``cfg`` (``None``: not limited)."""
        if cfg is not self._config:
            self._config = cfg
            on = strict_mode.active(cfg)
            read, write = (cfg.read_rate_limit, cfg.write_rate_limit) if on and cfg else (None, None)
            self._read = TokenBucket(read, self.clock) if read is not None else None
            self._write = TokenBucket(write, self.clock) if write is not None else None
        if method in FREE_METHODS:
            return None
        return self._read if is_read(method) else self._write

    def check(self, cfg: models.StrictModeConfig | None, method: str, kw: Mapping[str, Any],
              estimate: Estimate = _no_estimate) -> None:
        """Charge ``method`` to its bucket under ``cfg``; raise Qdrant's 429 when it is short."""
        bucket = self.bucket(cfg, method)
        if bucket is None:
            return
        denied = bucket.try_consume(cost(method, kw, estimate))
        if denied is not None:
            raise refusal(denied, not is_read(method))

"""Strict mode as both engines enforce it: the pure checks (:mod:`strict_mode`,
:mod:`strict_writes`, :mod:`rate_limits`) in Qdrant's order, with what they need to know of a
collection (its payload schema, its points count, its vector and payload sizes, how many points
a filter selects) asked of the engine through a :class:`CollectionView`, only when a configured
limit needs it.

Order, as Qdrant's ``check_strict_mode`` and its shard: per request the batch-size, query and
filter-size limits, the collection-size limits (vector and payload storage, points count) and
vector limits of a write, the payload-index checks,
then exact / search params; after every request of the call ``max_timeout``; last the rate
limit, charged to the collection's read or write bucket (:class:`rate_limits.Limiters`, kept
here per collection and dropped with it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from qdrant_client.http import models

from switchyard.proxy.embedded import rate_limits, strict_mode, strict_writes


class CollectionView(Protocol):
    """What the checks ask of the engine about one collection (only when a check needs it)."""

    async def schema(self) -> Mapping[str, str]:
        """Payload index type by field (``"keyword"``, ``"integer"``, ...)."""
        ...

    async def points_count(self) -> int: ...

    async def storage_sizes(self) -> tuple[int, int]:
        """(vector bytes, payload bytes) as :func:`strict_writes.estimate_sizes` counts them."""
        ...

    async def estimate(self, flt: models.Filter) -> int:
        """The points ``flt`` selects as Qdrant estimates them (``count`` with ``exact=false``)."""
        ...


class Enforcer:
    """One engine's strict mode: see the module docstring. ``clock`` feeds the rate limits."""

    def __init__(self, clock: rate_limits.Clock = time.monotonic) -> None:
        self.clock = clock
        self._limiters: dict[str, rate_limits.Limiters] = {}

    def forget(self, name: str) -> None:
        """A collection was deleted: a new one of that name starts with full buckets."""
        self._limiters.pop(name, None)

    async def check(self, name: str, cfg: models.StrictModeConfig | None, method: str,
                    kw: Mapping[str, Any], timeout: int | None, view: CollectionView) -> None:
        """Refuse ``method`` (``QdrantLocal``'s name and keywords; ``query_batch`` with its
        queries as ``kw["batch"]``) as Qdrant would under ``cfg``, or charge it and return."""
        if strict_mode.active(cfg):
            assert cfg is not None
            requests = ([("query_points", one) for one in kw["batch"]]
                        if method == "query_batch" else [(method, kw)])
            for one_method, one_kw in requests:
                await self._verify(cfg, one_method, one_kw, view)
            strict_mode.check_timeout(timeout, cfg)
        await self._charge(name, cfg, method, kw, view)

    async def _verify(self, cfg: models.StrictModeConfig, method: str, kw: Mapping[str, Any],
                      view: CollectionView) -> None:
        strict_mode.check_request(method, kw, cfg)
        limits = strict_writes.size_limits(method, kw, cfg)
        if limits:
            vector_bytes = payload_bytes = points = 0
            if limits & {"vectors", "payload"}:
                vector_bytes, payload_bytes = await view.storage_sizes()
            if "points" in limits:
                points = await view.points_count()
            strict_writes.check_sizes(limits, strict_writes.Sizes(vector_bytes, payload_bytes, points), cfg)
        strict_writes.check_vectors(method, kw, cfg)
        filters = strict_mode.filters_to_index(method, kw, cfg)
        if filters:
            strict_mode.check_indexed(filters, await view.schema())
        strict_mode.check_search(method, kw, cfg)

    async def _charge(self, name: str, cfg: models.StrictModeConfig | None, method: str,
                      kw: Mapping[str, Any], view: CollectionView) -> None:
        limiters = self._limiters.get(name)
        if limiters is None:
            limiters = self._limiters[name] = rate_limits.Limiters(self.clock)
        if limiters.bucket(cfg, method) is None:
            return
        estimates: dict[int, int] = {}
        if not rate_limits.is_read(method):
            for f in strict_mode.write_filters(method, kw):
                estimates[id(f)] = await view.estimate(f)
        limiters.check(cfg, method, kw, lambda f: estimates.get(id(f), 1))

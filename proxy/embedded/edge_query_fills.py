"""What the Edge engine answers above Edge, because Edge's Python API lacks it: point ids as
queries and ``lookup_from`` (retrieve the vector, then query), groups (over-fetch, group by
the payload value, then read each hit as asked, with ``with_lookup``), and the distance matrix
(sample, then search each among the others). The pure parts are :mod:`edge_queries`; this is
the sequence of shard calls around them, made through ``call`` (the engine's ordered shard
call) with collection names resolved by ``resolve`` (aliases to collections).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded import edge_queries as eq

#: the engine's shard call: (collection, method, keywords) -> the shard's answer
ShardCall = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class QueryFills:
    """The filled-in queries of one Edge engine; see the module docstring."""

    def __init__(self, call: ShardCall, resolve: Callable[[str], str]) -> None:
        self._call, self._resolve = call, resolve

    async def resolve_examples(self, name: str, kw: dict[str, Any]) -> dict[str, Any]:
        """Replace point ids used as queries by their vectors (from ``lookup_from`` if given)."""
        ids = eq.example_ids(kw.get("query"), kw.get("prefetch"))
        if not ids:
            return kw
        lookup: models.LookupLocation | None = kw.get("lookup_from")
        source = self._resolve(lookup.collection) if lookup else name
        using = (lookup.vector if lookup and lookup.vector is not None else kw.get("using")) or ""
        records = await self._call(source, "retrieve", {
            "ids": ids, "with_payload": False, "with_vectors": [using] if using else True})
        vectors = {r.id: eq.vector_of(r, using) for r in records}
        out = dict(kw, query=eq.substitute(kw.get("query"), vectors),
                   prefetch=eq.substitute_prefetch(kw.get("prefetch"), vectors))
        if source == name:
            out["query_filter"] = eq.exclude_ids(kw.get("query_filter"), ids)
        return out

    async def query_batch(self, name: str, batch: list[dict[str, Any]]) -> list[models.QueryResponse]:
        name = self._resolve(name)
        resolved = [await self.resolve_examples(name, dict(kw)) for kw in batch]
        for kw in resolved:
            kw.pop("lookup_from", None)
        result: list[models.QueryResponse] = await self._call(name, "query_batch", {"batch": resolved})
        return result

    async def groups(self, name: str, kw: dict[str, Any]) -> models.GroupsResult:
        """Over-fetch, group by the payload value, then read each hit as the caller asked."""
        key, limit, size = kw.pop("group_by"), kw.pop("limit", 10) or 10, kw.pop("group_size", 3) or 3
        with_lookup = kw.pop("with_lookup", None)
        want_payload, want_vectors = kw.pop("with_payload", False), kw.pop("with_vectors", False)
        fetch = limit * size * 4
        for _ in range(4):
            kw_round = dict(kw, limit=fetch, with_payload=[key], with_vectors=False)
            [found] = await self.query_batch(name, [kw_round])
            groups = eq.group_hits(found.points, key, limit, size)
            if eq.groups_complete(groups, limit, size) or len(found.points) < fetch:
                break
            fetch *= 4
        ids = list(dict.fromkeys(h.id for _, hits in groups for h in hits))
        records = {r.id: r for r in await self._call(name, "retrieve", {
            "ids": ids, "with_payload": want_payload, "with_vectors": want_vectors})} if ids else {}
        lookups = await self.group_lookups(with_lookup, [g for g, _ in groups])
        out = []
        for gid, hits in groups:
            points = [h.model_copy(update={"payload": records[h.id].payload if want_payload else None,
                                           "vector": records[h.id].vector if want_vectors else None})
                      for h in hits if h.id in records]
            out.append(models.PointGroup(hits=points, id=gid, lookup=lookups.get(gid)))
        return models.GroupsResult(groups=out)

    async def matrix(self, name: str, method: str, kw: dict[str, Any]) -> Any:
        """Sample points (matching the filter), then search each among the others."""
        using, flt = kw.get("using"), kw.get("query_filter")
        sampled = await self._call(name, "query_batch", {"batch": [{
            "query": models.SampleQuery(sample=models.Sample.RANDOM), "limit": kw.get("sample") or 10,
            "query_filter": flt, "with_vectors": [using] if using else True}]})
        # the sample in id order (integers, then UUIDs): a stable answer for one sample
        points = sorted(sampled[0].points, key=lambda p: (isinstance(p.id, str), p.id))
        ids = [p.id for p in points]
        vectors = [eq.vector_of(models.Record(id=p.id, vector=p.vector), using) for p in points]
        batch = eq.matrix_requests(ids, vectors, using, kw.get("limit") or 3, flt)
        results = await self._call(name, "query_batch", {"batch": batch}) if batch else []
        if method == "search_matrix_pairs":
            return eq.matrix_pairs(ids, results)
        return eq.matrix_offsets(ids, results)

    async def group_lookups(self, with_lookup: Any, group_ids: list[Any]) -> dict[Any, Any]:
        if with_lookup is None or not group_ids:
            return {}
        if isinstance(with_lookup, str):
            with_lookup = models.WithLookup(collection=with_lookup)
        source = self._resolve(with_lookup.collection)
        records = await self._call(source, "retrieve", {
            "ids": group_ids,
            "with_payload": with_lookup.with_payload if with_lookup.with_payload is not None else True,
            "with_vectors": with_lookup.with_vectors or False})
        return {r.id: r for r in records}

"""Strict mode on the local engine: the checks the Edge engine makes (:mod:`strict_enforce`),
answered from ``QdrantLocal`` and the engine's payload indexes.

The local engine has no cardinality estimate: a write by filter is charged the points the
filter selects, counted (``QdrantLocal`` counts exactly whatever ``exact`` says), where Qdrant
and Edge charge their estimate. Everything else is as on Edge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from qdrant_client.http import models

from switchyard.proxy.embedded import seam_args, strict_writes
from switchyard.proxy.embedded.local_indexes import data_type

if TYPE_CHECKING:
    from switchyard.proxy.embedded.engine import Engine

#: calls about collections rather than their points: no strict mode, no rate limit
COLLECTION_METHODS = frozenset({
    "create_collection", "delete_collection", "get_collection", "get_collections",
    "collection_exists", "update_collection", "update_collection_aliases", "get_aliases",
    "get_collection_aliases", "info",
})


def named(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``QdrantLocal.<method>``'s arguments by name, or ``None`` when they do not bind (the
    engine itself then answers the call as it would)."""
    sig = seam_args.signature(method)
    if sig is None:
        return None
    try:
        return seam_args.by_name(sig, args, kwargs)
    except TypeError:
        return None


class LocalView:
    """:class:`strict_enforce.CollectionView` of one local collection."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name

    def _read(self, fn: Callable[[], Any]) -> Awaitable[Any]:
        return self.engine.run(fn, read=True)

    async def schema(self) -> dict[str, str]:
        # as a read: never beside a write that changes the indexes
        fields = await self._read(lambda: self.engine.indexes.fields(self.name))
        return {field: data_type(schema).value for field, schema in fields.items()}

    async def points_count(self) -> int:
        local = self.engine.local
        return int(await self._read(lambda: local.count(self.name, exact=True).count))

    async def storage_sizes(self) -> tuple[int, int]:
        local, name = self.engine.local, self.name
        widths = strict_writes.element_bytes(local.collections[name].config.vectors)

        def measure() -> tuple[int, int]:
            def pages() -> Iterator[models.Record]:
                offset = None
                while True:
                    records, offset = local.scroll(name, limit=512, offset=offset,
                                                   with_payload=True, with_vectors=True)
                    yield from records
                    if offset is None:
                        return
            return strict_writes.estimate_sizes(pages(), widths)

        vector_bytes, payload_bytes = await self._read(measure)
        return int(vector_bytes), int(payload_bytes)

    async def estimate(self, flt: models.Filter) -> int:
        local = self.engine.local
        return int(await self._read(
            lambda: local.count(self.name, count_filter=flt, exact=False).count))


async def check(engine: Engine, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: int | None) -> None:
    """Strict mode for one call of the local engine (see the module docstring)."""
    if method in COLLECTION_METHODS:
        return
    if method == "query_batch":
        name, batch = args
        kw: dict[str, Any] | None = {"batch": batch}
    else:
        kw = named(method, args, kwargs)
        if kw is None:
            return
        name = kw.pop("collection_name", None)
    if not isinstance(name, str) or kw is None:
        return
    local = engine.local
    real = local.aliases.get(name, name)
    collection = local.collections.get(real)
    if collection is None:
        return  # the engine answers Qdrant's 404
    cfg = getattr(collection.config, "strict_mode_config", None)
    await engine.strict.check(real, cfg, method, kw, timeout, LocalView(engine, real))

"""The I/O half of ``switchyard doctor``: scroll a collection into an :class:`Inspector`.

Reads through Qdrant's own API (a Switchyard proxy or Qdrant itself): the binding and model of
the collection from the state store (following an alias), then the points in id order, the
bound vector only, in pages, at most ``rate`` points per second (a scan of a production
collection must not compete with its traffic), at most ``limit`` points. Foreign errors are
translated here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy import registry
from switchyard.proxy.errors import NotFound, UpstreamError
from switchyard.proxy.inspection.findings import Inspector, Point, Report
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

PAGE = 256
_FOREIGN = (UnexpectedResponse, ResponseHandlingException)


async def bound_model(store: StateStore, collection: str) -> tuple[Binding | None, ModelSpec | None]:
    """The binding governing ``collection`` (as named, else through its alias) and its model."""
    aliases = await store.aliases()
    for name in (collection, aliases.get(collection)):
        if name is None:
            continue
        binding = next((b for b in await registry.list_bindings(store) if b.collection == name), None)
        if binding is not None:
            try:
                return binding, await registry.get_model(store, binding.model_id)
            except NotFound:
                return binding, None
    return None, None


async def inspect(client: AsyncQdrantClient, store: StateStore, collection: str, *, text_field: str = "text",
                  limit: int | None = None, rate: float | None = None, vector: str | None = None) -> Report:
    """Scan ``collection`` (module docstring); ``vector`` overrides the binding's vector name."""
    binding, spec = await bound_model(store, collection)
    name = vector if vector is not None else (binding.vector if binding else "")
    inspector = Inspector(collection, spec, text_field=text_field)
    offset: Any = None
    started = time.monotonic()
    while limit is None or inspector.points < limit:
        page = PAGE if limit is None else min(PAGE, limit - inspector.points)
        try:
            records, offset = await client.scroll(collection, limit=page, offset=offset, with_payload=True,
                                                  with_vectors=[name] if name else True)
        except _FOREIGN as exc:
            status = getattr(exc, "status_code", None)
            if status == 404:
                raise NotFound(f"collection `{collection}` does not exist") from exc
            raise UpstreamError(f"scrolling `{collection}` failed: {exc}") from exc
        inspector.add(Point(r.id, r.payload or {}, _vector(r.vector, name)) for r in records)
        if offset is None:
            return inspector.report(complete=True)
        if rate:
            ahead = inspector.points / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return inspector.report(complete=False)


def _vector(value: Any, name: str) -> np.ndarray | None:
    """The bound dense vector of a scrolled record (``None``: absent, or not dense)."""
    if isinstance(value, dict):
        value = value.get(name)
    if isinstance(value, list) and value and not isinstance(value[0], list):
        return np.asarray(value, dtype=np.float32)
    if isinstance(value, list) and not value:
        return np.zeros(0, dtype=np.float32)
    return None

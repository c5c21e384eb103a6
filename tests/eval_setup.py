"""The set-up the ``migrate eval`` tests share: a source bound to a hashing model A (16-d) behind
an alias, model B (32-d) registered, ``points`` documents written through the proxy (which stamps
them), and a queries file of seven topics. Clients are closed on exit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy import registry
from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore


@dataclass
class EvalSetup:
    a: ModelSpec
    b: ModelSpec
    logical: str
    source: str
    direct: AsyncQdrantClient  # the upstream
    via: AsyncQdrantClient  # the proxy
    store: StateStore
    queries: Path  # seven lines {"text": "topic N"}
    url: tuple[str, str]  # the CLI's --url pointing at the proxy


async def embed_with(spec: ModelSpec, texts: list[str]) -> Any:
    embedder = make_embedder(spec)
    try:
        return await embedder.embed(texts)
    finally:
        await embedder.aclose()


@dataclass
class BoundSource:
    """A source collection behind an alias, bound to a fresh hashing model A through the proxy,
    with a fresh model B (twice A's size) registered; clients to the upstream and the proxy."""

    a: ModelSpec
    b: ModelSpec
    logical: str
    source: str
    direct: AsyncQdrantClient
    via: AsyncQdrantClient
    store: StateStore


@asynccontextmanager
async def bound_source(proxy: Any, upstream: Any, prefix: str, label: str, dims: int) -> AsyncIterator[BoundSource]:
    """The :class:`BoundSource` set-up; its clients are closed on exit."""
    tag = uuid.uuid4().hex[:6]
    a = ModelSpec(id=f"{label}-a-{tag}", provider="hashing", model=f"{label}-a-{tag}", dimensions=dims)
    b = ModelSpec(id=f"{label}-b-{tag}", provider="hashing", model=f"{label}-b-{tag}", dimensions=2 * dims)
    logical, src = f"{prefix}docs", f"{prefix}docs_v1"
    direct = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    via = AsyncQdrantClient(url=proxy.rest_url, check_compatibility=False, timeout=30)
    store = StateStore(direct)
    try:
        await direct.create_collection(src, vectors_config=models.VectorParams(size=dims, distance=models.Distance.COSINE))
        await direct.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=src, alias_name=logical))])
        await registry.register_model(store, b, replace=True)
        await asyncio.to_thread(proxy.register_and_bind, a, Binding(logical, a.id))
        yield BoundSource(a, b, logical, src, direct, via, store)
    finally:
        await via.close()
        await direct.close()


@asynccontextmanager
async def eval_setup(proxy: Any, upstream: Any, prefix: str, label: str, points: int,
                     tmp_path: Path) -> AsyncIterator[EvalSetup]:
    async with bound_source(proxy, upstream, prefix, label, 16) as s:
        texts = [f"document {i} about topic {i % 7}" for i in range(points)]
        vectors = await embed_with(s.a, texts)
        await s.via.upsert(s.logical, [models.PointStruct(  # A's vectors; the proxy stamps them
            id=i, vector=[float(x) for x in vectors[i]], payload={"text": t, "doc_id": str(i)})
            for i, t in enumerate(texts)], wait=True)
        queries = tmp_path / "queries.jsonl"
        queries.write_text("".join(json.dumps({"text": f"topic {i}"}) + "\n" for i in range(7)))
        yield EvalSetup(s.a, s.b, s.logical, s.source, s.direct, s.via, s.store, queries, ("--url", proxy.rest_url))

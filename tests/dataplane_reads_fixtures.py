"""A migration in progress on the session's upstream, for MergedReader tests and the bench.

Builds a source collection (model ``a``) holding every document and a target collection
(model ``b``) holding the first ``migrated`` documents (payload ``side`` says which collection
a point came from), plus the snapshot, migration record and route the executor would pass.
Forward functions send calls to the upstream through the proxy's own upstream clients.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.migration.record import DUAL_WRITE, Migration
from switchyard.proxy.migration.routing import Route, route_for
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.upstream.grpc_client import GrpcUpstream
from switchyard.proxy.upstream.rest_client import RestUpstream

TOPICS = ("cats", "dogs", "fish", "birds")
WORDS = ("small", "large", "quick", "lazy", "green", "blue", "happy", "noisy", "calm", "old")


def corpus(n: int) -> list[str]:
    """Texts that share words in varying amounts, so rankings are non-trivial."""
    return [
        f"{TOPICS[i % 4]} {WORDS[i % 10]} {WORDS[(i * 3) % 10]} {TOPICS[(i // 4) % 4]} note {i}"
        for i in range(n)
    ]


def spec(model_id: str, dims: int, distance: str = "Cosine") -> ModelSpec:
    return ModelSpec(id=model_id, provider="hashing", model=f"hash-{model_id}", dimensions=dims,
                     distance=distance)


@dataclass
class Setup:
    logical: str
    source: str
    target: str
    a: ModelSpec
    b: ModelSpec
    migration: Migration
    texts: list[str]
    migrated: int

    @property
    def snap(self) -> StateSnapshot:
        return StateSnapshot(models={"a": self.a, "b": self.b},
                             migrations={self.migration.id: self.migration})

    @property
    def route(self) -> Route:
        return route_for(self.migration, "read")

    def with_mode(self, read_mode: str) -> Setup:
        return replace(self, migration=replace(self.migration, read_mode=read_mode))


async def _fill(client: AsyncQdrantClient, name: str, s: ModelSpec, pool: EmbedderPool,
                texts: Sequence[str], ids: Sequence[int], side: str) -> None:
    await client.create_collection(name, vectors_config=s.vector_params())
    vectors: np.ndarray = await pool.embed(s, [texts[i] for i in ids])
    points = [
        models.PointStruct(id=i, vector=vectors[k].tolist(), payload={
            "doc_id": f"d{i}", "text": texts[i], "topic": texts[i].split()[0], "side": side})
        for k, i in enumerate(ids)
    ]
    for start in range(0, len(points), 512):
        await client.upsert(name, points[start:start + 512], wait=True)


async def make_setup(rest_url: str, prefix: str, pool: EmbedderPool, *, n: int = 40,
                     migrated: int = 20, dims_b: int = 8, doc_key: str = "doc_id",
                     distance: str = "Cosine") -> Setup:
    a, b = spec("a", 8, distance), spec("b", dims_b, distance)
    texts = corpus(n)
    logical, source, target = f"{prefix}docs", f"{prefix}docs_a", f"{prefix}docs_b"
    client = AsyncQdrantClient(url=rest_url, check_compatibility=False)
    try:
        await _fill(client, source, a, pool, texts, range(n), "source")
        await _fill(client, target, b, pool, texts, range(migrated), "target")
    finally:
        await client.close()
    migration = Migration(
        id=f"{prefix}m", logical=logical, source=source, target=target, model_a="a", model_b="b",
        doc_key=doc_key, phase=DUAL_WRITE, read_mode="merged",
        counters={"backfill_done": migrated, "backfill_total": n},
    )
    return Setup(logical, source, target, a, b, migration, texts, migrated)


class Forwarders:
    """REST and gRPC forward functions to the upstream (what the front ends hand the executor)."""

    def __init__(self, rest_url: str, grpc_address: str) -> None:
        self.rest_upstream = RestUpstream(rest_url)
        self.grpc_upstream = GrpcUpstream(grpc_address)
        self.rest_calls: list[Any] = []
        self.grpc_calls: list[Any] = []

    async def rest(self, call: Any) -> Any:
        self.rest_calls.append(call)
        return await self.rest_upstream.request(call)

    async def grpc(self, call: Any) -> Any:
        self.grpc_calls.append(call)
        return await self.grpc_upstream.call(call)

    async def aclose(self) -> None:
        await self.rest_upstream.close()
        await self.grpc_upstream.close()


@dataclass
class _State:
    snapshot: StateSnapshot


@dataclass
class MirrorWorld:
    """A source collection bound to model ``specs[0]`` with a migration started on it, on the
    session's upstream: what an in-process mirror test writes through (:func:`mirror_world`)."""

    client: AsyncQdrantClient
    store: Any  # StateStore
    fw: Forwarders
    source: str
    specs: tuple[ModelSpec, ...]
    m: Migration


@asynccontextmanager
async def mirror_world(upstream: Any, source: str, specs: Sequence[ModelSpec],
                       plan: Callable[[str], Any]) -> AsyncIterator[MirrorWorld]:
    """Create ``source`` (``specs[0]``'s dimensions, Cosine), register ``specs``, bind the
    source to the first, plan ``plan(source)`` (a ``PlanRequest``) and start it; drop the state
    store and close the clients after."""
    from switchyard.proxy import registry
    from switchyard.proxy.migration.service import MigrationService, ServiceConfig
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore

    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    store = StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    try:
        await client.create_collection(source, vectors_config=models.VectorParams(
            size=specs[0].dimensions, distance=models.Distance.COSINE))
        for s in specs:
            await registry.register_model(store, s)
        await registry.bind(store, client, Binding(source, specs[0].id))
        svc = MigrationService(store, client, ServiceConfig())
        report = await svc.plan(plan(source))
        m = await svc.transition(report["migration"]["id"], "start")
        yield MirrorWorld(client, store, fw, source, tuple(specs), m)
    finally:
        await fw.aclose()
        await client.delete_collection(store.collection)
        await client.close()


async def mirror_executor(w: MirrorWorld, spool: Path, grpc_forward: Any) -> tuple[Any, EmbedderPool]:
    """An ``Executor`` with a ``Mirror`` over ``w``'s forwards (its gRPC leg ``grpc_forward``),
    on the snapshot the proxy would hold; the caller closes the pool."""
    from switchyard.proxy.dataplane.mirror import Mirror
    from switchyard.proxy.dataplane.repair_spool import RepairLog
    from switchyard.proxy.intercept.executor import Executor
    from switchyard.proxy.state.records import Binding

    bindings = {e.key: Binding.from_dict(e.data) for e in await w.store.list(Binding.KIND)}
    snap = StateSnapshot({s.id: s for s in w.specs}, bindings, {}, 0.0, {w.m.id: w.m})
    pool = EmbedderPool()
    mirror = Mirror(pool, RepairLog(w.store, spool), w.fw.rest, grpc_forward=grpc_forward)
    return Executor(_State(snap), mirror=mirror, pool=pool), pool

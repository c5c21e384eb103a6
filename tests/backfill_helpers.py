"""Shared setup of the backfill tests: a source collection with points, a started migration."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from switchyard.backfill.partitions import PointId
from switchyard.proxy import registry
from switchyard.proxy.dataplane.digest import DIGEST_FIELD
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

A = ModelSpec(id="bf-a", provider="hashing", model="a", dimensions=4)
B = ModelSpec(id="bf-b", provider="hashing", model="b", dimensions=8)
#: Same dimensions as A: the target of copy-vectors (schema-only) migrations.
A2 = ModelSpec(id="bf-a2", provider="hashing", model="a2", dimensions=4)


def point(i: PointId, version: int = 0) -> models.PointStruct:
    return models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, float(hash(str(i)) % 97) / 97 + 0.01],
                              payload={"text": f"document {i} v{version}", "doc_id": str(i), "v": version})


async def seed_source(client: AsyncQdrantClient, store: StateStore, prefix: str,
                      ids: Sequence[PointId], *, texts: Sequence[str] | None = None) -> tuple[str, str]:
    """``(logical, source)``: ``<prefix>docs_v1`` under the alias ``<prefix>docs`` with ``ids``,
    bound to A, with A, B and A2 registered."""
    logical, source = f"{prefix}docs", f"{prefix}docs_v1"
    await client.create_collection(source, vectors_config=models.VectorParams(
        size=4, distance=models.Distance.COSINE))
    await client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=logical))])
    for spec in (A, B, A2):
        await registry.register_model(store, spec, replace=True)
    await registry.bind(store, client, Binding(logical, A.id))
    for k in range(0, len(ids), 1000):
        batch = [point(i) for i in ids[k:k + 1000]]
        if texts:
            for n, p in enumerate(batch, start=k):
                assert p.payload is not None
                p.payload["text"] = texts[n % len(texts)]
        await client.upsert(source, batch, wait=True)
    return logical, source


async def setup_migration(client: AsyncQdrantClient, store: StateStore, prefix: str,
                          ids: Sequence[PointId], *, copy_vectors: bool = False,
                          throttle: float | None = None, model_b: str | None = None,
                          texts: Sequence[str] | None = None) -> str:
    """Source ``<prefix>docs_v1`` (alias ``<prefix>docs``) with ``ids``; a started migration to B.

    ``texts`` (cycled) replace the default short payload texts, e.g. real passages for benches."""
    logical, _ = await seed_source(client, store, prefix, ids, texts=texts)
    svc = MigrationService(store, client, ServiceConfig(ack_timeout=10.0, max_active=1000))
    to_model = model_b or (A2.id if copy_vectors else B.id)
    report = await svc.plan(PlanRequest(logical, to_model,
                                        copy_vectors=copy_vectors, throttle=throttle))
    mid = str(report["migration"]["id"])
    await svc.transition(mid, "start")
    return mid


async def dump(client: AsyncQdrantClient, collection: str) -> dict[Any, tuple[Any, Any]]:
    """id -> (payload, vector) of every point."""
    out: dict[Any, tuple[Any, Any]] = {}
    offset: Any = None
    while True:
        recs, offset = await client.scroll(collection, offset=offset, limit=1000, with_payload=True,
                                           with_vectors=True)
        out.update({r.id: (r.payload, r.vector) for r in recs})
        if offset is None:
            return out


def content(payload: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (payload or {}).items()
            if not k.startswith("embedding_") and k != DIGEST_FIELD}


def new_store(client: AsyncQdrantClient) -> StateStore:
    return StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")


def counting_texts(keys: list[Any], payloads: list[dict[str, Any]]) -> list[str | None]:
    """A ``--text-fetcher`` for subprocess tests: the payload text, and one line per call with
    the number of texts in ``$BACKFILL_COUNT_FILE`` (how many points were prepared in total)."""
    import os
    with open(os.environ["BACKFILL_COUNT_FILE"], "a") as f:
        f.write(f"{len(keys)}\n")
        f.flush()
    return [p.get("text") for p in payloads]

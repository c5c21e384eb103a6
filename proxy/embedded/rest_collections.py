"""REST routes of the embedded upstream for collections, aliases, vector names, indexes, and the
operations the embedded upstream cannot back (shard snapshots, cluster, shard keys), which
answer 501. Collection and full-storage snapshots are :mod:`rest_snapshots`.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded.rest_codec import Ctx, Route, unsupported
from switchyard.proxy.errors import BadRequest


async def list_collections(ctx: Ctx) -> Any:
    return await ctx.engine.call("get_collections")


async def get_collection(ctx: Ctx) -> Any:
    return await ctx.engine.call("get_collection", ctx.collection)


async def collection_exists(ctx: Ctx) -> Any:
    exists = await ctx.engine.call("collection_exists", ctx.collection)
    return models.CollectionExistence(exists=exists)


async def create_collection(ctx: Ctx) -> Any:
    """Create; the local engine keeps vector and sparse params and metadata and ignores the
    tuning options (HNSW, optimizers, quantization, WAL, strict mode), the Edge engine keeps
    and applies them all."""
    req: models.CreateCollection = await ctx.parse(models.CreateCollection)
    if req.sharding_method == models.ShardingMethod.CUSTOM:
        raise BadRequest("custom sharding is not supported by the embedded upstream")
    return await ctx.engine.call(
        "create_collection",
        ctx.collection,
        vectors_config=req.vectors,
        sparse_vectors_config=req.sparse_vectors,
        metadata=req.metadata,
        **tuning(req),
    )


def tuning(req: models.CreateCollection | models.UpdateCollection) -> dict[str, Any]:
    """The tuning options a create or update names (only those set)."""
    names = ("hnsw_config", "optimizers_config", "quantization_config", "on_disk_payload",
             "strict_mode_config", "wal_config")
    return {n: getattr(req, n) for n in names if getattr(req, n, None) is not None}


async def update_collection(ctx: Ctx) -> Any:
    req: models.UpdateCollection = await ctx.parse(models.UpdateCollection)
    await ctx.engine.call(
        "update_collection",
        ctx.collection,
        sparse_vectors_config=req.sparse_vectors,
        metadata=req.metadata,
        vectors_config=req.vectors,
        collection_params=req.params,
        **tuning(req),
    )
    return True


async def delete_collection(ctx: Ctx) -> Any:
    return await ctx.engine.call("delete_collection", ctx.collection)


async def update_aliases(ctx: Ctx) -> Any:
    req: models.ChangeAliasesOperation = await ctx.parse(models.ChangeAliasesOperation)
    return await ctx.engine.call("update_collection_aliases", req.actions)


async def list_aliases(ctx: Ctx) -> Any:
    return await ctx.engine.call("get_aliases")


async def collection_aliases(ctx: Ctx) -> Any:
    # Qdrant answers 404 for the aliases of a collection that does not exist
    await ctx.engine.call("get_collection", ctx.collection)
    return await ctx.engine.call("get_collection_aliases", ctx.collection)


async def create_index(ctx: Ctx) -> Any:
    req: models.CreateFieldIndex = await ctx.parse(models.CreateFieldIndex)
    await ctx.engine.call(
        "create_payload_index", ctx.collection, req.field_name, field_schema=req.field_schema
    )
    return ctx.update_result()


async def delete_index(ctx: Ctx) -> Any:
    await ctx.engine.call("delete_payload_index", ctx.collection, ctx.params["field_name"])
    return ctx.update_result()


async def create_vector_name(ctx: Ctx) -> Any:
    config = await ctx.parse(models.VectorNameConfig)
    await ctx.engine.call(
        "create_vector_name", ctx.collection, ctx.params["vector_name"], config
    )
    return ctx.update_result()


async def delete_vector_name(ctx: Ctx) -> Any:
    await ctx.engine.call("delete_vector_name", ctx.collection, ctx.params["vector_name"])
    return ctx.update_result()


C = "/collections/{collection_name}"
SHARD = C + "/shards/{shard_id}"

ROUTES: list[Route] = [
    Route("GET", "/collections", list_collections),
    Route("GET", C, get_collection),
    Route("PUT", C, create_collection, write=True),
    Route("PATCH", C, update_collection, write=True),
    Route("DELETE", C, delete_collection, write=True),
    Route("GET", C + "/exists", collection_exists),
    Route("POST", "/collections/aliases", update_aliases, write=True),
    Route("GET", "/aliases", list_aliases),
    Route("GET", C + "/aliases", collection_aliases),
    Route("PUT", C + "/index", create_index, write=True),
    Route("DELETE", C + "/index/{field_name}", delete_index, write=True),
    Route("PUT", C + "/vectors/{vector_name}", create_vector_name, write=True),
    Route("DELETE", C + "/vectors/{vector_name}", delete_vector_name, write=True),
    # what the local engine has no notion of: a clear 501, never a crash
    Route("PUT", C + "/shards", unsupported("Shard keys"), write=True),
    Route("GET", C + "/shards", unsupported("Shard keys")),
    Route("POST", C + "/shards/delete", unsupported("Shard keys"), write=True),
    Route("GET", C + "/cluster", unsupported("Collection cluster info")),
    Route("POST", C + "/cluster", unsupported("Cluster operations"), write=True),
    Route("GET", C + "/optimizations", unsupported("Optimization progress")),
    Route("GET", SHARD + "/snapshot", unsupported("Snapshots")),
    Route("POST", SHARD + "/snapshots/upload", unsupported("Snapshots"), write=True),
    Route("PUT", SHARD + "/snapshots/recover", unsupported("Snapshots"), write=True),
    Route("GET", SHARD + "/snapshots", unsupported("Snapshots")),
    Route("POST", SHARD + "/snapshots", unsupported("Snapshots"), write=True),
    Route("DELETE", SHARD + "/snapshots/{snapshot_name}", unsupported("Snapshots"), write=True),
    Route("GET", SHARD + "/snapshots/{snapshot_name}", unsupported("Snapshots")),
    Route("GET", "/cluster", unsupported("Cluster status")),
    Route("GET", "/cluster/telemetry", unsupported("Cluster telemetry")),
    Route("POST", "/cluster/recover", unsupported("Cluster recovery"), write=True),
    Route("DELETE", "/cluster/peer/{peer_id}", unsupported("Cluster peers"), write=True),
    Route("GET", "/issues", unsupported("Issues")),
    Route("DELETE", "/issues", unsupported("Issues"), write=True),
    Route("GET", "/quotas", unsupported("Quotas")),
    Route("PUT", "/quotas", unsupported("Quotas"), write=True),
]

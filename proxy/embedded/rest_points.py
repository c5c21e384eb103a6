"""REST routes of the embedded upstream for points: writes, reads, the query API, matrices and
the legacy search / recommend / discover families (translated by :mod:`switchyard.proxy.embedded.legacy`).

Every handler parses its body into qdrant-client's models, calls the engine (one worker thread,
so concurrent requests never interleave inside the local engine) and returns a model; write
handlers return an ``UpdateResult`` with a fresh operation id.

Atomicity: an upsert is validated whole before anything is written. A batch update is
validated op by op first (the local engine checks every operation before applying any), then
applied in order; like Qdrant, which applies a batch's operations sequentially and does not roll
back earlier ones, an operation failing at apply time (e.g. updating vectors of a missing point)
leaves the earlier operations applied.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded import legacy
from switchyard.proxy.embedded.rest_codec import Ctx, Route, no_shard_key, point_id, selector
from switchyard.proxy.errors import NotFound

# ---------------------------------------------------------------- writes


async def upsert(ctx: Ctx) -> Any:
    req = await ctx.parse(models.PointInsertOperations)
    no_shard_key(req.shard_key)
    points = req.batch if isinstance(req, models.PointsBatch) else req.points
    await ctx.engine.call(
        "upsert",
        ctx.collection,
        points,
        update_filter=req.update_filter,
        update_mode=req.update_mode,
    )
    return ctx.update_result()


async def delete_points(ctx: Ctx) -> Any:
    req = await ctx.parse(models.PointsSelector)
    no_shard_key(req.shard_key)
    await ctx.engine.call("delete", ctx.collection, req)
    return ctx.update_result()


async def update_vectors(ctx: Ctx) -> Any:
    req: models.UpdateVectors = await ctx.parse(models.UpdateVectors)
    no_shard_key(req.shard_key)
    await ctx.engine.call(
        "update_vectors", ctx.collection, req.points, update_filter=req.update_filter
    )
    return ctx.update_result()


async def delete_vectors(ctx: Ctx) -> Any:
    req: models.DeleteVectors = await ctx.parse(models.DeleteVectors)
    no_shard_key(req.shard_key)
    await ctx.engine.call(
        "delete_vectors", ctx.collection, req.vector, selector(req.points, req.filter)
    )
    return ctx.update_result()


async def set_payload(ctx: Ctx) -> Any:
    req: models.SetPayload = await ctx.parse(models.SetPayload)
    no_shard_key(req.shard_key)
    await ctx.engine.call(
        "set_payload", ctx.collection, req.payload, selector(req.points, req.filter), key=req.key
    )
    return ctx.update_result()


async def overwrite_payload(ctx: Ctx) -> Any:
    req: models.SetPayload = await ctx.parse(models.SetPayload)
    no_shard_key(req.shard_key)
    if req.key is not None:
        # Qdrant overwrites the value at `key`, which is what set_payload with a key does
        await ctx.engine.call(
            "set_payload", ctx.collection, req.payload, selector(req.points, req.filter), key=req.key
        )
    else:
        await ctx.engine.call(
            "overwrite_payload", ctx.collection, req.payload, selector(req.points, req.filter)
        )
    return ctx.update_result()


async def delete_payload(ctx: Ctx) -> Any:
    req: models.DeletePayload = await ctx.parse(models.DeletePayload)
    no_shard_key(req.shard_key)
    await ctx.engine.call(
        "delete_payload", ctx.collection, req.keys, selector(req.points, req.filter)
    )
    return ctx.update_result()


async def clear_payload(ctx: Ctx) -> Any:
    req = await ctx.parse(models.PointsSelector)
    no_shard_key(req.shard_key)
    await ctx.engine.call("clear_payload", ctx.collection, req)
    return ctx.update_result()


async def batch_update(ctx: Ctx) -> Any:
    req: models.UpdateOperations = await ctx.parse(models.UpdateOperations)
    await ctx.engine.call("batch_update_points", ctx.collection, req.operations)
    return [ctx.update_result() for _ in req.operations]


# ---------------------------------------------------------------- reads


def _default_true(value: Any) -> Any:
    return True if value is None else value


def _default_false(value: Any) -> Any:
    return False if value is None else value


async def get_point(ctx: Ctx) -> Any:
    pid = point_id(ctx.params["id"])
    found = await ctx.engine.call(
        "retrieve", ctx.collection, [pid], with_payload=True, with_vectors=True
    )
    if not found:
        raise NotFound(f"No point with id {pid} found")
    return found[0]


async def get_points(ctx: Ctx) -> Any:
    req: models.PointRequest = await ctx.parse(models.PointRequest)
    no_shard_key(req.shard_key)
    return await ctx.engine.call(
        "retrieve",
        ctx.collection,
        req.ids,
        with_payload=_default_true(req.with_payload),
        with_vectors=_default_false(req.with_vector),
        timeout=ctx.timeout,
    )


async def scroll(ctx: Ctx) -> Any:
    req: models.ScrollRequest = await ctx.parse(models.ScrollRequest)
    no_shard_key(req.shard_key)
    points, next_offset = await ctx.engine.call(
        "scroll",
        ctx.collection,
        scroll_filter=req.filter,
        limit=req.limit if req.limit is not None else 10,
        order_by=req.order_by,
        offset=req.offset,
        with_payload=_default_true(req.with_payload),
        with_vectors=_default_false(req.with_vector),
        timeout=ctx.timeout,
    )
    return models.ScrollResult(points=points, next_page_offset=next_offset)


async def count(ctx: Ctx) -> Any:
    req: models.CountRequest = await ctx.parse(models.CountRequest)
    no_shard_key(req.shard_key)
    return await ctx.engine.call("count", ctx.collection, count_filter=req.filter,
                                 exact=req.exact if req.exact is not None else True,
                                 timeout=ctx.timeout)


async def facet(ctx: Ctx) -> Any:
    req: models.FacetRequest = await ctx.parse(models.FacetRequest)
    no_shard_key(req.shard_key)
    return await ctx.engine.call(
        "facet",
        ctx.collection,
        req.key,
        facet_filter=req.filter,
        limit=req.limit if req.limit is not None else 10,
        timeout=ctx.timeout,
    )


async def query(ctx: Ctx) -> Any:
    req: models.QueryRequest = await ctx.parse(models.QueryRequest)
    no_shard_key(req.shard_key)
    return await ctx.engine.call("query_points", ctx.collection, **legacy.query_kwargs(req),
                                 timeout=ctx.timeout)


async def query_batch(ctx: Ctx) -> Any:
    req: models.QueryRequestBatch = await ctx.parse(models.QueryRequestBatch)
    return await _run_batch(ctx, req.searches)


async def _run_batch(ctx: Ctx, requests: list[models.QueryRequest]) -> list[models.QueryResponse]:
    for one in requests:
        no_shard_key(one.shard_key)
    kwargs = [legacy.query_kwargs(one) for one in requests]
    result: list[models.QueryResponse] = await ctx.engine.call(
        "query_batch", ctx.collection, kwargs, timeout=ctx.timeout
    )
    return result


async def query_groups(ctx: Ctx) -> Any:
    req: models.QueryGroupsRequest = await ctx.parse(models.QueryGroupsRequest)
    no_shard_key(req.shard_key)
    return await ctx.engine.call(
        "query_points_groups",
        ctx.collection,
        group_by=req.group_by,
        query=req.query,
        using=req.using,
        prefetch=req.prefetch,
        query_filter=req.filter,
        search_params=req.params,
        limit=req.limit if req.limit is not None else 10,
        group_size=req.group_size if req.group_size is not None else 3,
        with_payload=_default_false(req.with_payload),
        with_vectors=_default_false(req.with_vector),
        score_threshold=req.score_threshold,
        with_lookup=req.with_lookup,
        lookup_from=req.lookup_from,
        timeout=ctx.timeout,
    )


def _matrix(method: str) -> Any:
    async def handler(ctx: Ctx) -> Any:
        req: models.SearchMatrixRequest = await ctx.parse(models.SearchMatrixRequest)
        no_shard_key(req.shard_key)
        return await ctx.engine.call(
            method,
            ctx.collection,
            query_filter=req.filter,
            limit=req.limit if req.limit is not None else 3,
            sample=req.sample if req.sample is not None else 10,
            using=req.using,
            timeout=ctx.timeout,
        )

    return handler


# ---------------------------------------------------------------- legacy similarity API


async def search(ctx: Ctx) -> Any:
    req: legacy.SearchRequest = await ctx.parse(legacy.SearchRequest)
    return (await _run_batch(ctx, [legacy.search_to_request(req)]))[0].points


async def recommend(ctx: Ctx) -> Any:
    req: legacy.RecommendRequest = await ctx.parse(legacy.RecommendRequest)
    return (await _run_batch(ctx, [legacy.recommend_to_request(req)]))[0].points


async def discover(ctx: Ctx) -> Any:
    req: legacy.DiscoverRequest = await ctx.parse(legacy.DiscoverRequest)
    return (await _run_batch(ctx, [legacy.discover_to_request(req)]))[0].points


def _legacy_batch(model: Any) -> Any:
    async def handler(ctx: Ctx) -> Any:
        req = await ctx.parse(model)
        return [r.points for r in await _run_batch(ctx, legacy.batch_to_requests(req))]

    return handler


async def search_groups(ctx: Ctx) -> Any:
    req: legacy.SearchGroupsRequest = await ctx.parse(legacy.SearchGroupsRequest)
    no_shard_key(req.shard_key)
    kwargs = legacy.search_groups_to_query(req)
    return await ctx.engine.call("query_points_groups", ctx.collection, **kwargs,
                                 timeout=ctx.timeout)


async def recommend_groups(ctx: Ctx) -> Any:
    req: legacy.RecommendGroupsRequest = await ctx.parse(legacy.RecommendGroupsRequest)
    no_shard_key(req.shard_key)
    kwargs = legacy.recommend_groups_to_query(req)
    return await ctx.engine.call("query_points_groups", ctx.collection, **kwargs,
                                 timeout=ctx.timeout)


P = "/collections/{collection_name}/points"

ROUTES: list[Route] = [
    Route("GET", P + "/{id}", get_point),
    Route("POST", P, get_points),
    Route("PUT", P, upsert, write=True),
    Route("POST", P + "/delete", delete_points, write=True),
    Route("PUT", P + "/vectors", update_vectors, write=True),
    Route("POST", P + "/vectors/delete", delete_vectors, write=True),
    Route("POST", P + "/payload", set_payload, write=True),
    Route("PUT", P + "/payload", overwrite_payload, write=True),
    Route("POST", P + "/payload/delete", delete_payload, write=True),
    Route("POST", P + "/payload/clear", clear_payload, write=True),
    Route("POST", P + "/batch", batch_update, write=True),
    Route("POST", P + "/scroll", scroll),
    Route("POST", P + "/count", count),
    Route("POST", "/collections/{collection_name}/facet", facet),
    Route("POST", P + "/query", query),
    Route("POST", P + "/query/batch", query_batch),
    Route("POST", P + "/query/groups", query_groups),
    Route("POST", P + "/search/matrix/pairs", _matrix("search_matrix_pairs")),
    Route("POST", P + "/search/matrix/offsets", _matrix("search_matrix_offsets")),
    Route("POST", P + "/search", search),
    Route("POST", P + "/search/batch", _legacy_batch(legacy.SearchRequestBatch)),
    Route("POST", P + "/search/groups", search_groups),
    Route("POST", P + "/recommend", recommend),
    Route("POST", P + "/recommend/batch", _legacy_batch(legacy.RecommendRequestBatch)),
    Route("POST", P + "/recommend/groups", recommend_groups),
    Route("POST", P + "/discover", discover),
    Route("POST", P + "/discover/batch", _legacy_batch(legacy.DiscoverRequestBatch)),
]

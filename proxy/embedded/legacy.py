"""Qdrant's legacy similarity API (search, recommend, discover) expressed as query API calls.

Qdrant still serves ``points/search``, ``points/recommend`` and ``points/discover`` (and their
batch and group variants) although its OpenAPI spec and qdrant-client 1.20 dropped them; the
local engine only implements the universal query API. This module is the pure translation:
request models in, keyword arguments for ``QdrantLocal.query_points`` /
``query_points_groups`` (or ``models.QueryRequest`` for batches) out. No I/O.

qdrant-client >= 1.16 no longer ships ``SearchRequest``, ``RecommendRequest``,
``DiscoverRequest`` and friends, so they are declared here with Qdrant's field names and
defaults, built from qdrant-client's own component models (``Filter``, ``SearchParams``,
``SparseVector``, ...) and, like every Qdrant request body, rejecting unknown fields.
Both front ends use them: REST bodies parse straight into them, the gRPC front end builds them
from ``SearchPoints`` / ``RecommendPoints`` / ``DiscoverPoints``.

Legacy defaults differ from the query API in one respect that matters: ``with_payload`` and
``with_vector`` default to false, as in Qdrant, not to the local engine's ``True``.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, Field
from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest

__all__ = [
    "NamedVector",
    "NamedSparseVector",
    "SearchRequest",
    "SearchRequestBatch",
    "SearchGroupsRequest",
    "RecommendRequest",
    "RecommendRequestBatch",
    "RecommendGroupsRequest",
    "ContextExamplePair",
    "DiscoverRequest",
    "DiscoverRequestBatch",
    "search_to_request",
    "search_to_query",
    "search_groups_to_query",
    "recommend_to_request",
    "recommend_to_query",
    "recommend_groups_to_query",
    "discover_to_request",
    "discover_to_query",
    "batch_to_requests",
    "query_kwargs",
]


class NamedVector(BaseModel, extra="forbid"):
    """A dense vector for a named vector space (``{"name": ..., "vector": [...]}``)."""

    name: str
    vector: list[float]


class NamedSparseVector(BaseModel, extra="forbid"):
    name: str
    vector: models.SparseVector


#: ``vector`` of a search request: a bare dense vector searches the unnamed vector.
NamedVectorStruct = Union[list[float], NamedVector, NamedSparseVector]
#: An example of recommend/discover: a point id or a vector.
RecommendExample = Union[models.ExtendedPointId, list[float], models.SparseVector]


class _Common(BaseModel, extra="forbid"):
    shard_key: models.ShardKeySelector | None = None
    filter: models.Filter | None = None
    params: models.SearchParams | None = None
    with_payload: models.WithPayloadInterface | None = None
    with_vector: models.WithVector | None = None
    score_threshold: float | None = None


class SearchRequest(_Common):
    vector: NamedVectorStruct
    limit: int = Field(..., ge=1)
    offset: int | None = Field(default=None, ge=0)


class SearchRequestBatch(BaseModel, extra="forbid"):
    searches: list[SearchRequest]


class SearchGroupsRequest(_Common):
    vector: NamedVectorStruct
    group_by: str
    group_size: int = Field(..., ge=1)
    limit: int = Field(..., ge=1)
    with_lookup: models.WithLookupInterface | None = None


class RecommendRequest(_Common):
    positive: list[RecommendExample] = Field(default_factory=list)
    negative: list[RecommendExample] = Field(default_factory=list)
    strategy: models.RecommendStrategy | None = None
    limit: int = Field(..., ge=1)
    offset: int | None = Field(default=None, ge=0)
    using: str | None = None
    lookup_from: models.LookupLocation | None = None


class RecommendRequestBatch(BaseModel, extra="forbid"):
    searches: list[RecommendRequest]


class RecommendGroupsRequest(_Common):
    positive: list[RecommendExample] = Field(default_factory=list)
    negative: list[RecommendExample] = Field(default_factory=list)
    strategy: models.RecommendStrategy | None = None
    using: str | None = None
    lookup_from: models.LookupLocation | None = None
    group_by: str
    group_size: int = Field(..., ge=1)
    limit: int = Field(..., ge=1)
    with_lookup: models.WithLookupInterface | None = None


class ContextExamplePair(BaseModel, extra="forbid"):
    positive: RecommendExample
    negative: RecommendExample


class DiscoverRequest(_Common):
    target: RecommendExample | None = None
    context: list[ContextExamplePair] | None = None
    limit: int = Field(..., ge=1)
    offset: int | None = Field(default=None, ge=0)
    using: str | None = None
    lookup_from: models.LookupLocation | None = None


class DiscoverRequestBatch(BaseModel, extra="forbid"):
    searches: list[DiscoverRequest]


def _vector_query(vector: NamedVectorStruct) -> tuple[models.NearestQuery, str | None]:
    """The nearest-neighbour query and vector name a legacy ``vector`` field stands for."""
    if isinstance(vector, (NamedVector, NamedSparseVector)):
        return models.NearestQuery(nearest=vector.vector), vector.name
    return models.NearestQuery(nearest=vector), None


def _recommend_query(
    req: RecommendRequest | RecommendGroupsRequest,
) -> models.RecommendQuery:
    if not req.positive and not req.negative:
        raise BadRequest("At least one positive or negative vector/id is required")
    return models.RecommendQuery(
        recommend=models.RecommendInput(
            positive=list(req.positive) or None,
            negative=list(req.negative) or None,
            strategy=req.strategy,
        )
    )


def _discover_query(req: DiscoverRequest) -> models.DiscoverQuery | models.ContextQuery:
    pairs = [models.ContextPair(positive=p.positive, negative=p.negative) for p in req.context or []]
    if req.target is None:
        if not pairs:
            raise BadRequest("Either target or context must be provided")
        return models.ContextQuery(context=pairs)
    return models.DiscoverQuery(discover=models.DiscoverInput(target=req.target, context=pairs))


def _base(req: _Common) -> dict[str, Any]:
    return {
        "shard_key": req.shard_key,
        "filter": req.filter,
        "params": req.params,
        "score_threshold": req.score_threshold,
        "with_payload": req.with_payload if req.with_payload is not None else False,
        "with_vector": req.with_vector if req.with_vector is not None else False,
    }


def search_to_request(req: SearchRequest) -> models.QueryRequest:
    query, using = _vector_query(req.vector)
    return models.QueryRequest(
        query=query, using=using, limit=req.limit, offset=req.offset, **_base(req)
    )


def recommend_to_request(req: RecommendRequest) -> models.QueryRequest:
    return models.QueryRequest(
        query=_recommend_query(req),
        using=req.using,
        lookup_from=req.lookup_from,
        limit=req.limit,
        offset=req.offset,
        **_base(req),
    )


def discover_to_request(req: DiscoverRequest) -> models.QueryRequest:
    return models.QueryRequest(
        query=_discover_query(req),
        using=req.using,
        lookup_from=req.lookup_from,
        limit=req.limit,
        offset=req.offset,
        **_base(req),
    )


def batch_to_requests(
    req: SearchRequestBatch | RecommendRequestBatch | DiscoverRequestBatch,
) -> list[models.QueryRequest]:
    """One ``QueryRequest`` per legacy request of a batch, for ``query_batch_points``."""
    out: list[models.QueryRequest] = []
    for one in req.searches:
        if isinstance(one, SearchRequest):
            out.append(search_to_request(one))
        elif isinstance(one, RecommendRequest):
            out.append(recommend_to_request(one))
        else:
            out.append(discover_to_request(one))
    return out


def query_kwargs(req: models.QueryRequest) -> dict[str, Any]:
    """Keyword arguments of ``QdrantLocal.query_points`` for a ``QueryRequest`` (REST defaults)."""
    return {
        "query": req.query,
        "using": req.using,
        "prefetch": req.prefetch,
        "query_filter": req.filter,
        "search_params": req.params,
        "limit": req.limit if req.limit is not None else 10,
        "offset": req.offset,
        "with_payload": req.with_payload if req.with_payload is not None else False,
        "with_vectors": req.with_vector if req.with_vector is not None else False,
        "score_threshold": req.score_threshold,
        "lookup_from": req.lookup_from,
    }


def search_to_query(req: SearchRequest) -> dict[str, Any]:
    """kwargs for ``QdrantLocal.query_points``; the response's ``points`` are the search result."""
    return query_kwargs(search_to_request(req))


def recommend_to_query(req: RecommendRequest) -> dict[str, Any]:
    return query_kwargs(recommend_to_request(req))


def discover_to_query(req: DiscoverRequest) -> dict[str, Any]:
    return query_kwargs(discover_to_request(req))


def _groups_kwargs(req: SearchGroupsRequest | RecommendGroupsRequest) -> dict[str, Any]:
    return {
        "group_by": req.group_by,
        "group_size": req.group_size,
        "limit": req.limit,
        "query_filter": req.filter,
        "search_params": req.params,
        "score_threshold": req.score_threshold,
        "with_payload": req.with_payload if req.with_payload is not None else False,
        "with_vectors": req.with_vector if req.with_vector is not None else False,
        "with_lookup": req.with_lookup,
    }


def search_groups_to_query(req: SearchGroupsRequest) -> dict[str, Any]:
    """kwargs for ``QdrantLocal.query_points_groups``."""
    query, using = _vector_query(req.vector)
    return {"query": query, "using": using, **_groups_kwargs(req)}


def recommend_groups_to_query(req: RecommendGroupsRequest) -> dict[str, Any]:
    """kwargs for ``QdrantLocal.query_points_groups``."""
    return {
        "query": _recommend_query(req),
        "using": req.using,
        "lookup_from": req.lookup_from,
        **_groups_kwargs(req),
    }

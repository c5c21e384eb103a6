"""The legacy search / recommend / discover family of ``qdrant.Points``, served by the query API.

Qdrant answers these calls by turning them into universal queries, and so does the REST front
end through :mod:`switchyard.proxy.embedded.legacy`. The gRPC side shares that translation: the pure
functions here only build legacy's request models from the protobuf messages (with
``GrpcToRest`` for every component), and legacy turns them into ``QdrantLocal`` keyword
arguments. A request the models reject (e.g. ``limit: 0``) is ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import points_pb2 as pb
from qdrant_client.grpc import qdrant_common_pb2 as common

from switchyard.proxy.embedded import legacy
from switchyard.proxy.embedded.grpc_requests import optional, scored, timeout_of
from switchyard.proxy.embedded.grpc_service import rpc
from switchyard.proxy.errors import BadRequest

if TYPE_CHECKING:
    from switchyard.proxy.embedded.engines import EngineSeam


def _common(request: Message) -> dict[str, Any]:
    """The fields every legacy request shares, as legacy's ``_Common`` expects them."""
    return {
        "filter": optional(request, "filter", GrpcToRest.convert_filter),
        "params": optional(request, "params", GrpcToRest.convert_search_params),
        "with_payload": optional(request, "with_payload", GrpcToRest.convert_with_payload_selector),
        "with_vector": optional(request, "with_vectors", GrpcToRest.convert_with_vectors_selector),
        "score_threshold": (
            getattr(request, "score_threshold")
            if "score_threshold" in request.DESCRIPTOR.fields_by_name
            and request.HasField("score_threshold")
            else None
        ),
    }


def search_vector(request: pb.SearchPoints | pb.SearchPointGroups) -> legacy.NamedVectorStruct:
    """The legacy ``vector`` field: dense or sparse, named by ``vector_name`` when given."""
    name = request.vector_name if request.HasField("vector_name") else None
    if request.HasField("sparse_indices"):
        sparse = GrpcToRest.convert_sparse_vector(
            pb.SparseVector(values=request.vector, indices=request.sparse_indices.data)
        )
        return legacy.NamedSparseVector(name=name or "", vector=sparse)
    if name is not None:
        return legacy.NamedVector(name=name, vector=list(request.vector))
    return list(request.vector)


def examples(ids: Sequence[common.PointId], vectors: Sequence[pb.Vector]) -> list[Any]:
    """Recommend examples: point ids first, then raw vectors."""
    return [GrpcToRest.convert_point_id(i) for i in ids] + [
        GrpcToRest.convert_vector(v) for v in vectors
    ]


def example(value: pb.VectorExample) -> Any:
    """A discover example: a point id or a vector."""
    kind = value.WhichOneof("example")
    if kind == "id":
        return GrpcToRest.convert_point_id(value.id)
    if kind == "vector":
        return GrpcToRest.convert_vector(value.vector)
    raise BadRequest("example: an id or a vector is required")


def search_request(request: pb.SearchPoints) -> legacy.SearchRequest:
    return legacy.SearchRequest(
        vector=search_vector(request),
        limit=request.limit,
        offset=request.offset if request.HasField("offset") else None,
        **_common(request),
    )


def search_groups_request(request: pb.SearchPointGroups) -> legacy.SearchGroupsRequest:
    return legacy.SearchGroupsRequest(
        vector=search_vector(request),
        group_by=request.group_by,
        group_size=request.group_size,
        limit=request.limit,
        with_lookup=optional(request, "with_lookup", GrpcToRest.convert_with_lookup),
        **_common(request),
    )


def _recommend_fields(request: pb.RecommendPoints | pb.RecommendPointGroups) -> dict[str, Any]:
    return {
        "positive": examples(request.positive, request.positive_vectors),
        "negative": examples(request.negative, request.negative_vectors),
        "strategy": optional(request, "strategy", GrpcToRest.convert_recommend_strategy),
        "using": request.using if request.HasField("using") else None,
        "lookup_from": optional(request, "lookup_from", GrpcToRest.convert_lookup_location),
        "limit": request.limit,
        **_common(request),
    }


def recommend_request(request: pb.RecommendPoints) -> legacy.RecommendRequest:
    offset = request.offset if request.HasField("offset") else None
    return legacy.RecommendRequest(offset=offset, **_recommend_fields(request))


def recommend_groups_request(request: pb.RecommendPointGroups) -> legacy.RecommendGroupsRequest:
    return legacy.RecommendGroupsRequest(
        group_by=request.group_by,
        group_size=request.group_size,
        with_lookup=optional(request, "with_lookup", GrpcToRest.convert_with_lookup),
        **_recommend_fields(request),
    )


def discover_request(request: pb.DiscoverPoints) -> legacy.DiscoverRequest:
    has_target = request.HasField("target") and request.target.HasField("single")
    return legacy.DiscoverRequest(
        target=example(request.target.single) if has_target else None,
        context=[
            legacy.ContextExamplePair(positive=example(p.positive), negative=example(p.negative))
            for p in request.context
        ],
        limit=request.limit,
        offset=request.offset if request.HasField("offset") else None,
        using=request.using if request.HasField("using") else None,
        lookup_from=optional(request, "lookup_from", GrpcToRest.convert_lookup_location),
        **_common(request),
    )


class LegacyPoints:
    """Mixin for ``PointsService``: the legacy methods, each answered through the query API."""

    engine: EngineSeam

    async def _batch(self, name: str, batch: list[dict[str, Any]],
                     timeout: int | None = None) -> list[list[pb.ScoredPoint]]:
        """Run ``query_points`` per kwargs in one engine turn (no interleaving)."""
        results = await self.engine.call("query_batch", name, batch, timeout=timeout)
        return [scored(r.points) for r in results]

    async def _groups(self, name: str, kwargs: dict[str, Any],
                      timeout: int | None = None) -> pb.GroupsResult:
        groups = await self.engine.call("query_points_groups", name, **kwargs, timeout=timeout)
        return RestToGrpc.convert_groups_result(groups)

    @rpc(write=False)
    async def Search(self, request: pb.SearchPoints) -> pb.SearchResponse:
        kwargs = legacy.search_to_query(search_request(request))
        [result] = await self._batch(request.collection_name, [kwargs], timeout_of(request))
        return pb.SearchResponse(result=result)

    @rpc(write=False)
    async def SearchBatch(self, request: pb.SearchBatchPoints) -> pb.SearchBatchResponse:
        batch = [legacy.search_to_query(search_request(s)) for s in request.search_points]
        results = await self._batch(request.collection_name, batch, timeout_of(request))
        return pb.SearchBatchResponse(result=[pb.BatchResult(result=r) for r in results])

    @rpc(write=False)
    async def SearchGroups(self, request: pb.SearchPointGroups) -> pb.SearchGroupsResponse:
        kwargs = legacy.search_groups_to_query(search_groups_request(request))
        return pb.SearchGroupsResponse(result=await self._groups(request.collection_name, kwargs, timeout_of(request)))

    @rpc(write=False)
    async def Recommend(self, request: pb.RecommendPoints) -> pb.RecommendResponse:
        kwargs = legacy.recommend_to_query(recommend_request(request))
        [result] = await self._batch(request.collection_name, [kwargs], timeout_of(request))
        return pb.RecommendResponse(result=result)

    @rpc(write=False)
    async def RecommendBatch(self, request: pb.RecommendBatchPoints) -> pb.RecommendBatchResponse:
        batch = [legacy.recommend_to_query(recommend_request(r)) for r in request.recommend_points]
        results = await self._batch(request.collection_name, batch, timeout_of(request))
        return pb.RecommendBatchResponse(result=[pb.BatchResult(result=r) for r in results])

    @rpc(write=False)
    async def RecommendGroups(
        self, request: pb.RecommendPointGroups
    ) -> pb.RecommendGroupsResponse:
        kwargs = legacy.recommend_groups_to_query(recommend_groups_request(request))
        groups = await self._groups(request.collection_name, kwargs, timeout_of(request))
        return pb.RecommendGroupsResponse(result=groups)

    @rpc(write=False)
    async def Discover(self, request: pb.DiscoverPoints) -> pb.DiscoverResponse:
        kwargs = legacy.discover_to_query(discover_request(request))
        [result] = await self._batch(request.collection_name, [kwargs], timeout_of(request))
        return pb.DiscoverResponse(result=result)

    @rpc(write=False)
    async def DiscoverBatch(self, request: pb.DiscoverBatchPoints) -> pb.DiscoverBatchResponse:
        batch = [legacy.discover_to_query(discover_request(d)) for d in request.discover_points]
        results = await self._batch(request.collection_name, batch, timeout_of(request))
        return pb.DiscoverBatchResponse(result=[pb.BatchResult(result=r) for r in results])

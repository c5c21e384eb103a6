"""``qdrant.Points`` for the embedded upstream: writes, reads and the query API over the engine.

Each request is converted into ``QdrantLocal`` keyword arguments (pure functions in
:mod:`switchyard.proxy.embedded.grpc_requests`), run on the engine, and the result converted back with
``RestToGrpc``. The legacy search/recommend/discover family is in
:mod:`switchyard.proxy.embedded.grpc_legacy` and is served through the query API.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import points_pb2 as pb
from qdrant_client.grpc import points_service_pb2_grpc

from switchyard.proxy.embedded.grpc_legacy import LegacyPoints
from switchyard.proxy.embedded.grpc_requests import (
    filter_of,
    index_schema,
    optional,
    query_groups_kwargs,
    query_kwargs,
    record,
    scroll_kwargs,
    selector,
    timeout_of,
    update_result,
    vector_name_config,
    waited,
    with_payload,
    with_vectors,
)
from switchyard.proxy.embedded.grpc_service import Service, rpc


class PointsService(LegacyPoints, Service, points_service_pb2_grpc.PointsServicer):
    """``qdrant.Points``; writes answer ``UpdateResult{operation_id, status: Completed}``."""

    async def _update(
        self, request: Any, method: str, **kwargs: Any
    ) -> pb.PointsOperationResponse:
        """Run a write; answer with the next operation id (writes always finish before)."""
        await self.engine.call(method, request.collection_name, **kwargs)
        return pb.PointsOperationResponse(result=self._result(request))

    def _result(self, request: Any) -> pb.UpdateResult:
        return update_result(waited(request), self.engine.next_operation_id())

    @rpc(write=True)
    async def Upsert(self, request: pb.UpsertPoints) -> pb.PointsOperationResponse:
        return await self._update(request, "upsert",
            points=[GrpcToRest.convert_point_struct(p) for p in request.points],
            update_filter=filter_of(request, "update_filter"),
            update_mode=optional(request, "update_mode", GrpcToRest.convert_update_mode),
        )

    @rpc(write=True)
    async def Delete(self, request: pb.DeletePoints) -> pb.PointsOperationResponse:
        points = selector(request, "points")
        return await self._update(request, "delete", points_selector=points)

    @rpc(write=True)
    async def UpdateVectors(self, request: pb.UpdatePointVectors) -> pb.PointsOperationResponse:
        return await self._update(request, "update_vectors",
            points=[GrpcToRest.convert_point_vectors(p) for p in request.points],
            update_filter=filter_of(request, "update_filter"),
        )

    @rpc(write=True)
    async def DeleteVectors(self, request: pb.DeletePointVectors) -> pb.PointsOperationResponse:
        return await self._update(request, "delete_vectors",
            vectors=list(request.vectors.names),
            points=selector(request, "points_selector"),
        )

    async def _set_payload(self, request: pb.SetPayloadPoints) -> pb.PointsOperationResponse:
        return await self._update(
            request,
            "set_payload",
            payload=GrpcToRest.convert_payload(request.payload),
            points=selector(request, "points_selector"),
            key=request.key if request.HasField("key") else None,
        )

    @rpc(write=True)
    async def SetPayload(self, request: pb.SetPayloadPoints) -> pb.PointsOperationResponse:
        return await self._set_payload(request)

    @rpc(write=True)
    async def OverwritePayload(self, request: pb.SetPayloadPoints) -> pb.PointsOperationResponse:
        if request.HasField("key"):
            # Qdrant overwrites the value at `key`, which is what set_payload with a key does
            return await self._set_payload(request)
        return await self._update(request, "overwrite_payload",
            payload=GrpcToRest.convert_payload(request.payload),
            points=selector(request, "points_selector"),
        )

    @rpc(write=True)
    async def DeletePayload(self, request: pb.DeletePayloadPoints) -> pb.PointsOperationResponse:
        return await self._update(request, "delete_payload",
            keys=list(request.keys),
            points=selector(request, "points_selector"),
        )

    @rpc(write=True)
    async def ClearPayload(self, request: pb.ClearPayloadPoints) -> pb.PointsOperationResponse:
        points = selector(request, "points")
        return await self._update(request, "clear_payload", points_selector=points)

    @rpc(write=True)
    async def UpdateBatch(self, request: pb.UpdateBatchPoints) -> pb.UpdateBatchResponse:
        operations = [GrpcToRest.convert_points_update_operation(op) for op in request.operations]
        await self.engine.call("batch_update_points", request.collection_name, operations)
        return pb.UpdateBatchResponse(result=[self._result(request) for _ in operations])

    @rpc(write=True)
    async def CreateFieldIndex(
        self, request: pb.CreateFieldIndexCollection
    ) -> pb.PointsOperationResponse:
        schema = index_schema(request)
        return await self._update(request, "create_payload_index",
            field_name=request.field_name,
            field_schema=schema,
        )

    @rpc(write=True)
    async def DeleteFieldIndex(
        self, request: pb.DeleteFieldIndexCollection
    ) -> pb.PointsOperationResponse:
        return await self._update(request, "delete_payload_index", field_name=request.field_name
        )

    @rpc(write=True)
    async def CreateVectorName(
        self, request: pb.CreateVectorNameRequest
    ) -> pb.PointsOperationResponse:
        config = vector_name_config(request)
        return await self._update(request, "create_vector_name",
            vector_name=request.vector_name,
            vector_name_config=config,
        )

    @rpc(write=True)
    async def DeleteVectorName(
        self, request: pb.DeleteVectorNameRequest
    ) -> pb.PointsOperationResponse:
        return await self._update(request, "delete_vector_name", vector_name=request.vector_name
        )

    @rpc(write=False)
    async def Get(self, request: pb.GetPoints) -> pb.GetResponse:
        records = await self.engine.call(
            "retrieve",
            request.collection_name,
            ids=[GrpcToRest.convert_point_id(i) for i in request.ids],
            with_payload=with_payload(request, "with_payload", True),
            with_vectors=with_vectors(request),
            timeout=timeout_of(request),
        )
        return pb.GetResponse(result=[record(r) for r in records])

    @rpc(write=False)
    async def Scroll(self, request: pb.ScrollPoints) -> pb.ScrollResponse:
        records, next_offset = await self.engine.call(
            "scroll", request.collection_name, **scroll_kwargs(request), timeout=timeout_of(request)
        )
        response = pb.ScrollResponse(result=[record(r) for r in records])
        if next_offset is not None:
            response.next_page_offset.CopyFrom(RestToGrpc.convert_extended_point_id(next_offset))
        return response

    @rpc(write=False)
    async def Count(self, request: pb.CountPoints) -> pb.CountResponse:
        result = await self.engine.call(
            "count", request.collection_name, count_filter=filter_of(request),
            exact=request.exact if request.HasField("exact") else True,
            timeout=timeout_of(request),
        )
        return pb.CountResponse(result=RestToGrpc.convert_count_result(result))

    @rpc(write=False)
    async def Facet(self, request: pb.FacetCounts) -> pb.FacetResponse:
        result = await self.engine.call(
            "facet",
            request.collection_name,
            key=request.key,
            facet_filter=filter_of(request),
            limit=request.limit if request.HasField("limit") else 10,
            timeout=timeout_of(request),
        )
        return pb.FacetResponse(hits=[RestToGrpc.convert_facet_value_hit(h) for h in result.hits])

    @rpc(write=False)
    async def Query(self, request: pb.QueryPoints) -> pb.QueryResponse:
        [result] = await self._batch(request.collection_name, [query_kwargs(request)], timeout_of(request))
        return pb.QueryResponse(result=result)

    @rpc(write=False)
    async def QueryBatch(self, request: pb.QueryBatchPoints) -> pb.QueryBatchResponse:
        batch = [query_kwargs(q) for q in request.query_points]
        results = await self._batch(request.collection_name, batch, timeout_of(request))
        return pb.QueryBatchResponse(result=[pb.BatchResult(result=r) for r in results])

    @rpc(write=False)
    async def QueryGroups(self, request: pb.QueryPointGroups) -> pb.QueryGroupsResponse:
        groups = await self._groups(request.collection_name, query_groups_kwargs(request),
                                   timeout_of(request))
        return pb.QueryGroupsResponse(result=groups)

    async def _matrix(self, method: str, request: pb.SearchMatrixPoints) -> Any:
        return await self.engine.call(
            method,
            request.collection_name,
            query_filter=filter_of(request),
            limit=request.limit if request.HasField("limit") else 3,
            sample=request.sample if request.HasField("sample") else 10,
            using=request.using if request.HasField("using") else None,
            timeout=timeout_of(request),
        )

    @rpc(write=False)
    async def SearchMatrixPairs(self, request: pb.SearchMatrixPoints) -> Message:
        result = await self._matrix("search_matrix_pairs", request)
        return pb.SearchMatrixPairsResponse(
            result=RestToGrpc.convert_search_matrix_pairs(result)
        )

    @rpc(write=False)
    async def SearchMatrixOffsets(self, request: pb.SearchMatrixPoints) -> Message:
        result = await self._matrix("search_matrix_offsets", request)
        return pb.SearchMatrixOffsetsResponse(
            result=RestToGrpc.convert_search_matrix_offsets(result)
        )

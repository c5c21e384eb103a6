"""``qdrant.Collections`` for the embedded upstream: collections and aliases over the engine.

Requests are converted field by field with ``GrpcToRest`` into the keyword arguments of
``QdrantLocal``'s methods. Settings the local engine has no use for (HNSW, WAL, optimizers,
quantization, strict mode, replication) are accepted and ignored, as the local engine does over
REST; cluster setup and shard keys are ``UNIMPLEMENTED``.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import collections_pb2 as pb
from qdrant_client.grpc import collections_service_pb2_grpc

from switchyard.proxy.embedded.grpc_service import Service, rpc, unsupported
from switchyard.proxy.errors import BadRequest


def create_kwargs(request: pb.CreateCollection) -> dict[str, Any]:
    """``QdrantLocal.create_collection`` keyword arguments for a ``CreateCollection``."""
    if not request.collection_name:
        raise BadRequest("collection_name: must not be empty")
    return _collection_kwargs(request, GrpcToRest.convert_vectors_config)


def update_kwargs(request: pb.UpdateCollection) -> dict[str, Any]:
    """``QdrantLocal.update_collection`` keyword arguments for an ``UpdateCollection``."""
    kwargs = _collection_kwargs(request, GrpcToRest.convert_vectors_config_diff)
    if request.HasField("params"):
        kwargs["collection_params"] = GrpcToRest.convert_collection_params_diff(request.params)
    return kwargs


def _collection_kwargs(request: Any, convert_vectors: Any) -> dict[str, Any]:
    """The fields create and update share; only the dense-vector config converts differently."""
    return {
        "collection_name": request.collection_name,
        "vectors_config": (
            convert_vectors(request.vectors_config) if request.HasField("vectors_config") else None
        ),
        "sparse_vectors_config": (
            GrpcToRest.convert_sparse_vector_config(request.sparse_vectors_config)
            if request.HasField("sparse_vectors_config")
            else None
        ),
        "metadata": GrpcToRest.convert_payload(request.metadata) if request.metadata else None,
        **_tuning(request),
    }


#: tuning fields (gRPC name, REST keyword, converter) of CreateCollection / UpdateCollection
_TUNING = (
    ("hnsw_config", "hnsw_config", GrpcToRest.convert_hnsw_config_diff),
    ("optimizers_config", "optimizers_config", GrpcToRest.convert_optimizers_config_diff),
    ("quantization_config", "quantization_config", GrpcToRest.convert_quantization_config),
    ("wal_config", "wal_config", GrpcToRest.convert_wal_config_diff),
    ("strict_mode_config", "strict_mode_config", GrpcToRest.convert_strict_mode_config),
    ("on_disk_payload", "on_disk_payload", bool),
)


def _tuning(request: Any) -> dict[str, Any]:
    """The tuning options a request sets (the Edge engine applies them, the local one ignores)."""
    fields = request.DESCRIPTOR.fields_by_name
    out: dict[str, Any] = {}
    for grpc_name, rest_name, convert in _TUNING:
        if grpc_name in fields and request.HasField(grpc_name):
            value = getattr(request, grpc_name)
            if grpc_name == "quantization_config" and request.DESCRIPTOR.name == "UpdateCollection":
                value = GrpcToRest.convert_quantization_config_diff(value)
            else:
                value = convert(value)
            out[rest_name] = value
    return out


class CollectionsService(Service, collections_service_pb2_grpc.CollectionsServicer):
    """``qdrant.Collections``; every method answers with Qdrant's response message and time."""

    @rpc(write=False)
    async def Get(self, request: pb.GetCollectionInfoRequest) -> pb.GetCollectionInfoResponse:
        info = await self.engine.call("get_collection", request.collection_name)
        return pb.GetCollectionInfoResponse(result=RestToGrpc.convert_collection_info(info))

    @rpc(write=False)
    async def List(self, request: pb.ListCollectionsRequest) -> pb.ListCollectionsResponse:
        found = await self.engine.call("get_collections")
        return pb.ListCollectionsResponse(
            collections=[pb.CollectionDescription(name=c.name) for c in found.collections]
        )

    @rpc(write=True)
    async def Create(self, request: pb.CreateCollection) -> pb.CollectionOperationResponse:
        result = await self.engine.call("create_collection", **create_kwargs(request))
        return pb.CollectionOperationResponse(result=bool(result))

    @rpc(write=True)
    async def Update(self, request: pb.UpdateCollection) -> pb.CollectionOperationResponse:
        await self.engine.call("update_collection", **update_kwargs(request))
        return pb.CollectionOperationResponse(result=True)

    @rpc(write=True)
    async def Delete(self, request: pb.DeleteCollection) -> pb.CollectionOperationResponse:
        result = await self.engine.call("delete_collection", request.collection_name)
        return pb.CollectionOperationResponse(result=bool(result))

    @rpc(write=True)
    async def UpdateAliases(self, request: pb.ChangeAliases) -> pb.CollectionOperationResponse:
        actions = [GrpcToRest.convert_alias_operations(action) for action in request.actions]
        await self.engine.call("update_collection_aliases", actions)
        return pb.CollectionOperationResponse(result=True)

    @rpc(write=False)
    async def ListCollectionAliases(
        self, request: pb.ListCollectionAliasesRequest
    ) -> pb.ListAliasesResponse:
        found = await self.engine.call("get_collection_aliases", request.collection_name)
        return _aliases_response(found.aliases)

    @rpc(write=False)
    async def ListAliases(self, request: pb.ListAliasesRequest) -> pb.ListAliasesResponse:
        found = await self.engine.call("get_aliases")
        return _aliases_response(found.aliases)

    @rpc(write=False)
    async def CollectionExists(
        self, request: pb.CollectionExistsRequest
    ) -> pb.CollectionExistsResponse:
        exists = await self.engine.call("collection_exists", request.collection_name)
        return pb.CollectionExistsResponse(result=pb.CollectionExists(exists=bool(exists)))

    CollectionClusterInfo = rpc(write=False)(unsupported("Collection cluster info"))
    UpdateCollectionClusterSetup = rpc(write=True)(unsupported("Cluster setup"))
    CreateShardKey = rpc(write=True)(unsupported("Shard keys"))
    DeleteShardKey = rpc(write=True)(unsupported("Shard keys"))
    ListShardKeys = rpc(write=False)(unsupported("Shard keys"))


def _aliases_response(aliases: list[Any]) -> pb.ListAliasesResponse:
    return pb.ListAliasesResponse(
        aliases=[RestToGrpc.convert_alias_description(a) for a in aliases]
    )

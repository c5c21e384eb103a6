"""The embedded upstream's gRPC front end: Qdrant's public gRPC services over :class:`Engine`.

:func:`add_services` registers ``qdrant.Qdrant``, ``qdrant.Collections``, ``qdrant.Points``,
``qdrant.Snapshots`` and ``grpc.health.v1.Health`` on a ``grpc.aio`` server. Each call is
converted to qdrant-client's REST models (``GrpcToRest``), run on the engine, and converted back
(``RestToGrpc``), so the gRPC and REST front ends share one engine and one set of semantics.

Auth, timing and error mapping live in :mod:`switchyard.proxy.embedded.grpc_service`. What the engines
cannot do (shard keys, cluster operations) is ``UNIMPLEMENTED`` with a message saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from qdrant_client.conversions.conversion import RestToGrpc
from qdrant_client.grpc import (
    collections_service_pb2_grpc,
    points_service_pb2_grpc,
    qdrant_pb2,
    qdrant_pb2_grpc,
    snapshots_service_pb2,
    snapshots_service_pb2_grpc,
)

from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.embedded.grpc_collections import CollectionsService
from switchyard.proxy.embedded.grpc_points import PointsService
from switchyard.proxy.embedded.grpc_service import Service, abort, metadata_dict, rpc
from switchyard.proxy.embedded import full_snapshots, snapshots
from switchyard.proxy.embedded.snapshots import SnapshotStore
from switchyard.proxy.errors import SwitchyardError, Unsupported

#: Server options matching Qdrant's public gRPC listener: tonic's services there are built with
#: ``max_decoding_message_size(usize::MAX)`` and keep tonic's unlimited encoding size, and
#: qdrant-client's channels set both limits to -1 as well. (``service.max_request_size_mb``,
#: 32 MiB by default, limits REST bodies only.)
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]

_HEALTH_SERVICE = "grpc.health.v1.Health"
_SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}

class QdrantService(Service, qdrant_pb2_grpc.QdrantServicer):
    """``qdrant.Qdrant``: the health check reporting title and version."""

    @rpc(write=False)
    async def HealthCheck(self, request: qdrant_pb2.HealthCheckRequest) -> Message:
        info = await self.engine.call("info")
        return RestToGrpc.convert_health_check_reply(info)


class SnapshotsService(Service, snapshots_service_pb2_grpc.SnapshotsServicer):
    """``qdrant.Snapshots``: collection snapshots create, list and delete (:mod:`snapshots`),
    and full-storage ones (:mod:`full_snapshots`); UNIMPLEMENTED without a snapshot store."""

    def __init__(self, engine: EngineSeam, keys: ApiKeys, store: SnapshotStore | None = None) -> None:
        super().__init__(engine, keys)
        self.store = store

    def _store(self) -> SnapshotStore:
        if self.store is None:
            raise Unsupported("Snapshots are not available in the embedded upstream")
        return self.store

    @rpc(write=True)
    async def Create(self, request: snapshots_service_pb2.CreateSnapshotRequest) -> Message:
        store = self._store()
        await self.engine.call("get_collection", request.collection_name)
        found = await snapshots.create(self.engine, store, request.collection_name)
        return snapshots_service_pb2.CreateSnapshotResponse(
            snapshot_description=RestToGrpc.convert_snapshot_description(found))

    @rpc(write=False)
    async def List(self, request: snapshots_service_pb2.ListSnapshotsRequest) -> Message:
        store = self._store()
        await self.engine.call("get_collection", request.collection_name)
        return snapshots_service_pb2.ListSnapshotsResponse(snapshot_descriptions=[
            RestToGrpc.convert_snapshot_description(d) for d in store.list(request.collection_name)])

    @rpc(write=True)
    async def Delete(self, request: snapshots_service_pb2.DeleteSnapshotRequest) -> Message:
        self._store().delete(request.collection_name, request.snapshot_name)
        return snapshots_service_pb2.DeleteSnapshotResponse()

    @rpc(write=True)
    async def CreateFull(self, request: snapshots_service_pb2.CreateFullSnapshotRequest) -> Message:
        found = await full_snapshots.create(self.engine, self._store())
        return snapshots_service_pb2.CreateSnapshotResponse(
            snapshot_description=RestToGrpc.convert_snapshot_description(found))

    @rpc(write=False)
    async def ListFull(self, request: snapshots_service_pb2.ListFullSnapshotsRequest) -> Message:
        return snapshots_service_pb2.ListSnapshotsResponse(snapshot_descriptions=[
            RestToGrpc.convert_snapshot_description(d) for d in self._store().list_full()])

    @rpc(write=True)
    async def DeleteFull(self, request: snapshots_service_pb2.DeleteFullSnapshotRequest) -> Message:
        self._store().delete_full(request.snapshot_name)
        return snapshots_service_pb2.DeleteSnapshotResponse()


def health_handler(keys: ApiKeys) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health`` without grpcio-health-checking: raw bytes in and out.

    Check answers SERVING for the server and any service name (Qdrant does the same); Watch
    sends SERVING once and ends the stream, so it never holds a call open. Like Qdrant, the
    health service sits behind the API-key check.
    """

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await _health_auth(keys, context)
        return _SERVING

    async def watch(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await _health_auth(keys, context)
        yield _SERVING

    return grpc.method_handlers_generic_handler(
        _HEALTH_SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(check),
            "Watch": grpc.unary_stream_rpc_method_handler(watch),
        },
    )


async def _health_auth(keys: ApiKeys, context: grpc.aio.ServicerContext) -> None:
    try:
        keys.check(metadata_dict(context.invocation_metadata()), write=False)
    except SwitchyardError as exc:
        await abort(context, exc)


def add_services(server: grpc.aio.Server, engine: EngineSeam, keys: ApiKeys,
                 snapshot_store: SnapshotStore | None = None) -> None:
    """Register Qdrant's public gRPC services over ``engine`` on ``server``.

    Build the server with :data:`SERVER_OPTIONS` to match Qdrant's message-size limits.
    """
    qdrant_pb2_grpc.add_QdrantServicer_to_server(QdrantService(engine, keys), server)
    collections_service_pb2_grpc.add_CollectionsServicer_to_server(
        CollectionsService(engine, keys), server
    )
    points_service_pb2_grpc.add_PointsServicer_to_server(PointsService(engine, keys), server)
    snapshots_service_pb2_grpc.add_SnapshotsServicer_to_server(
        SnapshotsService(engine, keys, snapshot_store), server
    )
    server.add_generic_rpc_handlers((health_handler(keys),))


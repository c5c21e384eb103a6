"""The admin API as gRPC service ``switchyard.v1.Admin`` (added to the proxy's gRPC server).

Each method (``List`` and the ``Watch`` stream included) checks the caller with
:func:`switchyard.proxy.admin.access.admin_verdict` (the key from metadata ``switchyard-admin-key`` or
``authorization: Bearer``, the peer from ``context.peer()``), calls :class:`~switchyard.proxy.admin.service.AdminService` and returns its JSON result as a
``Struct``. Errors abort with the error's gRPC status code and Qdrant-shaped message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc
from switchyard.proxy.admin.access import admin_verdict, grpc_peer_host, key_from_headers
from switchyard.proxy.admin.service import AdminService
from switchyard.proxy.errors import SwitchyardError


def _reply(result: Any) -> pb.Reply:
    s = struct_pb2.Struct()
    json_format.ParseDict(result, s)
    return pb.Reply(result=s)


def _opt(msg: Any, field: str) -> Any:
    return getattr(msg, field) if msg.HasField(field) else None


class _Servicer(pb_grpc.AdminServicer):
    def __init__(self, service: AdminService, admin_key: str | None, trust_loopback: bool) -> None:
        self.s, self.key, self.trust_loopback = service, admin_key, trust_loopback

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[[], Awaitable[Any]]) -> pb.Reply:
        try:
            self._auth(context)
            return _reply(await fn())
        except SwitchyardError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)
            raise  # abort raises; this satisfies the type checker

    def _auth(self, context: grpc.aio.ServicerContext) -> None:
        meta = {str(k): str(v) for k, v in (context.invocation_metadata() or ())}
        admin_verdict(grpc_peer_host(context.peer()), self.key, key_from_headers(meta),
                      trust_loopback=self.trust_loopback).raise_if_refused()

    async def ListModels(self, request: pb.Empty, context: Any) -> pb.Reply:
        return await self._call(context, self.s.models)

    async def ListBindings(self, request: pb.Empty, context: Any) -> pb.Reply:
        return await self._call(context, self.s.bindings)

    async def Plan(self, request: pb.PlanRequest, context: Any) -> pb.Reply:
        body = json_format.MessageToDict(request, preserving_proto_field_name=True)
        return await self._call(context, lambda: self.s.plan(body))

    async def List(self, request: pb.Empty, context: Any) -> pb.Reply:
        return await self._call(context, self.s.list)

    async def Get(self, request: pb.MigrationRef, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.get(request.id))

    async def Transition(self, request: pb.TransitionRequest, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.transition(
            request.id, request.name, _opt(request, "expected_rev"), _opt(request, "require_eval"),
            _opt(request, "max_age")))

    async def SetReadMode(self, request: pb.ReadModeRequest, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.read_mode(
            request.id, request.mode, _opt(request, "expected_rev")))

    async def Pause(self, request: pb.MigrationRef, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.pause(request.id))

    async def Resume(self, request: pb.MigrationRef, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.resume(request.id))

    async def Throttle(self, request: pb.ThrottleRequest, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.throttle(
            request.id, _opt(request, "points_per_second"), request.unthrottled))

    async def Verify(self, request: pb.VerifyRequest, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.verify(
            request.id, request.repair, _opt(request, "wait")))

    async def Cleanup(self, request: pb.CleanupRequest, context: Any) -> pb.Reply:
        return await self._call(context, lambda: self.s.cleanup(request.id, request.yes))

    async def Watch(self, request: pb.WatchRequest, context: Any) -> AsyncIterator[pb.Reply]:  # type: ignore[override]
        try:
            self._auth(context)
            async for status in self.s.watch(request.id, request.interval_seconds or 1.0):
                yield _reply(status)
        except SwitchyardError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)


def add_admin_service(server: grpc.aio.Server, service: AdminService, admin_key: str | None, *,
                      trust_loopback: bool = True) -> None:
    pb_grpc.add_AdminServicer_to_server(_Servicer(service, admin_key, trust_loopback), server)


class _HandlerCollector:
    """Stands in for a server to capture the generated registration's generic handler, so the
    proxy can consult the admin service *before* its catch-all pass-through handler."""

    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Registered handlers are only a lookup optimisation; the generic one serves all."""


def admin_handlers(service: AdminService, admin_key: str | None, *,
                   trust_loopback: bool = True) -> list[Any]:
    """The admin service as ``grpc.GenericRpcHandler``s, for ``ProxyServer.add_grpc_handlers``."""
    collector = _HandlerCollector()
    pb_grpc.add_AdminServicer_to_server(_Servicer(service, admin_key, trust_loopback), collector)
    return collector.handlers

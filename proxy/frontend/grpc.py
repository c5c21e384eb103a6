"""The gRPC front end: a generic handler that forwards every method of every service as bytes.

A ``grpc.aio`` server cannot accept a call without knowing its cardinality, so
:func:`streaming_methods` builds the set of server-streaming methods from qdrant-client's
service descriptors plus ``grpc.health.v1.Health/Watch``; every other method is forwarded as
unary-unary. Metadata goes both ways (initial and trailing), status codes and details are
preserved, and the client's deadline becomes the upstream call's timeout (unary calls without
a deadline get the configured upstream timeout; streams get none, a Watch may last forever).

Calls an :class:`~switchyard.proxy.wire.Interceptor` wants (unary only) are handed to it with
:meth:`GrpcFrontend.forward`; a :class:`~switchyard.proxy.errors.SwitchyardError` becomes its gRPC code.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Iterable

import grpc
import grpc.aio

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.frontend import metrics
from switchyard.proxy.admin.access import grpc_peer_host
from switchyard.proxy.frontend.headers import redact
from switchyard.proxy.intercept.routes import grpc_kind
from switchyard.proxy.upstream.grpc_client import GrpcUpstream
from switchyard.proxy.wire import GrpcCall, GrpcReply, Headers, Interceptor

log = logging.getLogger("switchyard.proxy.grpc")

_QDRANT_SERVICE_MODULES = ("collections_service_pb2", "points_service_pb2",
                           "snapshots_service_pb2", "qdrant_pb2")
#: Server-streaming methods not described by qdrant-client (the standard health service).
_KNOWN_STREAMING = frozenset({"/grpc.health.v1.Health/Watch"})
#: Metadata the gRPC runtime sets itself; forwarding it would be rejected or duplicated.
_RESERVED = ("grpc-", ":")
_RESERVED_NAMES = frozenset({"user-agent", "content-type", "te", "host"})
_HANDLER_CACHE_LIMIT = 512


def streaming_methods() -> frozenset[str]:
    """Full paths (``/pkg.Service/Method``) of every server-streaming method known."""
    found = set(_KNOWN_STREAMING)
    for name in _QDRANT_SERVICE_MODULES:
        module = importlib.import_module(f"qdrant_client.grpc.{name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.server_streaming and not method.client_streaming:
                    found.add(f"/{service.full_name}/{method.name}")
    return frozenset(found)


def forwardable(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[tuple[str, str | bytes], ...]:
    """Client metadata to pass upstream: everything but what the gRPC runtime owns."""
    if not metadata:
        return ()
    return tuple((k, v) for k, v in metadata
                 if not k.startswith(_RESERVED) and k not in _RESERVED_NAMES)


def to_grpc_metadata(headers: Headers) -> tuple[tuple[str, str | bytes], ...]:
    """``wire.Headers`` back to gRPC metadata: ``-bin`` values are bytes again."""
    return tuple((k, v.encode("latin-1") if k.endswith("-bin") else v) for k, v in headers)


def _as_headers(metadata: Iterable[tuple[str, str | bytes]]) -> Headers:
    return tuple((k, v if isinstance(v, str) else v.decode("latin-1")) for k, v in metadata)


class GrpcFrontend(grpc.GenericRpcHandler):
    """Answers every method; see the module docstring."""

    def __init__(self, upstream: GrpcUpstream, interceptor: Interceptor | None = None, *,
                 upstream_timeout: float = 60.0) -> None:
        self.upstream = upstream
        self.interceptor = interceptor
        self.upstream_timeout = upstream_timeout
        self.streaming = streaming_methods()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._make_handler(method)
            if len(self._handlers) < _HANDLER_CACHE_LIMIT:
                self._handlers[method] = handler
        return handler

    def _make_handler(self, method: str) -> grpc.RpcMethodHandler:
        if method in self.streaming:
            async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                async for message in self._stream(method, request, context):
                    yield message
            return grpc.unary_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
            return await self._unary(method, request, context)
        return grpc.unary_unary_rpc_method_handler(unary)

    # -- unary

    async def _unary(self, method: str, request: bytes,
                     context: grpc.aio.ServicerContext) -> bytes | None:
        started = time.perf_counter()
        metadata = forwardable(context.invocation_metadata())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("gRPC %s metadata=%s", method, redact(_as_headers(metadata)))
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None else self.upstream_timeout
        metrics.GRPC_IN_FLIGHT.inc()
        kind, code = metrics.PASSTHROUGH, ""
        try:
            interceptor = self.interceptor
            if interceptor is not None and interceptor.grpc_wants(method):  # state-dependent
                metrics.GRPC_INTERCEPTED.inc()
                kind = grpc_kind(method) or metrics.OTHER
                call = GrpcCall(method, request, _as_headers(metadata), timeout, grpc_peer_host(context.peer()))
                try:
                    reply = await interceptor.grpc(call, self.forward)
                except SwitchyardError as err:
                    log.info("gRPC %s intercepted: %s", method, err)
                    code = err.grpc_code
                    await context.abort(grpc.StatusCode[err.grpc_code], err.message)
                code = reply.code
                return await _send_reply(context, reply)
            metrics.GRPC_PASSTHROUGH.inc()
            response, code = await self._passthrough(method, request, metadata, timeout, context)
            return response
        finally:
            metrics.GRPC_IN_FLIGHT.dec()
            metrics.grpc_done(kind, code or _aborted_code(context), started)

    async def _passthrough(self, method: str, request: bytes, metadata: tuple[tuple[str, str | bytes], ...],
                           timeout: float, context: grpc.aio.ServicerContext) -> tuple[bytes | None, str]:
        sent = time.perf_counter()
        rpc = self.upstream.unary(method)(request, metadata=metadata or None, timeout=timeout)
        try:
            response: bytes = await rpc
        except grpc.aio.AioRpcError as exc:
            metrics.GRPC_UPSTREAM_PASSTHROUGH(time.perf_counter() - sent)
            await _relay_error(context, exc)
            return None, exc.code().name
        except BaseException:
            rpc.cancel()
            raise
        metrics.GRPC_UPSTREAM_PASSTHROUGH(time.perf_counter() - sent)
        initial = await rpc.initial_metadata()
        if initial:
            await context.send_initial_metadata(tuple(initial))
        trailing = await rpc.trailing_metadata()
        if trailing:
            context.set_trailing_metadata(tuple(trailing))
        return response, "OK"

    async def forward(self, call: GrpcCall) -> GrpcReply:
        """The interceptor's ``forward``: one unary call upstream on the shared channel."""
        sent = time.perf_counter()
        try:
            return await self.upstream.call(
                GrpcCall(call.method, call.request, to_grpc_metadata(call.metadata), call.timeout))  # type: ignore[arg-type]
        finally:
            metrics.GRPC_UPSTREAM_INTERCEPTED(time.perf_counter() - sent)

    # -- server streaming

    async def _stream(self, method: str, request: bytes,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        metadata = forwardable(context.invocation_metadata())
        metrics.GRPC_PASSTHROUGH.inc()
        rpc = self.upstream.stream(method)(request, metadata=metadata or None,
                                           timeout=context.time_remaining())
        try:
            initial = await rpc.initial_metadata()
            if initial:
                await context.send_initial_metadata(tuple(initial))
            async for message in rpc:
                yield message
            trailing = await rpc.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
        except grpc.aio.AioRpcError as exc:
            await _relay_error(context, exc)
        finally:
            rpc.cancel()


def _aborted_code(context: grpc.aio.ServicerContext) -> str:
    """The code a call ended with when it did not return (aborted, or cancelled by the client)."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - only for the metric's label
        return "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else "CANCELLED"


async def _relay_error(context: grpc.aio.ServicerContext, exc: grpc.aio.AioRpcError) -> None:
    """End the client's call with the upstream's code, details and trailing metadata."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        metrics.GRPC_UPSTREAM_ERRORS.inc()
    await context.abort(code, exc.details() or "", tuple(exc.trailing_metadata() or ()))


async def _send_reply(context: grpc.aio.ServicerContext, reply: GrpcReply) -> bytes | None:
    """Send an interceptor's reply: metadata, then the message or the error status."""
    if reply.initial_metadata:
        await context.send_initial_metadata(to_grpc_metadata(reply.initial_metadata))
    if not reply.ok:
        await context.abort(grpc.StatusCode[reply.code], reply.details,
                            to_grpc_metadata(reply.trailing_metadata))
    if reply.trailing_metadata:
        context.set_trailing_metadata(to_grpc_metadata(reply.trailing_metadata))
    return reply.response

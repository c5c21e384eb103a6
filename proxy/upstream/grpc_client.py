"""The upstream gRPC channel: one ``grpc.aio`` channel, raw-bytes multicallables per method.

The channel is created once and multiplexes every call over HTTP/2. Messages are never
decoded here (``None`` serializers): the front end forwards bytes. Multicallables are cached
per method path (bounded, since method names come from clients). Message-size limits match the
server side (:data:`MAX_MESSAGE_BYTES`), above Qdrant's own defaults, so the proxy is never
the component that refuses a large batch.
"""

from __future__ import annotations

import grpc
import grpc.aio

from switchyard.proxy.wire import GrpcCall, GrpcReply, Headers

#: Receive/send limit on both the proxy's server and its channel (Qdrant allows up to 32 MiB
#: requests by default, configurable; 64 MiB leaves headroom).
MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
)
_CACHE_LIMIT = 512


class GrpcUpstream:
    """Owns the channel to the upstream's gRPC port."""

    def __init__(self, address: str, *, tls: bool = False, ca_file: str | None = None) -> None:
        self.address = address
        if tls:
            root = None
            if ca_file is not None:
                with open(ca_file, "rb") as fh:
                    root = fh.read()
            creds = grpc.ssl_channel_credentials(root_certificates=root)
            self.channel = grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._unary: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._stream: dict[str, grpc.aio.UnaryStreamMultiCallable] = {}

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        mc = self._unary.get(method)
        if mc is None:
            mc = self.channel.unary_unary(method)
            if len(self._unary) < _CACHE_LIMIT:
                self._unary[method] = mc
        return mc

    def stream(self, method: str) -> grpc.aio.UnaryStreamMultiCallable:
        mc = self._stream.get(method)
        if mc is None:
            mc = self.channel.unary_stream(method)
            if len(self._stream) < _CACHE_LIMIT:
                self._stream[method] = mc
        return mc

    async def call(self, call: GrpcCall) -> GrpcReply:
        """One unary call as a :class:`GrpcReply` (never raises for an RPC error)."""
        rpc = self.unary(call.method)(call.request, metadata=call.metadata or None,
                                      timeout=call.timeout)
        try:
            response = await rpc
        except grpc.aio.AioRpcError as exc:
            return GrpcReply(None, exc.code().name, exc.details() or "",
                             _pairs(exc.initial_metadata()), _pairs(exc.trailing_metadata()))
        except BaseException:
            rpc.cancel()
            raise
        return GrpcReply(response, "OK", "", _pairs(await rpc.initial_metadata()),
                         _pairs(await rpc.trailing_metadata()))

    async def close(self, grace: float | None = None) -> None:
        await self.channel.close(grace)


def _pairs(metadata: grpc.aio.Metadata | None) -> Headers:
    if not metadata:
        return ()
    return tuple((str(k), v if isinstance(v, str) else v.decode("latin-1")) for k, v in metadata)

"""Protocol-neutral envelopes for calls the proxy intercepts, and the interceptor seam.

The front ends (``switchyard.proxy.frontend.rest`` on aiohttp, ``switchyard.proxy.frontend.grpc`` on grpcio) forward
every call byte for byte, except the ones an :class:`Interceptor` says it ``wants``. For those,
the front end reads the whole request into a :class:`RestCall` / :class:`GrpcCall` and hands it
to the interceptor together with a ``forward`` function that sends a (possibly rewritten) call
upstream with the client's own credentials and returns the upstream's reply. The interceptor
(codec -> ``Operation`` -> ``plan`` -> executor) may call ``forward`` zero, one or many times,
for other collections too, and returns the reply the client gets.

Nothing here imports aiohttp or grpc: headers and metadata are plain tuples, status codes of
gRPC are ``grpc.StatusCode`` member names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

#: Header pairs, lower-case names, in order; duplicates allowed (HTTP and gRPC metadata alike).
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RestCall:
    """One REST request: ``path`` without the query string, ``query`` without the ``?``."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    #: The client socket's host (never a header the client writes); ``None`` when unknown.
    peer: str | None = None

    def with_body(self, body: bytes) -> RestCall:
        return replace(self, body=body)

    def with_path(self, path: str) -> RestCall:
        return replace(self, path=path)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class RestReply:
    """One REST response; ``headers`` exclude hop-by-hop and length/encoding headers."""

    status: int
    headers: Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """One unary gRPC request: ``method`` is the full path, e.g. ``/qdrant.Points/Upsert``.

    ``timeout`` is the seconds left of the client's deadline (``None``: no deadline).
    """

    method: str
    request: bytes
    metadata: Headers
    timeout: float | None = None
    #: The client's host from the transport (``grpc_peer_host``); ``None`` when unknown.
    peer: str | None = None

    def with_request(self, request: bytes) -> GrpcCall:
        return replace(self, request=request)

    def with_method(self, method: str) -> GrpcCall:
        return replace(self, method=method)


@dataclass(frozen=True, slots=True)
class GrpcReply:
    """A unary gRPC outcome: ``code`` is a ``grpc.StatusCode`` member name (``"OK"`` on success)."""

    response: bytes | None
    code: str = "OK"
    details: str = ""
    initial_metadata: Headers = ()
    trailing_metadata: Headers = field(default=())

    @property
    def ok(self) -> bool:
        return self.code == "OK"


RestForward = Callable[[RestCall], Awaitable[RestReply]]
GrpcForward = Callable[[GrpcCall], Awaitable[GrpcReply]]


class Interceptor(Protocol):
    """What the front ends consult. ``*_wants`` must be cheap and pure: they run on every call."""

    def rest_wants(self, method: str, path: str) -> bool: ...

    async def rest(self, call: RestCall, forward: RestForward) -> RestReply: ...

    def grpc_wants(self, method: str) -> bool: ...

    async def grpc(self, call: GrpcCall, forward: GrpcForward) -> GrpcReply: ...

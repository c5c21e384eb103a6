"""The REST front end: forwards every request byte for byte; own routes on a small aiohttp app.

Every method and path goes upstream with its query string and headers (hop-by-hop removed,
``Host`` rewritten), and the upstream's status, reason, headers and body come back. Bodies
are streamed both ways; only bodies up to ``_BUFFER_LIMIT`` with a known length are buffered,
so a 200 MiB snapshot never sits in memory. Calls an :class:`~switchyard.proxy.wire.Interceptor` wants are
read whole (up to ``max_body_size``, else 413) and handed to it with :meth:`RestFrontend.forward`.

Requests arrive from :mod:`switchyard.proxy.frontend.http_protocol` (httptools on ``asyncio.Protocol``);
:meth:`RestFrontend.handle` is the one handler. ``/switchyard/...`` is the proxy's own
namespace and is never forwarded upstream: those requests are relayed, with the same code, to
an in-process aiohttp application (:meth:`RestFrontend.build_app`: ``/switchyard/healthz``,
``/switchyard/metrics``, the admin API, a Qdrant-shaped 404 for the rest) over a socket pair,
so own routes are written as ordinary aiohttp handlers. **Add own routes in ``build_app``.**
The client's address reaches them as ``request.remote`` (header :data:`PEER_HEADER`, set by
the front end and never taken from the client). Qdrant's own ``/metrics`` passes through.
A client that goes away cancels its handler, which closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus

from aiohttp import web

from switchyard.proxy.errors import SwitchyardError, UpstreamError
from switchyard.proxy.frontend import metrics
from switchyard.proxy.frontend.metrics import Observer
from switchyard.proxy.frontend.headers import redact, request_headers, response_headers
from switchyard.proxy.frontend.http_protocol import HttpConnection, HttpRequest
from switchyard.proxy.intercept.routes import rest_target
from switchyard.proxy.readiness import NotReady, Readiness
from switchyard.proxy.upstream.rest_client import Connector, RestUpstream, Streams
from switchyard.proxy.upstream.rest_response import UpstreamResponse
from switchyard.proxy.wire import Interceptor, RestCall, RestReply

log = logging.getLogger("switchyard.proxy.rest")

#: Requests with a known length up to this size are read whole and sent in one write.
_BUFFER_LIMIT = 256 << 10
#: Responses with a known length up to this size are read whole and sent in one write.
_RESPONSE_BUFFER_LIMIT = 1 << 20
NAMESPACE = "/switchyard/"
_NAMESPACE = NAMESPACE.encode()
#: Carries the client's address to the own-routes app; a client's own value is dropped.
PEER_HEADER = "x-switchyard-peer"
_PEER = PEER_HEADER.encode()
_NO_BODY = frozenset({204, 304})
_JSON = b"Content-Type: application/json\r\n"


def _status_line(status: int, reason: bytes) -> bytes:
    if not reason:
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b"Unknown"
    return b"HTTP/1.1 %d %b\r\n" % (status, reason)


def _headers_bytes(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join([n + b": " + v + b"\r\n" for n, v in headers])


def _connection_header(request: HttpRequest, conn: HttpConnection) -> bytes:
    if not request.keep_alive or conn.server.stopping:
        request.keep_alive = False
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if request.http10 else b""


def write_error(conn: HttpConnection, request: HttpRequest, err: SwitchyardError, started: float) -> int:
    """A proxy-made error in Qdrant's shape, with Qdrant's status code."""
    body = err.to_json(time.perf_counter() - started)
    conn.write(b"".join((_status_line(err.http_status, b""), _JSON, _connection_header(request, conn),
                         b"Content-Length: %d\r\n\r\n" % len(body), body)))
    return err.http_status


class RestFrontend:
    """The REST handler; holds the upstream client, the own-routes client and the interceptor."""

    def __init__(self, upstream: RestUpstream, interceptor: Interceptor | None = None, *,
                 max_body_size: int = 32 << 20) -> None:
        self.upstream = upstream
        self.interceptor = interceptor
        self.max_body_size = max_body_size
        self.ready = True
        self.readiness: Readiness | None = None  # set by ProxyServer: /switchyard/readyz
        self.own: RestUpstream | None = None  # set by switchyard.proxy.frontend.server once the app runs

    # -- the own-routes application

    def build_app(self, extra_routes: Iterable[web.AbstractRouteDef] = ()) -> web.Application:
        """Own routes (healthz, metrics, the admin API); never reached by pass-through calls."""
        app = web.Application(client_max_size=self.max_body_size, middlewares=[_peer_middleware])
        app.router.add_get("/switchyard/healthz", self.healthz)
        app.router.add_get("/switchyard/readyz", self.readyz)
        app.router.add_get("/switchyard/metrics", self.metrics)
        routes = list(extra_routes)
        for route in routes:
            path = getattr(route, "path", NAMESPACE)
            if not str(path).startswith(NAMESPACE):
                raise ValueError(f"extra routes must live under {NAMESPACE}: {path}")
        app.router.add_routes(routes)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok" if self.ready else "stopping"},
                                 status=200 if self.ready else 503)

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness (``switchyard.proxy.readiness``): 200, or 503 in Qdrant's error shape with the reason."""
        started = time.perf_counter()
        reason = "the proxy is stopping" if not self.ready else (
            await self.readiness.check() if self.readiness is not None else None)
        if reason is None:
            return web.json_response({"status": "ok"})
        err = NotReady(reason)
        return web.Response(status=err.http_status, body=err.to_json(time.perf_counter() - started),
                            content_type="application/json")

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def not_found(self, request: web.Request) -> web.Response:
        body = b'{"status":{"error":"Not found: no Switchyard route ' + request.path.encode() + b'"},"time":0.0}'
        return web.Response(status=404, body=body, content_type="application/json")

    # -- the one handler

    async def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        started = time.perf_counter()
        target = request.target
        if log.isEnabledFor(logging.DEBUG):
            log.debug("REST %s %s headers=%s", request.method.decode(), target.decode("latin-1"),
                      redact((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers))
        if target.startswith(_NAMESPACE) and self.own is not None:
            status = await self._relay(request, conn, self.own, self._own_headers(request), started,
                                       metrics.REST_UPSTREAM_ADMIN)
            metrics.rest_done(metrics.ADMIN, status, started)
            return
        interceptor = self.interceptor
        if interceptor is not None:
            path = target.partition(b"?")[0].decode("utf-8", "surrogateescape")
            method = request.method.decode()
            if interceptor.rest_wants(method, path):
                metrics.REST_INTERCEPTED.inc()
                metrics.REST_IN_FLIGHT.inc()
                try:
                    status = await self._intercept(interceptor, request, conn, method, started)
                finally:
                    metrics.REST_IN_FLIGHT.dec()
                target_info = rest_target(method, path)
                metrics.rest_done(target_info[2] if target_info else metrics.OTHER, status, started)
                return
        metrics.REST_PASSTHROUGH.inc()
        metrics.REST_IN_FLIGHT.inc()
        try:
            status = await self._relay(request, conn, self.upstream, request_headers(request.headers),
                                       started, metrics.REST_UPSTREAM_PASSTHROUGH)
        finally:
            metrics.REST_IN_FLIGHT.dec()
        metrics.rest_done(metrics.PASSTHROUGH, status, started)

    def _own_headers(self, request: HttpRequest) -> list[tuple[bytes, bytes]]:
        headers = [(n, v) for n, v in request_headers(request.headers) if n.lower() != _PEER]
        host = next((v for n, v in request.headers if n.lower() == b"host"), b"switchyard")
        return [(b"Host", host), (_PEER, request.peer.encode()), *headers]

    # -- relaying (pass-through and own routes)

    async def _relay(self, request: HttpRequest, conn: HttpConnection, upstream: RestUpstream,
                     headers: list[tuple[bytes, bytes]], started: float,
                     upstream_timer: Observer) -> int:
        length = request.length
        body: bytes | object | None
        if request.chunked:
            body, length = request.chunks(), None
        elif length is None:
            body = None
        elif length <= _BUFFER_LIMIT:
            body = await request.read_all()
        else:
            body = request.chunks()
        sent = time.perf_counter()
        try:
            response = await upstream.send(request.method, request.target, headers, body, length)  # type: ignore[arg-type]
        except SwitchyardError as err:
            metrics.REST_UPSTREAM_ERRORS.inc()
            log.warning("REST %s %s: %s", request.method.decode(),
                        request.target.partition(b"?")[0].decode("latin-1"), err)
            return write_error(conn, request, err, started)
        try:
            await self._respond(request, conn, response, sent, upstream_timer)
        finally:
            response.release()
        return response.status

    async def _respond(self, request: HttpRequest, conn: HttpConnection, response: UpstreamResponse,
                       sent: float, upstream_timer: Observer) -> None:
        status = response.status
        head = [_status_line(status, response.reason), _headers_bytes(response_headers(response.headers))]
        length = response.length
        if request.method == b"HEAD" or status == 304:  # the upstream's declared length, no body
            head += [b"Content-Length: " + v + b"\r\n" for n, v in response.headers
                     if n.lower() == b"content-length"]
            length = 0
        elif status in _NO_BODY or status < 200:
            length = 0
        elif length is not None and length <= _RESPONSE_BUFFER_LIMIT and not response.chunked:
            try:
                body = await response.read_all() if length else b""
            except UpstreamError as err:
                metrics.REST_UPSTREAM_ERRORS.inc()
                write_error(conn, request, err, time.perf_counter())
                return
            upstream_timer(time.perf_counter() - sent)
            head += [_connection_header(request, conn), b"Content-Length: %d\r\n\r\n" % length, body]
            conn.write(b"".join(head))
            return
        if length == 0:
            upstream_timer(time.perf_counter() - sent)
            head += [_connection_header(request, conn), b"\r\n"]
            conn.write(b"".join(head))
            return
        await self._stream(request, conn, response, head, length)
        upstream_timer(time.perf_counter() - sent)

    async def _stream(self, request: HttpRequest, conn: HttpConnection, response: UpstreamResponse,
                      head: list[bytes], length: int | None) -> None:
        """A large, chunked or close-delimited response, with back-pressure on the client."""
        chunked = length is None and not request.http10
        if length is not None:
            head.append(b"Content-Length: %d\r\n" % length)
        elif chunked:
            head.append(b"Transfer-Encoding: chunked\r\n")
        else:
            request.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        head += [_connection_header(request, conn), b"\r\n"]
        conn.write(b"".join(head))
        try:
            async for chunk in response.chunks():
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await conn.drain()
        except UpstreamError as err:  # mid-body: the client sees a cut connection, as from Qdrant
            metrics.REST_UPSTREAM_ERRORS.inc()
            log.warning("REST %s: upstream failed mid-body: %s", request.method.decode(), err)
            request.keep_alive = False
            conn.abort()
            return
        if chunked:
            conn.write(b"0\r\n\r\n")

    # -- interception

    async def _intercept(self, interceptor: Interceptor, request: HttpRequest, conn: HttpConnection,
                         method: str, started: float) -> int:
        raw_path, _, query = request.target.decode("utf-8", "surrogateescape").partition("?")
        try:
            body = await request.read_all(self.max_body_size)
            headers = tuple((n.decode("latin-1").lower(), v.decode("latin-1"))
                            for n, v in request_headers(request.headers))
            reply = await interceptor.rest(RestCall(method, raw_path, query, headers, body, conn.peer or None),
                                           self.forward)
        except SwitchyardError as err:
            if isinstance(err, UpstreamError):
                metrics.REST_UPSTREAM_ERRORS.inc()
            log.info("REST %s %s intercepted: %s", method, raw_path, err)
            return write_error(conn, request, err, started)
        except Exception as exc:  # a bug on the interception path: 500 in Qdrant's shape, logged
            log.exception("REST %s %s intercepted: unexpected error", method, raw_path)
            return write_error(conn, request, _internal(exc), started)
        out = [_status_line(reply.status, b"")]
        out += [k.encode("latin-1") + b": " + v.encode("latin-1") + b"\r\n" for k, v in reply.headers]
        out += [_connection_header(request, conn), b"Content-Length: %d\r\n\r\n" % len(reply.body),
                reply.body]
        conn.write(b"".join(out))
        return reply.status

    async def forward(self, call: RestCall) -> RestReply:
        """The interceptor's ``forward``: one buffered call upstream over the pool."""
        sent = time.perf_counter()
        try:
            return await self.upstream.request(call)
        finally:
            metrics.REST_UPSTREAM_INTERCEPTED(time.perf_counter() - sent)


def _internal(exc: Exception) -> SwitchyardError:
    """The client sees the error's kind only (its text may hold request data)."""
    err = SwitchyardError(f"unexpected {type(exc).__name__} in Switchyard")
    err.__cause__ = exc
    return err


@web.middleware
async def _peer_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Own routes see the real client's address as ``request.remote`` (not the socket pair's)."""
    peer = request.headers.get(PEER_HEADER)
    return await handler(request.clone(remote=peer) if peer is not None else request)


def socketpair_connector(factory: Callable[[], asyncio.Protocol], limit: int) -> Connector:
    """Connections to an in-process server (``factory`` builds its protocol) over socket pairs."""
    async def connect() -> Streams:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        await loop.connect_accepted_socket(factory, theirs)
        return await asyncio.open_connection(sock=ours, limit=limit)
    return connect

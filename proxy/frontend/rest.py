"""The REST front end: an aiohttp server that forwards every request byte for byte.

Every method and path goes upstream with its query string and headers (hop-by-hop removed,
``Host`` rewritten), and the upstream's status, reason, headers and body come back. Bodies
are streamed both ways; only bodies up to ``_BUFFER_LIMIT`` with a known length are buffered,
so a 200 MiB snapshot never sits in memory. Calls an :class:`~proxy.wire.Interceptor` wants are
read whole (up to ``max_body_size``) and handed to it with :meth:`RestFrontend.forward`.

``/switchyard/...`` is the proxy's own namespace and is never forwarded: ``/switchyard/healthz``,
``/switchyard/metrics`` and whatever routes the app mounts there (the admin API). Qdrant's own
``/metrics`` passes through. The server runs with ``handler_cancellation``: a client that goes
away cancels its handler, which closes the upstream connection, so the upstream sees it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from proxy.errors import PayloadTooLarge, SwitchyardError, UpstreamError
from proxy.frontend import metrics
from proxy.frontend.headers import redact, request_headers, response_headers
from proxy.upstream.rest_client import RestUpstream, UpstreamResponse
from proxy.wire import Interceptor, RestCall, RestReply

log = logging.getLogger("switchyard.proxy.rest")

#: Requests with a known length up to this size are read whole and sent in one write.
_BUFFER_LIMIT = 256 << 10
#: Responses with a known length up to this size are read whole and sent as one Response.
_RESPONSE_BUFFER_LIMIT = 1 << 20
_STREAM_CHUNK = 256 << 10
NAMESPACE = "/switchyard/"


def _json_response(err: SwitchyardError, started: float) -> web.Response:
    return web.Response(status=err.http_status, body=err.to_json(time.perf_counter() - started),
                        content_type="application/json")


class RestFrontend:
    """Builds the aiohttp application; holds the upstream client and optional interceptor."""

    def __init__(self, upstream: RestUpstream, interceptor: Interceptor | None = None, *,
                 max_body_size: int = 32 << 20) -> None:
        self.upstream = upstream
        self.interceptor = interceptor
        self.max_body_size = max_body_size
        self.ready = True

    def build_app(self, extra_routes: Iterable[web.AbstractRouteDef] = ()) -> web.Application:
        """The application: own routes first (they win), then the catch-all forwarder."""
        app = web.Application(client_max_size=self.max_body_size)
        app.router.add_get("/switchyard/healthz", self.healthz)
        app.router.add_get("/switchyard/metrics", self.metrics)
        for route in extra_routes:
            path = getattr(route, "path", NAMESPACE)
            if not str(path).startswith(NAMESPACE):
                raise ValueError(f"extra routes must live under {NAMESPACE}: {path}")
        app.router.add_routes(list(extra_routes))
        app.router.add_route("*", "/switchyard/{tail:.*}", self.not_found)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # -- own routes

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok" if self.ready else "stopping"},
                                 status=200 if self.ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def not_found(self, request: web.Request) -> web.Response:
        body = b'{"status":{"error":"Not found: no Switchyard route ' + request.path.encode() + b'"},"time":0.0}'
        return web.Response(status=404, body=body, content_type="application/json")

    # -- forwarding

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        raw_path = request.raw_path
        if log.isEnabledFor(logging.DEBUG):
            log.debug("REST %s %s headers=%s", request.method, raw_path,
                      redact((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers))
        metrics.REST_IN_FLIGHT.inc()
        try:
            interceptor = self.interceptor
            if interceptor is not None:
                path = raw_path.partition("?")[0]
                if interceptor.rest_wants(request.method, path):
                    metrics.REST_INTERCEPTED.inc()
                    return await self._intercept(interceptor, request, started)
            metrics.REST_PASSTHROUGH.inc()
            return await self._passthrough(request, raw_path, started)
        finally:
            metrics.REST_IN_FLIGHT.dec()

    async def _passthrough(self, request: web.Request, raw_path: str,
                           started: float) -> web.StreamResponse:
        body, length = await self._request_body(request)
        try:
            response = await self.upstream.send(
                request.method.encode(), raw_path.encode(), request_headers(request.raw_headers),
                body, length)
        except SwitchyardError as err:
            metrics.REST_UPSTREAM_ERRORS.inc()
            log.warning("REST %s %s: %s", request.method, raw_path.partition("?")[0], err)
            return _json_response(err, started)
        try:
            return await self._respond(request, response)
        finally:
            response.release()

    async def _request_body(self, request: web.Request) -> tuple[bytes | AsyncIterator[bytes] | None, int | None]:
        length = request.content_length
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return _stream(request), None
        if length is None:
            return None, None
        if length <= _BUFFER_LIMIT:
            return await request.read(), length
        return _stream(request), length

    async def _respond(self, request: web.Request, response: UpstreamResponse) -> web.StreamResponse:
        headers = CIMultiDict(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in response_headers(response.headers))
        reason = response.reason.decode("latin-1") or None
        length = response.length
        if length is not None and length <= _RESPONSE_BUFFER_LIMIT and not response.chunked:
            try:
                body = await response.read_all()
            except UpstreamError as err:
                metrics.REST_UPSTREAM_ERRORS.inc()
                return _json_response(err, time.perf_counter())
            if request.method == "HEAD":
                return await _head_response(request, response, reason, headers)
            return web.Response(status=response.status, reason=reason, headers=headers, body=body)
        out = web.StreamResponse(status=response.status, reason=reason, headers=headers)
        if length is not None:
            out.content_length = length
        await out.prepare(request)
        async for chunk in response.chunks():  # an UpstreamError here aborts the client connection
            await out.write(chunk)
        await out.write_eof()
        return out

    async def _intercept(self, interceptor: Interceptor, request: web.Request,
                         started: float) -> web.StreamResponse:
        raw_path, _, query = request.raw_path.partition("?")
        try:
            body = await _read_limited(request, self.max_body_size)
            headers = tuple((n.decode("latin-1").lower(), v.decode("latin-1"))
                            for n, v in request_headers(request.raw_headers))
            call = RestCall(request.method, raw_path, query, headers, body)
            reply = await interceptor.rest(call, self.forward)
        except SwitchyardError as err:
            if isinstance(err, UpstreamError):
                metrics.REST_UPSTREAM_ERRORS.inc()
            log.info("REST %s %s intercepted: %s", request.method, raw_path, err)
            return _json_response(err, started)
        return web.Response(status=reply.status, headers=CIMultiDict(reply.headers), body=reply.body)

    async def forward(self, call: RestCall) -> RestReply:
        """The interceptor's ``forward``: one buffered call upstream over the pool."""
        return await self.upstream.request(call)


async def _head_response(request: web.Request, response: UpstreamResponse, reason: str | None,
                         headers: CIMultiDict[str]) -> web.StreamResponse:
    """A HEAD reply keeps the upstream's declared Content-Length but has no body."""
    out = web.StreamResponse(status=response.status, reason=reason, headers=headers)
    for name, value in response.headers:
        if name.lower() == b"content-length" and value.isdigit():
            out.content_length = int(value)
    await out.prepare(request)
    await out.write_eof()
    return out


async def _stream(request: web.Request) -> AsyncIterator[bytes]:
    """The client's body as it arrives (aiohttp de-chunks a chunked request for us)."""
    while chunk := await request.content.read(_STREAM_CHUNK):
        yield chunk


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit}")
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_STREAM_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)

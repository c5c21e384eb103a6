"""HTTP/1.1 server connections on ``asyncio.Protocol`` + ``httptools`` (the proxy's REST listener).

Why not aiohttp's server: measured on the pass-through, aiohttp's request/response objects,
per-request task and timers cost more than the relay itself (docs/proxy.md, "Overhead"). This
module does only what a relay needs: parse request heads and bodies with httptools (llhttp),
hand each request to one ``handler(request, connection)`` coroutine, write raw response bytes.

Contract:

* One serving task per connection runs the requests of that connection in order (pipelined
  requests wait their turn); a client that disconnects cancels it, so the handler's upstream
  call is cancelled too.
* :class:`HttpRequest` bodies are read with :meth:`~HttpRequest.read_all` (bounded) or
  :meth:`~HttpRequest.chunks`; ``Expect: 100-continue`` is answered when the body is first
  read. Reading stops (``pause_reading``) while more than ``_BODY_HIGH_WATER`` bytes wait.
  A body the handler did not read is discarded before the next request.
* Connection hygiene: a request head must be complete within ``header_timeout`` seconds of
  its first byte (or of the connection's start), and a keep-alive connection idle for
  ``idle_timeout`` is closed. Both are a float deadline per connection checked by one sweep
  per listener (no timer object per request).
* :meth:`HttpServer.close` stops accepting, closes idle connections, lets busy ones finish
  their current request (answered with ``Connection: close``) for up to ``grace`` seconds,
  then aborts what is left.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httptools

from switchyard.proxy.errors import PayloadTooLarge

log = logging.getLogger("switchyard.proxy.rest")

_BODY_HIGH_WATER = 1 << 20
_MAX_HEAD = 1 << 20
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 53\r\n"
                b"Connection: close\r\n\r\n"
                b'{"status":{"error":"Bad request: malformed HTTP"},"time":0}')

Handler = Callable[["HttpRequest", "HttpConnection"], Awaitable[None]]


class HttpRequest:
    """One request: method, raw target (path + query as received), raw headers in order."""

    __slots__ = ("method", "target", "headers", "http10", "keep_alive", "length", "chunked",
                 "expect", "peer", "_parts", "_buffered", "_complete", "_waiter", "_conn",
                 "_discard", "_continued")

    def __init__(self, conn: HttpConnection) -> None:
        self.method = b""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.http10 = False
        self.keep_alive = True
        self.length: int | None = None
        self.chunked = False
        self.expect = False
        self.peer = conn.peer
        self._parts: list[bytes] = []
        self._buffered = 0
        self._complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._conn = conn
        self._discard = False
        self._continued = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.length)

    # -- fed by the connection

    def _feed(self, data: bytes) -> None:
        if self._discard:
            return
        self._parts.append(data)
        self._buffered += len(data)
        if self._buffered > _BODY_HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _discard_rest(self) -> None:
        """The handler is done: drop unread body bytes (the parser still consumes them)."""
        self._discard = True
        self._parts.clear()
        self._buffered = 0
        self._conn.resume_reading()

    # -- read by the handler

    async def _wait(self) -> None:
        if not self._continued:
            self._continued = True
            if self.expect and not self._complete:
                self._conn.write(_CONTINUE)
        self._conn.resume_reading()
        self._waiter = self._conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._conn.closed and not self._complete and not self._parts:
            raise ConnectionResetError("client closed the connection mid-body")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (de-chunked), with back-pressure on the client."""
        while True:
            if self._parts:
                parts, self._parts, self._buffered = self._parts, [], 0
                self._conn.resume_reading()
                yield b"".join(parts) if len(parts) > 1 else parts[0]
            elif self._complete:
                return
            else:
                await self._wait()

    async def read_all(self, limit: int | None = None) -> bytes:
        """The whole body; more than ``limit`` bytes raises :class:`PayloadTooLarge` (413)."""
        if limit is not None and self.length is not None and self.length > limit:
            raise PayloadTooLarge(f"request body of {self.length} bytes exceeds the limit of {limit}")
        while not self._complete:
            if limit is not None and self._buffered > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            await self._wait()
        if limit is not None and self._buffered > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        parts, self._parts, self._buffered = self._parts, [], 0
        return b"".join(parts) if len(parts) != 1 else parts[0]


class HttpConnection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.closed = False
        self.deadline = math.inf
        self._parser = httptools.HttpRequestParser(self)
        self._current: HttpRequest | None = None
        self._queue: deque[HttpRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self._busy = False
        self._paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._head_size = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline = self.loop.time() + self.server.header_timeout
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._current is not None:  # an Upgrade is not relayed: answer, then close
                self._current.keep_alive = False
        except httptools.HttpParserError:
            self.write(_BAD_REQUEST)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self._current is not None:
            self._current._wake()
        for request in self._queue:
            request._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self._current = HttpRequest(self)
        self._head_size = 0
        if not self._busy:
            self.deadline = self.loop.time() + self.server.header_timeout

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.target += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name, value))
        self._grow_head(len(name) + len(value))

    def _grow_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > _MAX_HEAD:
            raise httptools.HttpParserError("request head too large")

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        parser = self._parser
        request.method = parser.get_method()
        request.http10 = parser.get_http_version() == "1.0"
        request.keep_alive = parser.should_keep_alive()
        for name, value in request.headers:
            low = name.lower()
            if low == b"content-length":
                request.length = int(value) if value.isdigit() else None
            elif low == b"transfer-encoding":
                request.chunked = b"chunked" in value.lower()
            elif low == b"expect":
                request.expect = value.lower() == b"100-continue"
        if request.chunked:
            request.length = None
        self.deadline = math.inf  # a request is under way: upstream_timeout governs now
        self._queue.append(request)
        if self._task is None:
            self._task = self.loop.create_task(self._serve())
        elif self._next is not None and not self._next.done():
            self._next.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current._feed(body)

    def on_message_complete(self) -> None:
        if self._current is not None:
            self._current._finish()
            self._current = None

    # -- serving

    async def _serve(self) -> None:
        """Run this connection's requests in order until it closes."""
        try:
            while not self.closed:
                if not self._queue:
                    if self.server.stopping:
                        self.close()
                        return
                    self.deadline = self.loop.time() + self.server.idle_timeout
                    self._next = self.loop.create_future()
                    await self._next
                    self._next = None
                    continue
                request = self._queue.popleft()
                self._busy = True
                try:
                    await self.server.handler(request, self)
                finally:
                    self._busy = False
                    request._discard_rest()
                    self.server.request_done()
                if not request.keep_alive or self.server.stopping:
                    self.close()
                    return
        except asyncio.CancelledError:
            pass
        except Exception:  # a handler bug must not leave the client hanging on a dead connection
            log.exception("REST connection from %s failed; closing it", self.peer)
            self.abort()
        finally:
            self._task = None

    @property
    def busy(self) -> bool:
        return self._busy

    def wake_idle(self) -> None:
        """On shutdown: an idle connection's serving loop sees ``stopping`` and closes."""
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        elif self._task is None:
            self.close()

    # -- writing

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the client's socket buffer is full (back-pressure on streamed bodies)."""
        if self.closed:
            raise ConnectionResetError("client went away")
        if self._write_paused:
            self._drained = self.loop.create_future()
            await self._drained
            if self.closed:
                raise ConnectionResetError("client went away")

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HttpServer:
    """A listener: the protocol factory, the connection set, the hygiene sweep, the drain."""

    def __init__(self, handler: Handler, *, header_timeout: float, idle_timeout: float) -> None:
        self.handler = handler
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._quiet: asyncio.Future[None] | None = None
        self._sweep_every = min(1.0, header_timeout / 4, idle_timeout / 4)

    async def listen(self, host: str, port: int, ssl_context: ssl.SSLContext | None, *,
                     reuse_port: bool = False, backlog: int = 1024) -> int:
        """Bind and start accepting; returns the bound port."""
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self), host, port, ssl=ssl_context, backlog=backlog,
            reuse_port=reuse_port or None)
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)
        return int(self._server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        """Close connections past their header or idle deadline."""
        now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline < now]:
            conn.abort()
        if not self.stopping:
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def request_done(self) -> None:
        if self._quiet is not None and not self._quiet.done() and not self._any_busy():
            self._quiet.set_result(None)

    def _any_busy(self) -> bool:
        return any(c.busy for c in self.connections)

    async def close(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish for up to ``grace`` s; close the rest."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.busy:
                conn.wake_idle()
        if self._any_busy():
            self._quiet = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._quiet), grace)
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def sockets(self) -> Any:
        return self._server.sockets if self._server is not None else ()

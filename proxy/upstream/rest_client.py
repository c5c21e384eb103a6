"""A lean HTTP/1.1 client for the upstream's REST API: keep-alive pool, streamed bodies.

Why not ``aiohttp.ClientSession``: measured, its per-request CPU (~330 µs) capped a plain
pass-through at ~0.3x of direct throughput. This client does only what a forwarding proxy needs
on asyncio streams: write one request head (+ body), parse the status line and headers, and
frame the body by ``Content-Length``, ``chunked`` or connection close. Connections are pooled
and reused when a response was read to its end and neither side said ``Connection: close``.

Contract:

* :meth:`RestUpstream.send` returns an :class:`UpstreamResponse` once the response head is in;
  the caller reads the body (``read_all`` / ``chunks``) and must ``release()`` it (``finally``).
* Errors are :mod:`switchyard.proxy.errors`: connection failures and garbage → :class:`UpstreamError`
  (502), no progress within ``timeout`` seconds while connecting or waiting for a read →
  :class:`UpstreamTimeout` (504). Sending a streamed request body is paced by the client and
  has no timeout of its own. Read timeouts are not one ``asyncio.timeout`` per read (measured
  ~8 % of a pass-through's CPU): a busy connection carries a deadline (a float) and one
  periodic sweep per client aborts the connections past theirs; the read that fails then
  reports the timeout. The sweep runs every ``min(1 s, timeout / 4)``, so a timeout fires
  between ``timeout`` and ``1.25 * timeout`` late.
* ``connect`` replaces the TCP connector (the front end reaches its own aiohttp routes over a
  socket pair this way); ``host_header=None`` sends the caller's ``Host`` as given.
* A reused idle connection that turns out closed before any response byte is retried once on
  a fresh connection, only when the request body is replayable (bytes).
* Cancellation (client went away) closes the upstream connection, so the upstream sees it.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from switchyard.proxy.errors import UpstreamError, UpstreamTimeout
from switchyard.proxy.upstream.rest_response import HeaderList, UpstreamResponse, Conn
from switchyard.proxy.wire import RestCall, RestReply

Body = bytes | AsyncIterator[bytes] | None

#: Bodies up to this size go out in one write with their head (one syscall); larger ones after it.
_JOIN_LIMIT = 64 << 10
_HEAD_LIMIT = 1 << 20
_NO_BODY_STATUS = frozenset({204, 304})
#: Response headers that describe framing and so are not part of a buffered RestReply.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
#: Request headers the interceptor's call must not carry to the upstream (we set our own).
_CALL_DROP = frozenset({"host", "content-length", "transfer-encoding", "connection",
                        "keep-alive", "accept-encoding", "expect"})


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connector = Callable[[], Awaitable[Streams]]


class RestUpstream:
    """A pooled HTTP/1.1 client for one upstream base URL (``http://`` or ``https://``)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, ca_file: str | None = None,
                 max_idle: int = 64, connect: Connector | None = None,
                 host_header: bytes | None | bool = True) -> None:
        parts = urlsplit(base_url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/").encode()
        default_port = 443 if self.secure else 80
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        own_host = (netloc if self.port == default_port else f"{netloc}:{self.port}").encode()
        self.host_header: bytes | None = own_host if host_header is True else (host_header or None)
        self.timeout = timeout
        self.max_idle = max_idle
        self._ssl: ssl.SSLContext | None = None
        if self.secure:
            self._ssl = ssl.create_default_context(cafile=ca_file)
        self._connector = connect
        self._idle: list[Conn] = []
        self._busy: set[Conn] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(1.0, timeout / 4)

    # -- pool

    def loop_time(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        return loop.time()

    def _sweep(self) -> None:
        """Abort busy connections whose pending read is past its deadline (see module doc)."""
        assert self._loop is not None
        now = self._loop.time()
        for conn in [c for c in self._busy if c.deadline < now]:
            self._busy.discard(conn)
            conn.expire()
        if not self._closed:
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    def idle(self, conn: Conn) -> None:
        """A connection no longer waits for the upstream (its deadline no longer applies)."""
        self._busy.discard(conn)
        conn.deadline = math.inf

    def put_back(self, conn: Conn) -> None:
        if self._closed or len(self._idle) >= self.max_idle or not conn.usable():
            conn.close()
        else:
            self._idle.append(conn)

    async def _connect(self) -> Conn:
        try:
            async with asyncio.timeout(self.timeout):
                if self._connector is not None:
                    reader, writer = await self._connector()
                else:
                    reader, writer = await asyncio.open_connection(
                        self.host, self.port, ssl=self._ssl, limit=_HEAD_LIMIT)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return Conn(reader, writer)

    def _take_idle(self) -> Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def close(self) -> None:
        """Close idle connections; responses in flight close theirs on release."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- requests

    async def send(self, method: bytes, target: bytes, headers: HeaderList, body: Body,
                   length: int | None = None) -> UpstreamResponse:
        """Send one request; ``target`` is path+query as received, ``headers`` exclude
        hop-by-hop, Host and framing headers. ``body``: bytes, a stream of ``length`` bytes,
        a stream of unknown length (sent chunked), or ``None`` (no body)."""
        head = self._head(method, target, headers, body, length)
        if body is not None and not isinstance(body, bytes) and length is None:
            body = chunked(body)
        conn = self._take_idle()
        if conn is not None:
            try:
                return await self._exchange(conn, head, body, method)
            except _StaleConnection as exc:
                if not isinstance(body, bytes | None):
                    raise UpstreamError("upstream closed the connection without a response") from exc
        conn = await self._connect()
        try:
            return await self._exchange(conn, head, body, method)
        except _StaleConnection as exc:
            raise UpstreamError("upstream closed the connection without a response") from exc

    def _head(self, method: bytes, target: bytes, headers: HeaderList, body: Body,
              length: int | None) -> bytes:
        lines = [method, b" ", self.prefix, target, b" HTTP/1.1\r\n"]
        if self.host_header is not None:
            lines += (b"Host: ", self.host_header, b"\r\n")
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if isinstance(body, bytes):
            if length is not None or body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
                lines += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
        elif body is not None:
            if length is None:
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                lines += (b"Content-Length: ", str(length).encode(), b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _exchange(self, conn: Conn, head: bytes, body: Body, method: bytes) -> UpstreamResponse:
        try:
            if isinstance(body, bytes) or body is None:
                if body and len(body) > _JOIN_LIMIT:  # a large body is not copied to sit behind its head
                    conn.writer.writelines((head, body))
                else:
                    conn.writer.write(head + body if body else head)
            else:
                conn.writer.write(head)
                await _send_stream(conn.writer, body)
            return await self._read_head(conn, method)
        except BaseException:
            self.idle(conn)
            conn.close()
            raise

    async def _read_head(self, conn: Conn, method: bytes) -> UpstreamResponse:
        conn.deadline = self.loop_time() + self.timeout
        self._busy.add(conn)
        reader = conn.reader
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            while raw[9:10] == b"1" and raw[9:12] != b"101":  # interim 1xx responses
                conn.deadline = self.loop_time() + self.timeout
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if conn.timed_out:
                raise UpstreamTimeout("upstream did not answer in time") from exc
            if not exc.partial:
                raise _StaleConnection from exc
            raise UpstreamError("upstream sent a truncated response head") from exc
        except ConnectionResetError as exc:
            if conn.timed_out:
                raise UpstreamTimeout("upstream did not answer in time") from exc
            raise _StaleConnection from exc
        except (OSError, asyncio.LimitOverrunError) as exc:
            raise UpstreamError(f"upstream connection failed: {exc}") from exc
        conn.deadline = math.inf
        return self._parse_head(conn, raw, method)

    def _parse_head(self, conn: Conn, raw: bytes, method: bytes) -> UpstreamResponse:
        status, reason, headers, http10 = parse_head(raw)
        length: int | None = None
        chunked = False
        keep_alive = not http10
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                token = value.lower()
                keep_alive = b"close" not in token and (not http10 or b"keep-alive" in token)
        if method == b"HEAD" or status in _NO_BODY_STATUS or status < 200:
            length, chunked = 0, False
        elif chunked:
            length = None
        return UpstreamResponse(self, conn, status, reason, headers, length, chunked, keep_alive)

    async def request(self, call: RestCall) -> RestReply:
        """Send a buffered :class:`RestCall` and read the whole reply (the interceptor's forward).

        ``accept-encoding`` is dropped so the reply body is plain for codecs to read.
        """
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in call.headers
                   if k not in _CALL_DROP]
        target = call.path.encode() + (b"?" + call.query.encode() if call.query else b"")
        response = await self.send(call.method.encode(), target, headers, call.body)
        try:
            body = await response.read_all()
        finally:
            response.release()
        reply_headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                              for k, v in response.headers if k.lower() not in _FRAMING)
        return RestReply(response.status, reply_headers, body)


class _StaleConnection(Exception):
    """The connection closed before any response byte: safe to retry a replayable request."""


def parse_head(raw: bytes) -> tuple[int, bytes, HeaderList, bool]:
    """(status, reason, headers, is HTTP/1.0) of a response head ending in a blank line."""
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"upstream sent a malformed status line: {lines[0][:80]!r}")
    headers: HeaderList = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise UpstreamError("upstream sent a malformed header line")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers, parts[0] == b"HTTP/1.0"


async def _send_stream(writer: asyncio.StreamWriter, body: AsyncIterator[bytes]) -> None:
    """Write a request body as it arrives from the client, with back-pressure."""
    try:
        async for chunk in body:
            writer.write(chunk)
            await writer.drain()
    except OSError as exc:
        raise UpstreamError(f"upstream connection failed while sending the body: {exc}") from exc


async def chunked(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Frame a stream with HTTP/1.1 chunked transfer-encoding."""
    async for chunk in body:
        if chunk:
            yield b"%x\r\n%b\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"

"""The upstream's response as :class:`~switchyard.proxy.upstream.rest_client.RestUpstream` hands it out.

An :class:`UpstreamResponse` has its status line and headers parsed; its body is read on
demand, exactly once (``read_all`` or ``chunks``), framed by ``Content-Length``, ``chunked`` or
the connection's close, and ``release()`` gives the connection back to the pool (read to its
end, keep-alive on both sides) or closes it. Every read carries the pool's inactivity deadline
on the connection (:class:`Conn`), which the pool's sweep enforces; a read the sweep aborted
reports :class:`~switchyard.proxy.errors.UpstreamTimeout`, any other failure
:class:`~switchyard.proxy.errors.UpstreamError`. Split from ``rest_client.py``, which sends the
request and owns the pool.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from switchyard.proxy.errors import UpstreamError, UpstreamTimeout

HeaderList = list[tuple[bytes, bytes]]

_READ_CHUNK = 256 << 10


class _Pool(Protocol):
    """What a response needs of its client's pool (``RestUpstream``)."""

    timeout: float

    def loop_time(self) -> float: ...

    def idle(self, conn: Conn) -> None: ...

    def put_back(self, conn: Conn) -> None: ...


@dataclass(slots=True, eq=False)
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    #: loop time by which the pending read must progress (inf: nothing pending).
    deadline: float = field(default=math.inf)
    timed_out: bool = False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()

    def expire(self) -> None:
        """Called by the sweep: abort, so the pending read fails and reports the timeout."""
        self.timed_out = True
        transport = self.writer.transport
        transport.abort()


class UpstreamResponse:
    """A response whose head has arrived; the body is read on demand, exactly once."""

    __slots__ = ("status", "reason", "headers", "length", "chunked", "_conn", "_pool",
                 "_remaining", "_keep_alive", "_done", "_timeout")

    def __init__(self, pool: _Pool, conn: Conn, status: int, reason: bytes,
                 headers: HeaderList, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.length = length
        self.chunked = chunked
        self._conn: Conn | None = conn
        self._pool = pool
        self._remaining = length
        self._keep_alive = keep_alive
        self._done = length == 0

    async def read_all(self) -> bytes:
        """The whole body (for small responses and intercepted calls)."""
        if self.length is not None and not self.chunked:
            data = await self._read_exactly(self.length) if self.length else b""
            self._done = True
            return data
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, de-chunked; ends at the body's end."""
        if self.chunked:
            async for chunk in self._dechunk():
                yield chunk
        elif self.length is not None:
            while self._remaining:
                chunk = await self._read_some(min(self._remaining, _READ_CHUNK))
                self._remaining -= len(chunk)
                yield chunk
        else:
            self._keep_alive = False
            while chunk := await self._read_some(_READ_CHUNK, eof_ok=True):
                yield chunk
        self._done = True

    async def _dechunk(self) -> AsyncIterator[bytes]:
        while True:
            line = await self._read_line()
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while await self._read_line():  # trailers, up to the blank line
                    pass
                return
            remaining = size
            while remaining:
                chunk = await self._read_some(min(remaining, _READ_CHUNK))
                remaining -= len(chunk)
                yield chunk
            await self._read_exactly(2)

    def release(self) -> None:
        """Return the connection to the pool if the body was read fully, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._pool.idle(conn)
        if self._done and self._keep_alive:
            self._pool.put_back(conn)
        else:
            conn.close()

    # -- reads with the inactivity timeout (a deadline the pool's sweep enforces)

    def _conn_for_read(self) -> Conn:
        conn = self._conn
        if conn is None:
            raise UpstreamError("response already released")
        conn.deadline = self._pool.loop_time() + self._pool.timeout
        return conn

    async def _read_exactly(self, n: int) -> bytes:
        conn = self._conn_for_read()
        try:
            data = await conn.reader.readexactly(n)
        except (OSError, asyncio.IncompleteReadError) as exc:
            _raise_body_error(conn, f"upstream closed the connection mid-body: {exc}", exc)
        conn.deadline = math.inf  # waiting for our client (back-pressure) is not the upstream's fault
        return data

    async def _read_some(self, n: int, *, eof_ok: bool = False) -> bytes:
        conn = self._conn_for_read()
        try:
            chunk = await conn.reader.read(n)
        except OSError as exc:
            _raise_body_error(conn, f"upstream connection failed mid-body: {exc}", exc)
        if conn.timed_out:
            _raise_body_error(conn, "", None)
        conn.deadline = math.inf
        if not chunk and not eof_ok:
            raise UpstreamError("upstream closed the connection mid-body")
        return chunk

    async def _read_line(self) -> bytes:
        conn = self._conn_for_read()
        try:
            line = await conn.reader.readuntil(b"\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            _raise_body_error(conn, f"bad chunked body from upstream: {exc}", exc)
        conn.deadline = math.inf
        return line[:-2]


def _raise_body_error(conn: Conn, message: str, exc: BaseException | None) -> NoReturn:
    if conn.timed_out:
        raise UpstreamTimeout("upstream did not send the response body in time") from exc
    raise UpstreamError(message) from exc

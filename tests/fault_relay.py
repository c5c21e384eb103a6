"""A fault-injecting TCP relay for tests: 127.0.0.1:port -> an upstream, on its own thread.

It copies bytes both ways. While a fault pattern is set, a connection whose client-to-upstream
bytes contain the pattern (e.g. ``/collections/docs_v2/``, which appears in an HTTP request
line) is cut in both directions before the matching bytes reach the upstream: the caller sees a
dropped connection, exactly like a network fault, while other collections keep working.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class FaultRelay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.block: bytes | None = None
        self.cut = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-relay")
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.port = 0

    def start(self) -> FaultRelay:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, pattern: str | None) -> None:
        """Cut connections that send ``pattern`` (``None``: heal)."""
        self.block = pattern.encode() if pattern else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, writer, check=True),
                             self._pipe(up_reader, writer, up_writer, check=False),
                             return_exceptions=True)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    other: asyncio.StreamWriter, check: bool) -> None:
        try:
            while data := await src.read(65536):
                if check and self.block is not None and self.block in data:
                    self.cut += 1
                    break
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (dst, other):
                w.close()
                self._conns.discard(w)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._conns):
                w.close()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultRelay:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

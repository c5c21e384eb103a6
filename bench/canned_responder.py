"""A minimal REST + gRPC server answering canned bytes, to measure the proxy's own ceiling.

Real Qdrant answers a collection-info call in microseconds; the embedded upstream (Python)
does not, so benchmarking only against it hides the proxy's own cost. This server answers
every REST request with one canned HTTP response per (method, path) and every gRPC call with
canned message bytes per method, with as little work as possible: an asyncio protocol that
only splits requests by ``Content-Length``, on uvloop when installed.

Usage (the bench starts it)::

    python bench/canned_responder.py CANNED.json [FALLBACK_REST_PORT]
    -> prints "canned ready rest=PORT grpc=PORT"

``CANNED.json``: ``{"rest": {"GET /path": [status, "content-type", "<base64 body>"]},
"grpc": {"/pkg.Service/Method": "<base64 message>"}}``; unknown calls get 404 / UNIMPLEMENTED,
or, with ``FALLBACK_REST_PORT``, unknown REST calls are relayed to that server on 127.0.0.1
(the proxy's own state-store calls: a proxy refuses to serve without readable state).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from typing import Any

import grpc
import grpc.aio

_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n"
              b'{"status":{"error":"nope"},"time":0.0}')


def http_response(status: int, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class CannedHttp(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answer each complete request from the table."""

    def __init__(self, table: dict[bytes, bytes], fallback: int | None = None) -> None:
        self.table = table
        self.fallback = fallback
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.relaying: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.relaying is None:
            self._answer()

    def _answer(self) -> None:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            low = head.lower()
            at = low.find(b"content-length:")
            if at >= 0:
                eol = low.find(b"\r\n", at)
                length = int(low[at + 15:eol if eol >= 0 else len(low)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            line = head[:head.find(b"\r\n")] if b"\r\n" in head else head
            method, target = line.split(b" ", 2)[:2]
            key = method + b" " + target.split(b"?", 1)[0]
            request, self.buf = self.buf[:total], self.buf[total:]
            assert self.transport is not None
            answer = self.table.get(key)
            if answer is None and self.fallback is not None:
                self.relaying = asyncio.ensure_future(self._relay(request))
                return
            self.transport.write(answer or _NOT_FOUND)

    async def _relay(self, request: bytes) -> None:
        """One request to the fallback server (Connection: close), its reply back; then go on."""
        assert self.transport is not None and self.fallback is not None
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        reader, writer = await asyncio.open_connection("127.0.0.1", self.fallback)
        writer.write(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body)
        reply = await reader.read()
        writer.close()
        rhead, _, rbody = reply.partition(b"\r\n\r\n")
        kept = [line for line in rhead.split(b"\r\n")
                if not line.lower().startswith((b"connection:", b"transfer-encoding:", b"content-length:"))]
        if b"chunked" in rhead.lower():
            rbody = _dechunk(rbody)
        self.transport.write(b"\r\n".join(kept) + b"\r\nContent-Length: %d\r\n\r\n" % len(rbody) + rbody)
        self.relaying = None
        self._answer()


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2:]
    return b"".join(out)


class CannedGrpc(grpc.GenericRpcHandler):
    def __init__(self, table: dict[str, bytes]) -> None:
        self.handlers = {m: grpc.unary_unary_rpc_method_handler(self._answer(body))
                         for m, body in table.items()}

    @staticmethod
    def _answer(body: bytes) -> Any:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return body
        return answer

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self.handlers.get(details.method)  # type: ignore[attr-defined]


async def serve(canned: dict[str, Any], fallback: int | None) -> None:
    rest = {k.encode(): http_response(v[0], v[1], base64.b64decode(v[2]))
            for k, v in canned.get("rest", {}).items()}
    grpc_table = {k: base64.b64decode(v) for k, v in canned.get("grpc", {}).items()}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CannedHttp(rest, fallback), "127.0.0.1", 0, backlog=1024)
    gserver = grpc.aio.server(handlers=[CannedGrpc(grpc_table)],
                              options=[("grpc.max_send_message_length", 64 << 20)])
    gport = gserver.add_insecure_port("127.0.0.1:0")
    await gserver.start()
    port = server.sockets[0].getsockname()[1]
    print(f"canned ready rest={port} grpc={gport}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await gserver.stop(None)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        canned = json.load(fh)
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(canned, int(sys.argv[2]) if len(sys.argv) > 2 else None))


if __name__ == "__main__":
    main()

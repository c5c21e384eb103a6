"""The REST front end's HTTP/1.1 details (httptools on asyncio.Protocol), over raw sockets.

Pipelining, HTTP/1.0, ``Expect: 100-continue``, chunked responses, malformed requests, 413 for
an oversized intercepted body, the client's address reaching own routes, and the duration
histograms. A small aiohttp upstream on 127.0.0.1 answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from switchyard.proxy.app import ProxyServer
from switchyard.proxy.config import load_config
from switchyard.proxy.wire import RestCall, RestForward, RestReply


class _Interceptor:
    def rest_wants(self, method: str, path: str) -> bool:
        return path.startswith("/collections/c/points")

    async def rest(self, call: RestCall, forward: RestForward) -> RestReply:
        if call.path.endswith("/crash"):
            raise RuntimeError("interceptor bug with request data s3cret")
        return await forward(call)

    def grpc_wants(self, method: str) -> bool:
        return False

    async def grpc(self, call: Any, forward: Any) -> Any:
        raise AssertionError("not used")


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if request.query.get("chunked"):
        out = web.StreamResponse(headers={"Content-Type": "text/plain"})
        out.enable_chunked_encoding()
        await out.prepare(request)
        for part in (b"alpha-", b"beta-", b"gamma"):
            await out.write(part)
        await out.write_eof()
        return out
    return web.json_response({"path": request.raw_path, "body": body.decode("latin-1")})


@pytest.fixture
async def proxy() -> AsyncIterator[ProxyServer]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    cfg = load_config({"upstream_rest_url": f"http://127.0.0.1:{port}", "upstream_grpc_address": "127.0.0.1:1",
                       "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0", "max_body_size": "1KiB"},
                      {}, None)
    server = ProxyServer(cfg, _Interceptor(), drain_seconds=1)  # type: ignore[arg-type]

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote})
    server.add_routes([web.get("/switchyard/test/whoami", whoami)])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await runner.cleanup()


async def _exchange(port: int, raw: bytes, *, until: bytes | None = None, expect_close: bool = False) -> bytes:
    """Send ``raw``; read until ``until`` appears (or EOF when ``expect_close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        data = b""
        async with asyncio.timeout(10):
            while True:
                chunk = await reader.read(65536)
                data += chunk
                if not chunk or (until is not None and until in data and not expect_close):
                    return data
    finally:
        writer.close()


def _responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each Content-Length framed response in ``data``."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        out.append((head, rest[:length]))
        data = rest[length:]
    return out


async def test_pipelined_requests_are_answered_in_order(proxy: ProxyServer) -> None:
    raw = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    raw += b"POST /last HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    replies = _responses(await _exchange(proxy.rest_port, raw, expect_close=True))
    assert [json.loads(body)["path"] for _, body in replies] == ["/p0", "/p1", "/p2", "/p3", "/p4", "/last"]
    assert json.loads(replies[-1][1])["body"] == "abc"
    assert b"connection: close" in replies[-1][0].lower()


async def test_http10_client_and_chunked_upstream_reply(proxy: ProxyServer) -> None:
    data = await _exchange(proxy.rest_port, b"GET /x?chunked=1 HTTP/1.0\r\n\r\n", expect_close=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    assert body == b"alpha-beta-gamma"  # close-delimited for a 1.0 client
    data = await _exchange(proxy.rest_port, b"GET /x?chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n", until=b"0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n") and b"alpha-" in body and b"gamma" in body


async def test_expect_continue_is_answered_before_the_body(proxy: ProxyServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.rest_port)
    try:
        writer.write(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
            writer.write(b"data")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_oversized_intercepted_body_is_413_in_qdrant_shape(proxy: ProxyServer) -> None:
    body = b"x" * 2048
    for framing in (b"Content-Length: 2048\r\n\r\n" + body,
                    b"Transfer-Encoding: chunked\r\n\r\n800\r\n" + body + b"\r\n0\r\n\r\n"):
        raw = b"PUT /collections/c/points HTTP/1.1\r\nHost: x\r\n" + framing
        head, reply = _responses(await _exchange(proxy.rest_port, raw, until=b"}"))[0]
        assert head.startswith(b"HTTP/1.1 413")
        assert set(json.loads(reply)) == {"status", "time"}
        assert "exceeds the limit" in json.loads(reply)["status"]["error"]


async def test_malformed_request_gets_400_and_close(proxy: ProxyServer) -> None:
    data = await _exchange(proxy.rest_port, b"NOT HTTP AT ALL\r\n\r\n", expect_close=True)
    assert data.startswith(b"HTTP/1.1 400")


async def test_own_routes_see_the_client_address_not_a_claimed_one(proxy: ProxyServer) -> None:
    raw = b"GET /switchyard/test/whoami HTTP/1.1\r\nHost: x\r\nX-Switchyard-Peer: 10.9.9.9\r\n\r\n"
    _, body = _responses(await _exchange(proxy.rest_port, raw, until=b"}"))[0]
    assert json.loads(body) == {"remote": "127.0.0.1"}


async def test_duration_histograms_count_by_kind_and_status_class(proxy: ProxyServer) -> None:
    def count(kind: str, cls: str) -> float:
        return REGISTRY.get_sample_value("switchyard_proxy_request_duration_seconds_count",
                                         {"protocol": "rest", "kind": kind, "status_class": cls}) or 0.0

    before = (count("passthrough", "2xx"), count("write", "4xx"), count("admin", "4xx"))
    await _exchange(proxy.rest_port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", expect_close=True)
    await _exchange(proxy.rest_port, b"PUT /collections/c/points HTTP/1.1\r\nHost: x\r\nContent-Length: 2000"
                                     b"\r\nConnection: close\r\n\r\n", expect_close=True)
    await _exchange(proxy.rest_port, b"GET /switchyard/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    expect_close=True)
    after = (count("passthrough", "2xx"), count("write", "4xx"), count("admin", "4xx"))
    assert [b - a for a, b in zip(before, after)] == [1, 1, 1]
    assert (REGISTRY.get_sample_value("switchyard_proxy_upstream_duration_seconds_count",
                                      {"protocol": "rest", "kind": "passthrough"}) or 0) >= 1


async def test_interceptor_bug_is_a_500_in_qdrant_shape_and_the_connection_lives(proxy: ProxyServer) -> None:
    raw = (b"POST /collections/c/points/crash HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
           b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (head, body), (head2, body2) = _responses(await _exchange(proxy.rest_port, raw, expect_close=True))
    assert head.startswith(b"HTTP/1.1 500")
    assert json.loads(body)["status"]["error"] == "Service internal error: unexpected RuntimeError in Switchyard"
    assert b"s3cret" not in body
    assert head2.startswith(b"HTTP/1.1 200") and json.loads(body2)["path"] == "/after"

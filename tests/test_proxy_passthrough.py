"""The proxy forwards REST and gRPC byte for byte, and hands wanted calls to the interceptor.

A small test upstream (aiohttp + a grpc.aio generic handler, raw bytes) records what it saw,
so each test can compare what the client sent / received directly with what went through the
proxy. The embedded upstream is used for the API-key and qdrant-client checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from aiohttp import web
from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy.app import ProxyServer
from switchyard.proxy.config import load_config
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.server import EmbeddedUpstream
from switchyard.proxy.errors import Forbidden
from switchyard.proxy.frontend.headers import redact, request_headers, response_headers
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, RestCall, RestForward, RestReply

SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse(status=SERVING)
KEY = "sekret-key-4711"


@dataclass
class Seen:
    """What the test upstream observed."""

    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    time_remaining: list[float | None] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)


class FakeUpstream:
    """REST + gRPC test server on 127.0.0.1, port 0."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.runner: web.AppRunner | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.http_port = 0
        self.grpc_port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/slow", self.slow)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = self.runner.addresses[0][1]
        self.grpc_server = grpc.aio.server(handlers=[_GrpcHandler(self.seen)])
        self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        await self.grpc_server.start()

    async def stop(self) -> None:
        if self.grpc_server is not None:
            await self.grpc_server.stop(None)
        if self.runner is not None:
            await self.runner.cleanup()

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = int(request.query.get("status", "200"))
        payload = {"method": request.method, "path_qs": request.raw_path,
                   "headers": [[k, v] for k, v in request.headers.items()],
                   "body": body.decode("latin-1"), "length": len(body)}
        return web.Response(status=status, body=json.dumps(payload).encode(),
                            headers={"X-Upstream": "yes", "X-Multi": "a, b",
                                     "Content-Type": "application/json"})

    async def slow(self, request: web.Request) -> web.Response:
        self.seen.started.set()
        try:
            await asyncio.sleep(float(request.query.get("for", "10")))
        except asyncio.CancelledError:
            self.seen.cancelled.set()
            raise
        return web.Response(text="late")


class _GrpcHandler(grpc.GenericRpcHandler):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method  # type: ignore[attr-defined]
        if method == "/grpc.health.v1.Health/Watch":
            return grpc.unary_stream_rpc_method_handler(self.watch)
        handlers: dict[str, Any] = {"/grpc.health.v1.Health/Check": self.check,
                                    "/test.Echo/Echo": self.echo, "/test.Echo/Fail": self.fail,
                                    "/test.Echo/Slow": self.slow}
        fn = handlers.get(method)
        return grpc.unary_unary_rpc_method_handler(fn) if fn else None

    async def check(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return SERVING

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.seen.metadata.append(md)
        self.seen.time_remaining.append(context.time_remaining())
        await context.send_initial_metadata((("x-initial", md.get("x-client", "none")),))
        context.set_trailing_metadata((("x-trailing", "bye"), ("x-raw-bin", b"\x00\xff")))
        return request[::-1]

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing", (("x-why", "gone"),))
        return b""

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.seen.time_remaining.append(context.time_remaining())
        self.seen.started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.seen.cancelled.set()
            raise
        return b"late"

    async def watch(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            for _ in range(1000):
                yield SERVING
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            self.seen.cancelled.set()
            raise


class BodyRewriter:
    """Test interceptor: upper-cases bodies of POST /echo/intercepted and /test.Echo/Echo."""

    def __init__(self) -> None:
        self.rest_calls: list[str] = []
        self.grpc_calls: list[str] = []

    def rest_wants(self, method: str, path: str) -> bool:
        return method == "POST" and path.startswith("/echo/intercepted")

    async def rest(self, call: RestCall, forward: RestForward) -> RestReply:
        self.rest_calls.append(call.path)
        if call.body == b"forbidden":
            raise Forbidden("not this body")
        reply = await forward(call.with_body(call.body.upper()))
        return RestReply(reply.status, reply.headers + (("x-intercepted", "1"),), reply.body)

    def grpc_wants(self, method: str) -> bool:
        return method == "/test.Echo/Echo"

    async def grpc(self, call: GrpcCall, forward: GrpcForward) -> GrpcReply:
        self.grpc_calls.append(call.method)
        if call.request == b"forbidden":
            raise Forbidden("not this message")
        return await forward(call.with_request(call.request.upper()))


def _config(rest_url: str, grpc_address: str, **extra: Any) -> Any:
    values = {"upstream_rest_url": rest_url, "upstream_grpc_address": grpc_address,
              "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0", **extra}
    return load_config(values, {}, None)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(upstream: FakeUpstream) -> AsyncIterator[tuple[ProxyServer, BodyRewriter]]:
    interceptor = BodyRewriter()
    server = ProxyServer(_config(f"http://127.0.0.1:{upstream.http_port}",
                                 f"127.0.0.1:{upstream.grpc_port}", upstream_timeout="2"),
                         interceptor)
    await server.start()
    yield server, interceptor
    await server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- REST

CASES = [
    ("GET", "/telemetry", None, {}),
    ("GET", "/cluster?details=true", None, {}),
    ("GET", "/made/up/path?x=1&y=%20two&x=3", None, {"X-Custom": "hello", "X-Other": "a,b"}),
    ("PUT", "/collections/c/points?wait=true", b'{"points": []}', {"Content-Type": "application/json"}),
    ("DELETE", "/anything", b"", {}),
    ("GET", "/missing?status=404", None, {}),
    ("POST", "/boom?status=500", b"\x00\x01binary", {}),
    ("GET", "/metrics", None, {}),
    ("HEAD", "/collections/c?status=200", None, {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), CASES)
async def test_rest_request_and_response_unchanged(upstream: FakeUpstream, proxy: Any, method: str,
                                                   path: str, body: bytes | None,
                                                   headers: dict[str, str]) -> None:
    server, interceptor = proxy
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async def fetch(port: int) -> tuple[int, dict[str, str], bytes]:
            async with session.request(method, f"http://127.0.0.1:{port}{path}", data=body,
                                       headers=headers) as resp:
                kept = {k: v for k, v in resp.headers.items() if k not in ("Date", "Server")}
                return resp.status, kept, await resp.read()

        direct = await fetch(upstream.http_port)
        proxied = await fetch(server.rest_port)
    assert proxied[0] == direct[0]
    assert proxied[1] == direct[1]
    if method == "HEAD":
        assert proxied[2] == direct[2] == b"" and int(proxied[1]["Content-Length"]) > 0
        return
    seen_direct, seen_proxied = json.loads(direct[2]), json.loads(proxied[2])
    assert seen_proxied["path_qs"] == seen_direct["path_qs"] == path
    assert seen_proxied["body"] == seen_direct["body"]
    for name, value in headers.items():
        assert [name, value] in seen_proxied["headers"]
    host = dict(seen_proxied["headers"])["Host"]
    assert host == f"127.0.0.1:{upstream.http_port}"
    assert interceptor.rest_calls == []


async def test_rest_hop_by_hop_headers_are_not_forwarded(upstream: FakeUpstream, proxy: Any) -> None:
    server, _ = proxy
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.rest_port}/h",
                               headers={"Connection": "keep-alive, X-Drop", "X-Drop": "1",
                                        "Proxy-Authorization": "x", "TE": "trailers",
                                        "X-Keep": "2"}) as resp:
            seen = {k.lower() for k, _ in (await resp.json())["headers"]}
    assert "x-keep" in seen
    assert not seen & {"x-drop", "proxy-authorization", "te"}


async def test_rest_chunked_request_body_is_forwarded(upstream: FakeUpstream, proxy: Any) -> None:
    server, _ = proxy

    async def gen() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"part%d;" % i

    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{server.rest_port}/chunked", data=gen()) as resp:
            seen = await resp.json()
    assert seen["body"] == "part0;part1;part2;part3;part4;"


async def test_rest_own_routes_are_not_forwarded(upstream: FakeUpstream, proxy: Any) -> None:
    server, _ = proxy
    base = f"http://127.0.0.1:{server.rest_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/switchyard/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        await session.get(base + "/telemetry")
        async with session.get(base + "/switchyard/metrics") as resp:
            text = await resp.text()
            assert "switchyard_proxy_requests_total" in text
        async with session.get(base + "/switchyard/nope") as resp:
            assert resp.status == 404
            assert "error" in (await resp.json())["status"]


async def test_rest_unreachable_upstream_is_502_in_qdrant_shape() -> None:
    port = _free_port()
    async with ProxyServer(_config(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")) as server:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.rest_port}/collections") as resp:
                body = await resp.json()
                assert resp.status == 502
        assert set(body) == {"status", "time"} and "error" in body["status"]
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await channel.close()


async def test_rest_slow_upstream_is_504(upstream: FakeUpstream) -> None:
    cfg = _config(f"http://127.0.0.1:{upstream.http_port}", f"127.0.0.1:{upstream.grpc_port}",
                  upstream_timeout="0.3")
    async with ProxyServer(cfg) as server, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{server.rest_port}/slow") as resp:
            body = await resp.json()
            assert resp.status == 504
        assert "Timeout" in body["status"]["error"]


async def test_rest_client_disconnect_cancels_upstream(upstream: FakeUpstream, proxy: Any) -> None:
    server, _ = proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", server.rest_port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(upstream.seen.started.wait(), 5)
    writer.close()
    await asyncio.wait_for(upstream.seen.cancelled.wait(), 5)
    assert upstream.seen.cancelled.is_set()


async def test_rest_interceptor_sees_only_wanted_paths(upstream: FakeUpstream, proxy: Any) -> None:
    server, interceptor = proxy
    base = f"http://127.0.0.1:{server.rest_port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/echo/intercepted?q=1", data=b"hello") as resp:
            seen = await resp.json()
            assert resp.headers["X-Intercepted"] == "1"
            assert resp.headers["X-Upstream"] == "yes"
        assert seen["body"] == "HELLO" and seen["path_qs"] == "/echo/intercepted?q=1"
        async with session.post(base + "/echo/other", data=b"hello") as resp:
            assert (await resp.json())["body"] == "hello"
        async with session.post(base + "/echo/intercepted", data=b"forbidden") as resp:
            assert resp.status == 403
            assert (await resp.json())["status"]["error"].startswith("Forbidden")
    assert interceptor.rest_calls == ["/echo/intercepted", "/echo/intercepted"]


async def test_stop_drains_calls_in_flight(upstream: FakeUpstream) -> None:
    cfg = _config(f"http://127.0.0.1:{upstream.http_port}", f"127.0.0.1:{upstream.grpc_port}")
    server = ProxyServer(cfg, drain_seconds=5)
    await server.start()
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.get(f"http://127.0.0.1:{server.rest_port}/slow?for=0.5"))
        await asyncio.wait_for(upstream.seen.started.wait(), 5)
        await server.stop()
        async with await pending as resp:
            assert resp.status == 200 and await resp.text() == "late"


# ---------------------------------------------------------------- gRPC

@pytest.fixture
async def channel(proxy: Any) -> AsyncIterator[grpc.aio.Channel]:
    server, _ = proxy
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


async def test_grpc_health_check_and_watch(upstream: FakeUpstream, channel: grpc.aio.Channel) -> None:
    assert await channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == SERVING
    call = channel.unary_stream("/grpc.health.v1.Health/Watch")(b"")
    received = []
    async for message in call:
        received.append(message)
        if len(received) == 3:
            break
    call.cancel()
    assert received == [SERVING] * 3
    await asyncio.wait_for(upstream.seen.cancelled.wait(), 5)


async def test_grpc_metadata_both_ways_and_deadline(upstream: FakeUpstream, proxy: Any,
                                                    channel: grpc.aio.Channel) -> None:
    _, interceptor = proxy
    call = channel.unary_unary("/test.Echo/Passthru")
    # /test.Echo/Echo is intercepted (upper-cased); use it to check metadata and deadline too
    rpc = channel.unary_unary("/test.Echo/Echo")(b"abc", metadata=(("x-client", "c1"),), timeout=7)
    assert await rpc == b"CBA"
    assert ("x-initial", "c1") in tuple(await rpc.initial_metadata())
    trailing = tuple(await rpc.trailing_metadata())
    assert ("x-trailing", "bye") in trailing and ("x-raw-bin", b"\x00\xff") in trailing
    assert upstream.seen.metadata[-1]["x-client"] == "c1"
    remaining = upstream.seen.time_remaining[-1]
    # the client's 7 s, not the proxy's default upstream timeout; gRPC rounds the grpc-timeout
    # header up at each hop (a run saw 7.009 s), so allow that rounding and nothing more
    assert remaining is not None and 0 < remaining < 7.1
    assert interceptor.grpc_calls == ["/test.Echo/Echo"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"x", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_grpc_passthrough_status_details_trailing(channel: grpc.aio.Channel, proxy: Any) -> None:
    _, interceptor = proxy
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Echo/Fail")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no such thing"
    assert ("x-why", "gone") in tuple(err.value.trailing_metadata())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Echo/Echo")(b"forbidden", timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert interceptor.grpc_calls == ["/test.Echo/Echo"]


async def test_grpc_slow_upstream_deadline_exceeded(upstream: FakeUpstream, channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Echo/Slow")(b"", timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    remaining = upstream.seen.time_remaining[-1]
    # the client's 0.5 s deadline reached the upstream, not the proxy's 2 s upstream_timeout;
    # gRPC's deadline clock rounds up a little (0.5004 seen), so the bound sits between the two
    assert remaining is not None and remaining < 1.0


async def test_grpc_without_deadline_gets_upstream_timeout(upstream: FakeUpstream,
                                                           channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel.unary_unary("/test.Echo/Slow")(b"")  # proxy's upstream_timeout is 2 s
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    remaining = upstream.seen.time_remaining[-1]
    assert remaining is not None and remaining <= 2.5  # deadline clock rounding: ~2.006 seen


async def test_grpc_client_cancel_cancels_upstream(upstream: FakeUpstream, channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/test.Echo/Slow")(b"", timeout=30)
    await asyncio.wait_for(upstream.seen.started.wait(), 5)
    call.cancel()
    await asyncio.wait_for(upstream.seen.cancelled.wait(), 5)
    assert upstream.seen.cancelled.is_set()


# ---------------------------------------------------------------- API keys, qdrant-client, logs

async def test_api_key_is_enforced_by_upstream_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with EmbeddedUpstream(keys=ApiKeys(api_key=KEY)) as up:
        cfg = _config(up.rest_url, up.grpc_address, log_level="DEBUG")
        async with ProxyServer(cfg) as server:
            for prefer_grpc in (False, True):
                kwargs: dict[str, Any] = {"url": f"http://127.0.0.1:{server.rest_port}",
                          "grpc_port": server.grpc_port, "prefer_grpc": prefer_grpc,
                          "https": False, "timeout": 10, "check_compatibility": False}
                anonymous = AsyncQdrantClient(**kwargs)
                with pytest.raises(Exception) as err:
                    await anonymous.get_collections()
                assert "401" in str(err.value) or "UNAUTHENTICATED" in str(err.value)
                await anonymous.close()
                client = AsyncQdrantClient(api_key=KEY, **kwargs)
                name = f"keyed_{int(prefer_grpc)}"
                await client.create_collection(name, models.VectorParams(size=4, distance=models.Distance.DOT))
                await client.upsert(name, [models.PointStruct(id=1, vector=[1.0, 0.0, 0.0, 0.0], payload={"k": 1})])
                hits = (await client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], limit=1)).points
                assert [h.id for h in hits] == [1]
                await client.close()
    assert "<redacted>" in caplog.text  # the debug lines exist and carried the header
    assert KEY not in caplog.text


# ---------------------------------------------------------------- pure header rules

@pytest.mark.parametrize(("raw", "forwarded"), [
    ([(b"Host", b"a"), (b"X-A", b"1")], [(b"X-A", b"1")]),
    ([(b"Connection", b"close, X-B"), (b"X-B", b"2"), (b"X-C", b"3")], [(b"X-C", b"3")]),
    ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5"), (b"Upgrade", b"h2c")], []),
    ([(b"Keep-Alive", b"5"), (b"Proxy-Foo", b"x"), (b"TE", b"trailers"), (b"Trailer", b"X")], []),
    ([(b"api-key", b"k"), (b"Expect", b"100-continue")], [(b"api-key", b"k")]),
])
def test_request_header_rules(raw: list[tuple[bytes, bytes]], forwarded: list[tuple[bytes, bytes]]) -> None:
    assert request_headers(raw) == forwarded


def test_response_header_rules_and_redaction() -> None:
    raw = [(b"Content-Length", b"3"), (b"Content-Type", b"x"), (b"Connection", b"keep-alive")]
    assert response_headers(raw) == [(b"Content-Type", b"x")]
    assert redact([("api-key", "s"), ("Authorization", "Bearer s"), ("x", "y")]) == [
        ("api-key", "<redacted>"), ("Authorization", "<redacted>"), ("x", "y")]


# ---------------------------------------------------------------- TLS on both sides

@pytest.fixture
def tls_files(tmp_path: Any) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl CLI)."""
    import subprocess

    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


async def test_tls_listeners_and_https_upstream(tls_files: tuple[str, str],
                                                upstream: FakeUpstream) -> None:
    import ssl

    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async def telemetry(request: web.Request) -> web.Response:
        return web.json_response({"result": "tls-upstream"})

    app = web.Application()
    app.router.add_get("/telemetry", telemetry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    try:
        cfg = _config(f"https://127.0.0.1:{runner.addresses[0][1]}", f"127.0.0.1:{upstream.grpc_port}",
                      upstream_ca_file=cert, tls_cert_file=cert, tls_key_file=key)
        async with ProxyServer(cfg) as proxy:
            client_ctx = ssl.create_default_context(cafile=cert)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"https://127.0.0.1:{proxy.rest_port}/telemetry",
                                       ssl=client_ctx) as resp:
                    assert (await resp.json())["result"] == "tls-upstream"
                with pytest.raises(aiohttp.ClientError):
                    await session.get(f"http://127.0.0.1:{proxy.rest_port}/telemetry")
            with open(cert, "rb") as fh:
                creds = grpc.ssl_channel_credentials(root_certificates=fh.read())
            async with grpc.aio.secure_channel(f"localhost:{proxy.grpc_port}", creds) as channel:
                check = channel.unary_unary("/grpc.health.v1.Health/Check")
                assert await check(b"", timeout=5) == SERVING
    finally:
        await runner.cleanup()

"""200 MiB bodies stream through a real proxy process without sitting in its memory.

The proxy runs as ``python -m switchyard.proxy proxy`` in a subprocess (ports from its ready line); the
upstream is an aiohttp test server in this process that counts uploaded bytes and generates
downloads, and relays every other call (the proxy's readiness probe and state store) to the
session's upstream: a proxy without readable state does not start. The proxy's peak RSS (VmHWM) after the transfers must exceed its RSS before them by
less than 50 MiB, in both directions and for both framings (Content-Length and chunked).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

SIZE = 200 << 20
CHUNK = 1 << 20
LIMIT = 50 << 20
ROOT = Path(__file__).resolve().parent.parent


def _status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    assert match, field
    return int(match[1]) * 1024


class Sink:
    """Upstream: counts uploads, generates downloads of SIZE bytes."""

    def __init__(self) -> None:
        self.received: list[int] = []

    async def upload(self, request: web.Request) -> web.Response:
        total = 0
        while chunk := await request.content.read(CHUNK):
            total += len(chunk)
        self.received.append(total)
        return web.json_response({"result": total, "status": "ok", "time": 0.0})

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if request.query.get("framing") == "length":
            response.content_length = SIZE
        await response.prepare(request)
        block = b"\x5a" * CHUNK
        for _ in range(SIZE // CHUNK):
            await response.write(block)
        await response.write_eof()
        return response


@pytest.fixture
async def sink(upstream: Any) -> AsyncIterator[tuple[Sink, int]]:
    handler = Sink()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/collections/c/snapshots/upload", handler.upload)
    app.router.add_get("/collections/c/snapshots/big.snapshot", handler.download)
    relay = aiohttp.ClientSession(auto_decompress=False)

    async def to_upstream(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with relay.request(request.method, upstream.rest_url + request.raw_path,
                                 data=await request.read(), headers=headers) as resp:
            body = await resp.read()
            kept = {k: v for k, v in resp.headers.items()
                    if k.lower() in ("content-type", "content-encoding")}
            return web.Response(status=resp.status, body=body, headers=kept)
    app.router.add_route("*", "/{tail:.*}", to_upstream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield handler, runner.addresses[0][1]
    await runner.cleanup()
    await relay.close()


@pytest.fixture
async def proxy_process(sink: tuple[Sink, int]) -> AsyncIterator[tuple[subprocess.Popen[str], int]]:
    """The proxy subprocess; waits off the event loop, so the sink keeps answering while the
    proxy starts and drains (its runtime talks to the upstream then too)."""
    _, port = sink
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", f"http://127.0.0.1:{port}",
         "--upstream-grpc-address", "127.0.0.1:1", "--listen-rest", "127.0.0.1:0",
         "--listen-grpc", "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        match = re.search(r"switchyard proxy ready rest=\S+:(\d+) grpc=\S+:(\d+)", line)
        assert match, line
        yield proc, int(match[1])
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)


async def _blocks() -> AsyncIterator[bytes]:
    block = b"\xa5" * CHUNK
    for _ in range(SIZE // CHUNK):
        yield block


async def test_200_mib_streams_both_ways_with_bounded_memory(
        sink: tuple[Sink, int], proxy_process: tuple[subprocess.Popen[str], int]) -> None:
    handler, _ = sink
    proc, port = proxy_process
    base = f"http://127.0.0.1:{port}/collections/c/snapshots"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(base + "/upload", data=b"warm-up") as resp:  # pools, imports
            assert resp.status == 200
        before = _status_kib(proc.pid, "VmRSS")

        async with session.post(base + "/upload", data=_blocks(),
                                headers={"Content-Length": str(SIZE)}) as resp:
            assert (await resp.json())["result"] == SIZE
        async with session.post(base + "/upload", data=_blocks()) as resp:  # chunked
            assert (await resp.json())["result"] == SIZE
        for framing in ("length", "chunked"):
            total = 0
            async with session.get(base + f"/big.snapshot?framing={framing}") as resp:
                assert resp.status == 200
                assert (resp.headers.get("Content-Length") == str(SIZE)) == (framing == "length")
                async for chunk in resp.content.iter_chunked(CHUNK):
                    total += len(chunk)
            assert total == SIZE

    peak = _status_kib(proc.pid, "VmHWM")
    assert handler.received == [7, SIZE, SIZE]
    assert peak - before < LIMIT, f"proxy grew by {(peak - before) >> 20} MiB"
    assert proc.poll() is None

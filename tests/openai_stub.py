"""An OpenAI-compatible embeddings server for tests and benchmarks, scriptable per request.

Serves ``POST /v1/embeddings`` on 127.0.0.1 (port 0) with hashing-provider vectors: the request's
``model`` is the hashing seed and its ``dimensions`` (or the stub's default) the size, so a client
can check results against :class:`switchyard.proxy.embedders.hashing.HashingEmbedder`. By default ``data``
comes back in *reverse* order, so every test exercises re-ordering by ``index``.

Each request consumes the next scripted step, if any (:meth:`OpenAIStub.script`):

* :class:`Status` — answer that HTTP status, optionally with ``Retry-After``;
* :class:`Slow` — sleep, then answer normally;
* :class:`Malformed` — answer 200 with the given body;
* :class:`WrongDim` — answer vectors of another size;
* :class:`Hold` — wait until its event is set, then answer normally (a caller stuck mid-call).

Every request is recorded (:class:`SeenRequest`: monotonic arrival time, body, Authorization),
and ``max_in_flight`` counts the most requests handled at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from switchyard.proxy.embedders.hashing import HashingEmbedder
from switchyard.proxy.modelspec import ModelSpec


@dataclass(frozen=True)
class Status:
    status: int
    retry_after: str | None = None
    body: bytes = b'{"error": {"message": "scripted failure", "type": "server_error"}}'


@dataclass(frozen=True)
class Slow:
    seconds: float


@dataclass(frozen=True)
class Malformed:
    body: bytes = b'{"object": "list", "data": "oops"'


@dataclass(frozen=True)
class WrongDim:
    dimensions: int


@dataclass(frozen=True)
class Hold:
    release: asyncio.Event


Step = Status | Slow | Malformed | WrongDim | Hold


@dataclass(frozen=True)
class SeenRequest:
    at: float
    body: dict[str, Any]
    authorization: str | None


@dataclass
class OpenAIStub:
    """The server; ``await start()`` returns its base URL, ``await stop()`` ends it."""

    default_dimensions: int = 32
    reverse: bool = True
    required_key: str | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    _steps: deque[Step] = field(default_factory=deque)
    _embedders: dict[tuple[str, int], HashingEmbedder] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0

    def script(self, *steps: Step) -> None:
        """Queue behaviours for the next requests (one step per request, then normal answers)."""
        self._steps.extend(steps)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def vectors(self, model: str, texts: list[str], dimensions: int | None = None) -> Any:
        """The vectors this stub serves for ``texts`` (what a correct client must return)."""
        return self._embedder(model, dimensions or self.default_dimensions).embed_sync(texts)

    def _embedder(self, model: str, dimensions: int) -> HashingEmbedder:
        key = (model, dimensions)
        if key not in self._embedders:
            spec = ModelSpec(id="stub", provider="hashing", model=model, dimensions=dimensions)
            self._embedders[key] = HashingEmbedder(spec)
        return self._embedders[key]

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(request)
        finally:
            self.in_flight -= 1

    async def _respond(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(SeenRequest(time.monotonic(), body, request.headers.get("Authorization")))
        if self.required_key is not None and request.headers.get("Authorization") != f"Bearer {self.required_key}":
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        step = self._steps.popleft() if self._steps else None
        if isinstance(step, Status):
            headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
            return web.Response(status=step.status, body=step.body, headers=headers, content_type="application/json")
        if isinstance(step, Malformed):
            return web.Response(status=200, body=step.body, content_type="application/json")
        if isinstance(step, Slow):
            await asyncio.sleep(step.seconds)
        if isinstance(step, Hold):
            await step.release.wait()
        dims = step.dimensions if isinstance(step, WrongDim) else body.get("dimensions") or self.default_dimensions
        return self._answer(body["model"], list(body["input"]), int(dims))

    def _answer(self, model: str, texts: list[str], dimensions: int) -> web.Response:
        vectors = self.vectors(model, texts, dimensions)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        if self.reverse:
            data.reverse()
        tokens = sum(len(t.split()) for t in texts)
        doc = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

"""The embedded upstream's REST server: Qdrant's HTTP API on aiohttp over the local engine.

:func:`build_app` turns the route tables of :mod:`rest_collections` and :mod:`rest_points` into
an ``aiohttp.web.Application``. One wrapper does what every Qdrant endpoint does: check the API
key (read-only keys may read, 403 on writes), read the body under a size limit (413 beyond it),
run the handler, and answer ``{"result": ..., "status": "ok", "time": t}``, or
``{"status": {"error": ...}, "time": t}`` with the status of the :mod:`switchyard.proxy.errors` class.
Unknown paths answer 404 and wrong methods 405, in the same shape. An unexpected exception is
logged and answered 500; the server keeps serving.

``on_response`` (tests) observes every response as ``(method, route template, status, body)``;
the template uses the OpenAPI spec's placeholder names, so responses can be checked against it.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from switchyard.proxy.embedded import rest_collections, rest_points, rest_snapshots
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.embedded.rest_codec import Ctx, Route, envelope
from switchyard.proxy.embedded.background_work import BackgroundWork
from switchyard.proxy.embedded.snapshots import SnapshotStore
from switchyard.proxy.errors import PayloadTooLarge, RateLimitExceeded, SwitchyardError

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: Paths Qdrant serves without an API key (its auth whitelist).
PUBLIC_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz"})
ResponseHook = Callable[[str, str, int, bytes], None]

_ENGINE: web.AppKey[EngineSeam] = web.AppKey("engine")
_HOOK: web.AppKey[Any] = web.AppKey("on_response", object)


def server_version() -> str:
    """The version ``GET /`` reports: the installed qdrant-client's ``major.minor.0``.

    qdrant-client warns when server and client minor versions differ by more than one; claiming
    the client's own minor keeps ``check_compatibility=True`` silent.
    """
    major, minor, *_ = importlib.metadata.version("qdrant-client").split(".")
    return f"{major}.{minor}.0"


def build_app(
    engine: EngineSeam,
    keys: ApiKeys = ApiKeys(),
    *,
    max_body: int = DEFAULT_MAX_BODY,
    on_response: ResponseHook | None = None,
    snapshots: SnapshotStore | None = None,
    background: BackgroundWork | None = None,
) -> web.Application:
    """The aiohttp application serving Qdrant's REST API on ``engine`` (collection snapshots
    in ``snapshots``; without a store they answer 501). ``?wait=false`` snapshot creations run
    in ``background``, which the caller drains before closing the engine; without one the app
    owns its own and drains it on cleanup."""
    app = web.Application(client_max_size=max_body, middlewares=[_shape_errors])
    if background is None:
        background = own = BackgroundWork()

        async def drain(_: web.Application) -> None:
            await own.drain()

        app.on_cleanup.append(drain)
    app[_ENGINE] = engine
    app[_HOOK] = on_response
    operations = itertools.count(1)
    routes = service_routes(engine) + rest_snapshots.routes(snapshots, background) + rest_collections.ROUTES
    for route in routes + rest_points.ROUTES:
        app.router.add_route(
            route.method, route.path, _wrap(route, engine, keys, operations, max_body)
        )
    return app


def _wrap(
    route: Route, engine: EngineSeam, keys: ApiKeys, operations: itertools.count[int], max_body: int
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if route.path not in PUBLIC_PATHS:
            keys.check(request.headers, write=route.write)
        body = b"" if route.raw else await _read_body(request, max_body)
        ctx = Ctx(engine, request.match_info, request.query, body, operations,
                  request if route.raw else None)
        result = await route.handler(ctx)
        if isinstance(result, web.StreamResponse):
            return result
        elapsed = time.perf_counter() - started
        return web.Response(body=envelope(result, elapsed), content_type="application/json")

    return handle


async def _read_body(request: web.Request, max_body: int) -> bytes:
    """The whole body, refusing one over ``max_body`` before reading it when the length is known."""
    if not request.body_exists:
        return b""
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds {max_body}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body exceeds {max_body} bytes") from exc


@web.middleware
async def _shape_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure in Qdrant's error shape; report each response to the test hook."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except SwitchyardError as exc:
        response = _error(exc.http_status, exc.message, started)
        if isinstance(exc, RateLimitExceeded) and exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)  # as Qdrant sends it
    except web.HTTPException as exc:
        message = "Not found" if exc.status == 404 else exc.reason
        response = _error(exc.status, message, started)
    except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
        log.exception("embedded upstream: %s %s failed", request.method, request.path)
        response = _error(500, f"Service internal error: {exc}", started)
    hook = request.app[_HOOK]
    if hook is not None and isinstance(response, web.Response):
        info = request.match_info.route.resource
        template = info.canonical if info is not None else request.path
        hook(request.method, template, response.status, response.body or b"")
    return response


def _error(status: int, message: str, started: float) -> web.Response:
    body = orjson.dumps({"status": {"error": message}, "time": time.perf_counter() - started})
    return web.Response(status=status, body=body, content_type="application/json")


# ---------------------------------------------------------------- service endpoints


def service_routes(engine: EngineSeam) -> list[Route]:
    """``/``, health probes, ``/metrics`` and a minimal ``/telemetry``."""
    instance = str(uuid.uuid4())

    async def root(ctx: Ctx) -> web.Response:
        info = {"title": "qdrant - vector search engine", "version": server_version()}
        return web.Response(body=orjson.dumps(info), content_type="application/json")

    def probe(name: str) -> Any:
        async def handler(ctx: Ctx) -> web.Response:
            return web.Response(text=f"{name} check passed", content_type="text/plain")

        return handler

    async def metrics(ctx: Ctx) -> web.Response:
        collections = await engine.call("get_collections")
        text = (
            "# HELP app_info information about qdrant server\n# TYPE app_info gauge\n"
            f'app_info{{name="qdrant",version="{server_version()}"}} 1\n'
            "# HELP collections_total number of collections\n# TYPE collections_total gauge\n"
            f"collections_total {len(collections.collections)}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def telemetry(ctx: Ctx) -> dict[str, Any]:
        collections = await engine.call("get_collections")
        return {
            "id": instance,
            "collections": {"number_of_collections": len(collections.collections)},
        }

    return [
        Route("GET", "/", root),
        Route("GET", "/healthz", probe("healthz")),
        Route("GET", "/livez", probe("livez")),
        Route("GET", "/readyz", probe("readyz")),
        Route("GET", "/metrics", metrics),
        Route("GET", "/telemetry", telemetry),
    ]


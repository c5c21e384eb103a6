"""The admin API as JSON under ``/switchyard/v1/`` (mounted by the REST front end).

Replies use Qdrant's envelope ``{"result": ..., "status": "ok", "time": t}``; errors Qdrant's
error shape with the error's status code. Who may call is decided by
:func:`switchyard.proxy.admin.access.admin_verdict` from the client's socket address (never a header the
client writes, such as ``X-Forwarded-For``): with an admin
key configured a request without it gets 401; without one only loopback peers are served and
others get 403 saying how to open the API. ``GET .../migrations/{id}/watch`` streams one JSON status per line on every change.
``POST .../migrations/{id}/verify`` takes ``{"repair": bool}`` and Qdrant's ``?wait=true|false``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from switchyard.proxy.admin.access import admin_verdict, key_from_headers
from switchyard.proxy.admin.service import AdminService
from switchyard.proxy.errors import BadRequest, SwitchyardError

P = "/switchyard/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ok(result: Any, started: float) -> web.Response:
    body = orjson.dumps({"result": result, "status": "ok", "time": time.perf_counter() - started})
    return web.Response(body=body, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def check_admin(request: web.Request, admin_key: str | None, trust_loopback: bool) -> None:
    """Raise the refusal for this caller, if any.

    The peer is ``request.remote``: the socket's address (aiohttp reads no forwarding header),
    or, behind the proxy's REST front end, the client socket's address that the front end
    carries to its own-routes app (it drops a client's header of that name)."""
    admin_verdict(request.remote, admin_key, key_from_headers(request.headers),
                  trust_loopback=trust_loopback).raise_if_refused()


def admin_routes(service: AdminService, admin_key: str | None, *,
                 trust_loopback: bool = True) -> list[web.RouteDef]:
    def wrap(call: Callable[[web.Request], Awaitable[Any]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                check_admin(request, admin_key, trust_loopback)
                return _ok(await call(request), started)
            except SwitchyardError as exc:
                return web.Response(status=exc.http_status, body=exc.to_json(time.perf_counter() - started),
                                    content_type="application/json")
        return handler

    def mid(r: web.Request) -> str:
        return r.match_info["id"]

    async def transition(r: web.Request) -> Any:
        b = await _body(r)
        return await service.transition(mid(r), str(b.get("name") or ""), b.get("expected_rev"),
                                        b.get("require_eval"), b.get("max_age"))

    async def read_mode(r: web.Request) -> Any:
        b = await _body(r)
        return await service.read_mode(mid(r), str(b.get("mode") or ""), b.get("expected_rev"))

    async def throttle(r: web.Request) -> Any:
        body = await _body(r)
        return await service.throttle(mid(r), body.get("points_per_second"), body.get("unthrottled"))

    async def cleanup(r: web.Request) -> Any:
        return await service.cleanup(mid(r), (await _body(r)).get("yes") is True)

    async def verify(r: web.Request) -> Any:
        return await service.verify(mid(r), (await _body(r)).get("repair"), r.query.get("wait"))

    async def plan(r: web.Request) -> Any:
        return await service.plan(await _body(r))

    M = P + "/migrations/{id}"
    return [
        web.get(P + "/models", wrap(lambda r: service.models())),
        web.get(P + "/bindings", wrap(lambda r: service.bindings())),
        web.get(P + "/migrations", wrap(lambda r: service.list())),
        web.post(P + "/migrations", wrap(plan)),
        web.get(M, wrap(lambda r: service.get(mid(r)))),
        web.post(M + "/transition", wrap(transition)),
        web.post(M + "/read-mode", wrap(read_mode)),
        web.post(M + "/pause", wrap(lambda r: service.pause(mid(r)))),
        web.post(M + "/resume", wrap(lambda r: service.resume(mid(r)))),
        web.post(M + "/throttle", wrap(throttle)),
        web.post(M + "/verify", wrap(verify)),
        web.post(M + "/cleanup", wrap(cleanup)),
        web.get(M + "/watch", _watch_handler(service, admin_key, trust_loopback)),
    ]


def _watch_handler(service: AdminService, admin_key: str | None, trust_loopback: bool) -> Handler:
    async def watch(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            check_admin(request, admin_key, trust_loopback)
            updates = service.watch(request.match_info["id"], float(request.query.get("interval", 1.0)))
            first = await anext(updates)
        except (SwitchyardError, ValueError) as exc:
            err = exc if isinstance(exc, SwitchyardError) else BadRequest(str(exc))
            return web.Response(status=err.http_status, body=err.to_json(time.perf_counter() - started),
                                content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(orjson.dumps(first) + b"\n")
        async for status in updates:
            await resp.write(orjson.dumps(status) + b"\n")
        return resp
    return watch

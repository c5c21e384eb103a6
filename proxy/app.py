"""The proxy process: config + upstream clients + both front ends + interceptor, one event loop.

:class:`ProxyServer` is the in-process API (tests, ``switchyard proxy``, ``switchyard up``):
``await start()`` binds both listeners (port 0 picks one; read ``rest_port`` / ``grpc_port``),
``await stop()`` stops accepting, drains calls in flight for up to ``drain_seconds``, cancels
the owned background tasks and closes the upstream clients. Background work (heartbeats, state
watchers) is started with :meth:`ProxyServer.spawn`, never a bare ``create_task``, so shutdown
can drain it. Extra aiohttp routes under ``/switchyard/`` (the admin API) and extra gRPC
handlers (``switchyard.v1.Admin``) are added with :meth:`add_routes` / :meth:`add_grpc_handlers`
before ``start()``. :class:`ThreadedProxy` runs one in a thread for synchronous tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
from collections.abc import Coroutine, Iterable
from typing import Any

from switchyard.proxy.config import ProxyConfig, parse_hostport
from switchyard.proxy.errors import ConfigError, UpstreamError
from switchyard.proxy.frontend.rest import RestFrontend
from switchyard.proxy.frontend.server import start_grpc, start_rest
from switchyard.proxy.readiness import Readiness
from switchyard.proxy.upstream.grpc_client import GrpcUpstream
from switchyard.proxy.upstream.rest_client import RestUpstream
from switchyard.proxy.wire import Interceptor, RestCall

log = logging.getLogger("switchyard.proxy")


class ProxyServer:
    """Both listeners of one proxy; see the module docstring."""

    def __init__(self, config: ProxyConfig, interceptor: Interceptor | None = None, *,
                 drain_seconds: float = 10.0, reuse_port: bool = False) -> None:
        self.config = config
        self.drain_seconds = drain_seconds
        self.reuse_port = reuse_port  # several worker processes share the listeners
        self.interceptor = interceptor
        self._extra_routes: list[Any] = []
        self._extra_grpc: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: Any = None
        self._grpc_server: Any = None
        self._rest: RestFrontend | None = None
        self.readiness: Readiness | None = None  # readyz and the ready line (switchyard.proxy.readiness)
        self._rest_upstream: RestUpstream | None = None
        self._grpc_upstream: GrpcUpstream | None = None
        self._rest_port = 0
        self._grpc_port = 0

    # -- extension points (before start)

    def add_routes(self, routes: Iterable[Any]) -> None:
        """aiohttp route definitions, each under ``/switchyard/``."""
        if self._runner is not None:
            raise RuntimeError("add_routes() must be called before start()")
        self._extra_routes.extend(routes)

    def add_grpc_handlers(self, handlers: Iterable[Any]) -> None:
        """``grpc.GenericRpcHandler``s consulted before the pass-through (e.g. the admin service)."""
        if self._grpc_server is not None:
            raise RuntimeError("add_grpc_handlers() must be called before start()")
        self._extra_grpc.extend(handlers)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Start an owned background task; it is cancelled and awaited by :meth:`stop`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    # -- lifecycle

    @property
    def rest_port(self) -> int:
        return self._rest_port

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def rest_address(self) -> str:
        return f"{parse_hostport(self.config.listen_rest)[0]}:{self._rest_port}"

    @property
    def grpc_address(self) -> str:
        return f"{parse_hostport(self.config.listen_grpc)[0]}:{self._grpc_port}"

    async def start(self) -> None:
        """Create the upstream clients and bind both listeners."""
        cfg = self.config
        server_ssl = _server_ssl(cfg)
        starter = getattr(self.interceptor, "start", None)
        if starter is not None:  # the Switchyard runtime: state cache, admin API, heartbeats
            await starter(self)
        self._rest_upstream = RestUpstream(cfg.upstream_rest_url, timeout=cfg.upstream_timeout,
                                           ca_file=cfg.upstream_ca_file)
        self._grpc_upstream = _grpc_upstream(cfg)
        self._rest = RestFrontend(self._rest_upstream, self.interceptor,
                                  max_body_size=cfg.max_body_size)
        guard = getattr(self.interceptor, "state_guard", None)
        self.readiness = Readiness(self._probe_upstream, guard.stale if guard is not None else None)
        self._rest.readiness = self.readiness
        self._runner = await start_rest(self._rest, self._extra_routes, cfg, server_ssl,
                                        drain_seconds=self.drain_seconds, reuse_port=self.reuse_port)
        self._rest_port = self._runner.port
        self._grpc_server, self._grpc_port = await start_grpc(
            self._grpc_upstream, self.interceptor, cfg, self._extra_grpc, reuse_port=self.reuse_port)
        log.info("proxy listening rest=%s grpc=%s upstream=%s", self.rest_address,
                 self.grpc_address, cfg.upstream_rest_url)
        # Everything alive now (modules, clients, models) lives as long as the process: keep
        # the cyclic collector from re-scanning it. A 1,024-point write allocates thousands of
        # containers, and each full collection over the start-up heap cost milliseconds.
        gc.freeze()

    async def _probe_upstream(self) -> None:
        """Readiness: the upstream answers Qdrant's ``GET /readyz`` (no key needed) below 500."""
        assert self._rest_upstream is not None
        reply = await self._rest_upstream.request(RestCall("GET", "/readyz", "", (), b""))
        if reply.status >= 500:
            raise UpstreamError(f"GET /readyz answered {reply.status}")

    async def wait_ready(self, timeout: float) -> None:
        """Bounded wait until ``/switchyard/readyz`` would answer 200 (``switchyard.proxy.readiness``);
        raises :class:`~switchyard.proxy.readiness.NotReady` naming what is missing."""
        if self.readiness is not None:
            await self.readiness.wait(timeout)

    async def stop(self) -> None:
        """Stop accepting, drain in-flight calls (up to ``drain_seconds``), then tear down."""
        grace = self.drain_seconds
        if self.readiness is not None:
            self.readiness.stopping = True
        if self._rest is not None:
            self._rest.ready = False
        notice = getattr(self.interceptor, "draining", None)
        if notice is not None:  # long admin jobs end first, so their waiting callers get answers
            await notice()
        draining = []  # both listeners drain at the same time, each for up to ``grace``
        if self._grpc_server is not None:
            draining.append(self._grpc_server.stop(grace))
        if self._runner is not None:
            draining.append(self._runner.close(grace))
        await asyncio.gather(*draining)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._rest_upstream is not None:
            await self._rest_upstream.close()
        if self._grpc_upstream is not None:
            await self._grpc_upstream.close()
        stopper = getattr(self.interceptor, "stop", None)
        if stopper is not None:
            await stopper()
        self._runner = self._grpc_server = None

    async def __aenter__(self) -> ProxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _server_ssl(cfg: ProxyConfig) -> ssl.SSLContext | None:
    if cfg.tls_cert_file is None or cfg.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert_file/tls_key_file: cannot load: {exc}") from exc
    return ctx


def _grpc_upstream(cfg: ProxyConfig) -> GrpcUpstream:
    try:
        return GrpcUpstream(cfg.upstream_grpc_address, tls=cfg.upstream_grpc_tls,
                       ca_file=cfg.upstream_ca_file)
    except OSError as exc:
        raise ConfigError(f"upstream_ca_file: cannot read: {exc}") from exc


class ThreadedProxy:
    """A :class:`ProxyServer` on its own event loop in a daemon thread, for synchronous tests."""

    def __init__(self, config: ProxyConfig, interceptor: Interceptor | None = None) -> None:
        self.server = ProxyServer(config, interceptor)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="switchyard-proxy")

    def start(self) -> ThreadedProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def rest_port(self) -> int:
        return self.server.rest_port

    @property
    def grpc_port(self) -> int:
        return self.server.grpc_port

    def __enter__(self) -> ThreadedProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

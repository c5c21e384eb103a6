"""Binding the listeners: the REST listener (+ its own-routes app) and the grpc.aio server.

Kept apart from :mod:`switchyard.proxy.app` so only front-end modules import aiohttp and grpc. With
``reuse_port`` (several workers) both listeners set ``SO_REUSEPORT`` so the kernel spreads
connections over the workers; otherwise a busy port fails loudly.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from aiohttp import web

from switchyard.proxy.config import ProxyConfig, parse_hostport
from switchyard.proxy.errors import ConfigError
from switchyard.proxy.frontend.grpc import GrpcFrontend
from switchyard.proxy.frontend.http_protocol import HttpServer
from switchyard.proxy.frontend.rest import RestFrontend, socketpair_connector
from switchyard.proxy.upstream.rest_client import RestUpstream
from switchyard.proxy.upstream.grpc_client import MAX_MESSAGE_BYTES, GrpcUpstream
from switchyard.proxy.wire import Interceptor

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


def grpc_server_options(cfg: ProxyConfig, *, reuse_port: bool = False) -> tuple[tuple[str, int], ...]:
    """Server options: message limits, port sharing, keepalive pings and the idle bound (pure).

    ``grpc.so_reuseport`` only with several workers: alone, a busy port must fail loudly.
    Keepalive pings every ``grpc_keepalive_time`` find dead peers; ``grpc_max_connection_idle``
    closes (GOAWAY) a connection without calls for that long; clients may ping every 10 s.
    """
    return (*SERVER_OPTIONS,
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.keepalive_time_ms", int(cfg.grpc_keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_connection_idle_ms", int(cfg.grpc_max_connection_idle * 1000)),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1))


#: Own routes may stream for a long time (``/watch``): their reads get a day, not upstream_timeout.
_OWN_ROUTES_TIMEOUT = 86_400.0


class RestListener:
    """The REST listener and the own-routes app behind it; :meth:`close` drains both."""

    def __init__(self, server: HttpServer, runner: web.AppRunner, own: RestUpstream, port: int) -> None:
        self.server = server
        self.runner = runner
        self.own = own
        self.port = port

    async def close(self, grace: float) -> None:
        await self.server.close(grace)
        await self.own.close()
        await self.runner.cleanup()


async def start_rest(frontend: RestFrontend, extra_routes: Sequence[Any], cfg: ProxyConfig,
                     ssl_context: ssl.SSLContext | None, *, drain_seconds: float = 10.0,
                     reuse_port: bool = False) -> RestListener:
    """Start the own-routes app (reached over socket pairs) and the REST listener.

    ``handler_cancellation`` on the app: an admin caller that goes away cancels its handler.
    """
    runner = web.AppRunner(frontend.build_app(extra_routes), handler_cancellation=True,
                           access_log=None, shutdown_timeout=drain_seconds, tcp_keepalive=False)
    await runner.setup()
    assert runner.server is not None
    frontend.own = RestUpstream("http://switchyard", timeout=_OWN_ROUTES_TIMEOUT, host_header=None,
                                connect=socketpair_connector(runner.server, 1 << 20))
    server = HttpServer(frontend.handle, header_timeout=cfg.rest_header_timeout,
                        idle_timeout=cfg.rest_idle_timeout)
    host, port = parse_hostport(cfg.listen_rest)
    try:
        bound = await server.listen(host, port, ssl_context, reuse_port=reuse_port)
    except OSError as exc:
        await frontend.own.close()
        await runner.cleanup()
        raise ConfigError(f"listen_rest: cannot listen on {cfg.listen_rest}: {exc}") from exc
    return RestListener(server, runner, frontend.own, bound)


async def start_grpc(upstream: GrpcUpstream, interceptor: Interceptor | None, cfg: ProxyConfig,
                     extra_handlers: Sequence[Any], *,
                     reuse_port: bool = False) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server: extra handlers first, then the pass-through for everything."""
    frontend = GrpcFrontend(upstream, interceptor, upstream_timeout=cfg.upstream_timeout)
    server = grpc.aio.server(handlers=[*extra_handlers, frontend],
                             options=grpc_server_options(cfg, reuse_port=reuse_port))
    creds = _server_credentials(cfg)
    try:
        port = (server.add_secure_port(cfg.listen_grpc, creds) if creds is not None
                else server.add_insecure_port(cfg.listen_grpc))
    except RuntimeError:
        port = 0
    if port == 0:
        await server.stop(None)
        raise ConfigError(f"listen_grpc: cannot listen on {cfg.listen_grpc}")
    await server.start()
    return server, port


def _server_credentials(cfg: ProxyConfig) -> grpc.ServerCredentials | None:
    if not (cfg.tls_cert_file and cfg.tls_key_file):
        return None
    try:
        with open(cfg.tls_key_file, "rb") as key, open(cfg.tls_cert_file, "rb") as cert:
            return grpc.ssl_server_credentials([(key.read(), cert.read())])
    except OSError as exc:
        raise ConfigError(f"tls_cert_file/tls_key_file: cannot read: {exc}") from exc

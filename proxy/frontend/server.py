"""Binding the listeners: the aiohttp runner/site and the grpc.aio server, with TLS if set.

Kept apart from :mod:`proxy.app` so only front-end modules import aiohttp and grpc.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from aiohttp import web

from proxy.config import ProxyConfig, parse_hostport
from proxy.errors import ConfigError
from proxy.frontend.grpc import GrpcFrontend
from proxy.upstream.grpc_client import MAX_MESSAGE_BYTES, GrpcUpstream
from proxy.wire import Interceptor

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a busy port must fail loudly, not be shared silently
)


async def start_rest(app: web.Application, listen: str, ssl_context: ssl.SSLContext | None,
                     *, drain_seconds: float = 10.0) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner (``cleanup()`` drains) and the bound port.

    ``handler_cancellation``: a client disconnect cancels its handler and so the upstream call.
    ``auto_decompress=False``: compressed request bodies are forwarded as they came.
    """
    runner = web.AppRunner(app, handler_cancellation=True, auto_decompress=False,
                           access_log=None, shutdown_timeout=drain_seconds)
    await runner.setup()
    host, port = parse_hostport(listen)
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"listen_rest: cannot listen on {listen}: {exc}") from exc
    return runner, int(runner.addresses[0][1])


async def start_grpc(upstream: GrpcUpstream, interceptor: Interceptor | None, cfg: ProxyConfig,
                     extra_handlers: Sequence[Any]) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server: extra handlers first, then the pass-through for everything."""
    frontend = GrpcFrontend(upstream, interceptor, upstream_timeout=cfg.upstream_timeout)
    server = grpc.aio.server(handlers=[*extra_handlers, frontend], options=SERVER_OPTIONS)
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

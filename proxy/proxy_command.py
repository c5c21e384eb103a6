"""``switchyard proxy`` and ``switchyard up``: run the sidecar until SIGINT/SIGTERM.

``switchyard proxy`` forwards to an existing Qdrant (``--upstream-rest-url``,
``--upstream-grpc-address``). ``switchyard up`` starts the embedded upstream on internal loopback
ports and the proxy in front of it (6333/6334 by default), in one process and one event loop.
Both print one line to stdout when ready, so scripts and tests that ask for port 0 learn the
real ports::

    switchyard proxy ready rest=127.0.0.1:6333 grpc=127.0.0.1:6334 upstream=http://qdrant:6333

Both listen on 127.0.0.1 unless told otherwise (``--listen-rest 0.0.0.0:6333``, env
``SWITCHYARD_LISTEN_REST``, config ``listen_rest``; the container image sets that), and without
an admin key the admin API answers loopback callers only. Keys are best given as files
(``--admin-key-file``, ``--upstream-api-key-file``, ``up --api-key-file``): flags show in ``ps``.

On a signal the listeners stop accepting, calls in flight drain (``--drain-seconds``), owned
background tasks are cancelled and upstream connections close. Every config option has a flag,
a ``SWITCHYARD_*`` variable and a config-file key (``--config FILE``, TOML or JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from switchyard.proxy.config import (
    INPUT_NAMES,
    OPTION_HELP,
    ProxyConfig,
    env_name,
    flag_name,
    load_config,
    parse_hostport,
)
from switchyard.proxy.embedded.command import add_storage_snapshot_arguments, force_snapshot
from switchyard.proxy.embedded.engines import add_engine_argument
from switchyard.proxy.errors import ConfigError
from switchyard.proxy.secret_sources import add_secret_argument

if TYPE_CHECKING:  # the server stack loads when a command runs: `switchyard --help` stays cheap
    from switchyard.proxy.app import ProxyServer

#: Module whose ``build_interceptor(config)`` supplies the interception path, when it exists.
INTERCEPTOR_MODULE = "switchyard.proxy.interception"
_UPSTREAM_OPTIONS = ("upstream_rest_url", "upstream_grpc_address", "upstream_grpc_tls",
                     "upstream_ca_file")


def register(subparsers: Any) -> None:
    """Add ``proxy`` and ``up`` to the ``switchyard`` parser."""
    proxy = subparsers.add_parser(
        "proxy", help="run the sidecar proxy in front of a Qdrant", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_flags(proxy, INPUT_NAMES)
    proxy.set_defaults(handler=run_proxy)

    up = subparsers.add_parser(
        "up", help="run the embedded upstream and the proxy in front of it, in one process",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = up.add_mutually_exclusive_group()
    where.add_argument("--path", metavar="DIR", help="embedded upstream data directory")
    where.add_argument("--memory", action="store_true", help="keep data in memory (default)")
    up.add_argument("--rest-port", type=int, default=None, help="proxy REST port (default 6333)")
    up.add_argument("--grpc-port", type=int, default=None, help="proxy gRPC port (default 6334)")
    add_secret_argument(up, "--api-key", help="API key the embedded upstream requires (the proxy "
                        "uses it for its state store unless --upstream-api-key is given)")
    add_engine_argument(up)
    add_storage_snapshot_arguments(up)
    _add_config_flags(up, tuple(n for n in INPUT_NAMES if n not in _UPSTREAM_OPTIONS))
    up.set_defaults(handler=run_up)


def _add_config_flags(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("SWITCHYARD_CONFIG"),
                        help="config file, TOML or JSON (env SWITCHYARD_CONFIG)")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="how long in-flight calls may finish on shutdown (default 10)")
    for name in names:
        # log_level has its own dest: the top-level --log-level would be overwritten otherwise
        dest = "proxy_log_level" if name == "log_level" else name
        parser.add_argument(flag_name(name), dest=dest, default=None, metavar="VALUE",
                            help=f"{OPTION_HELP[name]} (env {env_name(name)})")


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> ProxyConfig:
    """Load the config from flags, ``os.environ`` and ``--config``; ``overrides`` win."""
    values = {name: getattr(args, name, None) for name in INPUT_NAMES}
    values["log_level"] = getattr(args, "proxy_log_level", None)
    if values["log_level"] is None and str(getattr(args, "log_level", "INFO")).upper() != "INFO":
        values["log_level"] = args.log_level
    values.update(overrides or {})
    text = None
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {args.config}: {exc}") from exc
    return load_config(values, os.environ, text)


def run_proxy(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.workers > 1:  # a supervisor of N proxy processes sharing the listeners
        from switchyard.proxy.supervisor import Supervisor

        return Supervisor(config, args.drain_seconds).run()
    return _run(lambda: _serve(config, None, args.drain_seconds))


def serve_worker(config: ProxyConfig, drain: float, index: int, ready: Any) -> None:
    """A worker process of :class:`switchyard.proxy.supervisor.Supervisor`: one proxy on shared ports."""
    logging.basicConfig(level=config.log_level,
                        format=f"%(asctime)s %(levelname)s %(name)s[w{index}]: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    code = _run(lambda: _serve(config, None, drain, worker=(index, ready)))
    raise SystemExit(code)


def run_up(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    base = config_from_args(args)
    if base.upstream_api_key is None and args.api_key:
        overrides["upstream_api_key"] = args.api_key  # the state store is the embedded upstream
    if args.rest_port is not None:
        overrides["listen_rest"] = f"{parse_hostport(base.listen_rest)[0]}:{args.rest_port}"
    if args.grpc_port is not None:
        overrides["listen_grpc"] = f"{parse_hostport(base.listen_grpc)[0]}:{args.grpc_port}"
    if base.workers > 1:
        raise ConfigError("workers: switchyard up runs one process (embedded upstream and proxy); "
                          "use switchyard upstream + switchyard proxy --workers N")
    return _run(lambda: _serve_up(args, overrides))


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop when installed (measured ~1.45x faster for the proxy), else asyncio; large
    bodies' memory is kept for the next ones (``switchyard.proxy.heap``)."""
    from switchyard.proxy.heap import keep_large_buffers

    keep_large_buffers()
    try:
        import uvloop
        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


async def _serve(config: ProxyConfig, upstream: Any, drain: float,
                 worker: tuple[int, Any] | None = None) -> int:
    """Start the proxy, print the ready line, wait for SIGINT/SIGTERM, drain and stop.

    ``worker``: (index, pipe) of a supervised worker; it binds with SO_REUSEPORT and reports
    ready on the pipe instead of printing the ready line."""
    from switchyard.proxy.app import ProxyServer
    from switchyard.proxy.frontend.metrics import mark_worker

    logging.getLogger().setLevel(config.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server: ProxyServer | None = None
    try:
        server = ProxyServer(config, _interceptor(config), drain_seconds=drain,
                             reuse_port=worker is not None)
        await server.start()
        await server.wait_ready(config.ready_timeout)  # NotReady names what is missing: exit 1
        mark_worker(worker[0] if worker is not None else 0)
        if worker is not None:
            worker[1].send(worker[0])
        else:
            print(f"switchyard proxy ready rest={server.rest_address} grpc={server.grpc_address} "
                  f"upstream={config.upstream_rest_url}", flush=True)
        await stop.wait()
    finally:
        if server is not None:
            await server.stop()
        if upstream is not None:
            await upstream.stop()
    print("switchyard proxy stopped", file=sys.stderr, flush=True)
    return 0


async def _serve_up(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """The embedded upstream on loopback ports (with ``--storage-snapshot``, recovered from it
    first: a refusal exits 2 with the reason, as ``switchyard upstream`` does), then the proxy
    in front of it."""
    from switchyard.proxy.embedded.auth import ApiKeys
    from switchyard.proxy.embedded.server import EmbeddedUpstream
    from switchyard.proxy.errors import SwitchyardError

    upstream = EmbeddedUpstream(path=None if args.memory else args.path, host="127.0.0.1",
                                http_port=0, grpc_port=0, keys=ApiKeys(api_key=args.api_key),
                                engine=args.engine, storage_snapshot=args.storage_snapshot,
                                force_snapshot=force_snapshot(args))
    try:
        await upstream.start()
    except SwitchyardError as exc:  # e.g. a storage snapshot that cannot be recovered
        print(f"switchyard up: {exc.message}", file=sys.stderr, flush=True)
        return 2
    try:
        config = config_from_args(args, {**overrides, "upstream_rest_url": upstream.rest_url,
                                         "upstream_grpc_address": upstream.grpc_address})
    except BaseException:
        await upstream.stop()
        raise
    return await _serve(config, upstream, args.drain_seconds)


def _interceptor(config: ProxyConfig) -> Any:
    """The lead's interception path if it provides a factory, else pure pass-through."""
    try:
        module = importlib.import_module(INTERCEPTOR_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != INTERCEPTOR_MODULE:
            raise
        return None
    factory = getattr(module, "build_interceptor", None)
    return factory(config) if factory is not None else None

"""``switchyard upstream``: run the embedded Qdrant-compatible server until SIGINT/SIGTERM.

Once both listeners are bound it prints one line to stdout, so scripts and tests that ask for
port 0 learn the real ports::

    switchyard upstream ready http=127.0.0.1:6333 grpc=127.0.0.1:6334

On a signal it drains (listeners close, in-flight calls finish) and closes storage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from switchyard.proxy.embedded.engines import add_engine_argument
from switchyard.proxy.secret_sources import add_secret_argument

# The server stack (aiohttp, grpc, qdrant-client, the engines) is imported when the command
# runs, not when the parser is built: ``switchyard --help`` must stay cheap (bench/cli.py).


def register(subparsers: Any) -> None:
    """Add the ``upstream`` subcommand to the ``switchyard`` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "upstream",
        help="run the embedded Qdrant-compatible server (REST + gRPC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--path", help="store data in DIR (survives restarts)", metavar="DIR")
    where.add_argument("--memory", action="store_true", help="keep data in memory (default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=6333, help="REST port, 0 = any (default 6333)")
    p.add_argument("--grpc-port", type=int, default=6334, help="gRPC port, 0 = any (default 6334)")
    add_secret_argument(p, "--api-key", help="require this key for every call")
    add_secret_argument(p, "--read-only-api-key", help="a key that may only read")
    p.add_argument(
        "--max-body", type=int, default=None,
        help="largest REST body in bytes (default: the embedded server's, 32 MiB)",
    )
    p.add_argument(
        "--readers", type=_positive, default=os.environ.get("SWITCHYARD_UPSTREAM_READERS"),
        help="threads serving reads at once; writes always run alone "
             "(env SWITCHYARD_UPSTREAM_READERS; default: cores, at most 4)",
    )
    p.add_argument(
        "--snapshots-path", default=os.environ.get("SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH") or None,
        metavar="DIR", help="where collection snapshots are kept; recovery reads only file:// "
                            "locations inside it (env SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH; default "
                            "DIR/snapshots with --path, else a temporary directory)",
    )
    p.add_argument(
        "--max-snapshot-upload", type=_positive,
        default=os.environ.get("SWITCHYARD_UPSTREAM_MAX_SNAPSHOT_UPLOAD") or None, metavar="BYTES",
        help="largest snapshot upload in bytes (env SWITCHYARD_UPSTREAM_MAX_SNAPSHOT_UPLOAD; "
             "default 1 GiB)",
    )
    add_storage_snapshot_arguments(p)
    add_engine_argument(p)
    p.set_defaults(handler=run)


def add_storage_snapshot_arguments(p: argparse.ArgumentParser) -> None:
    """``--storage-snapshot FILE`` and ``--force-snapshot`` (Qdrant's flags), with their
    environment variables: shared by ``switchyard upstream`` and ``switchyard up``; read the
    outcome with :func:`force_snapshot`."""
    p.add_argument(
        "--storage-snapshot", metavar="FILE",
        default=os.environ.get("SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT") or None,
        help="recover every collection and alias of this full-storage snapshot (POST /snapshots) "
             "before serving (env SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT; refused if one exists "
             "already, unless --force-snapshot)",
    )
    p.add_argument(
        "--force-snapshot", action="store_true",
        help="let --storage-snapshot overwrite existing collections and aliases "
             "(env SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT=true)",
    )


def force_snapshot(args: argparse.Namespace) -> bool:
    """``--force-snapshot``, or ``SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT`` true."""
    return bool(args.force_snapshot) or _flag(os.environ.get("SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT", ""))


def _flag(text: str) -> bool:
    """An on/off environment value (read when the command runs, so a bad one stops only it)."""
    value = text.strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT: expected true or false, got {text!r}")


def _positive(text: str | int) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from switchyard.proxy.embedded.server import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(serve(args))
    finally:
        loop.close()


async def serve(args: argparse.Namespace) -> int:
    """Start, announce the ports, wait for a signal, stop."""
    from switchyard.proxy.embedded.auth import ApiKeys
    from switchyard.proxy.embedded.rest_app import DEFAULT_MAX_BODY
    from switchyard.proxy.embedded.server import EmbeddedUpstream
    from switchyard.proxy.errors import SwitchyardError

    server = EmbeddedUpstream(
        path=None if args.memory else args.path,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        keys=ApiKeys(api_key=args.api_key, read_only_api_key=args.read_only_api_key),
        max_body=DEFAULT_MAX_BODY if args.max_body is None else args.max_body,
        readers=_positive(args.readers) if args.readers is not None else None,
        engine=args.engine,
        max_snapshot_upload=(_positive(args.max_snapshot_upload)
                             if args.max_snapshot_upload is not None else None),
        snapshots_path=args.snapshots_path,
        storage_snapshot=args.storage_snapshot,
        force_snapshot=force_snapshot(args),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except SwitchyardError as exc:  # e.g. a storage snapshot that cannot be recovered
        print(f"switchyard upstream: {exc.message}", file=sys.stderr, flush=True)
        return 2
    try:
        print(
            f"switchyard upstream ready http={server.host}:{server.http_port} "
            f"grpc={server.host}:{server.grpc_port} engine={server.engine_name}",
            flush=True,
        )
        await stop.wait()
    finally:
        await server.stop()
    print("switchyard upstream stopped", file=sys.stderr, flush=True)
    return 0

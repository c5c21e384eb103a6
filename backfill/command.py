"""``switchyard backfill MIGRATION`` (the daemon) and ``switchyard verify MIGRATION [--repair]``.

Both talk to Qdrant (or a Switchyard proxy, which forwards the state store untouched) at
``--url`` (env ``SWITCHYARD_URL``) with qdrant-client; several daemons on one migration
share its partitions. ``--set-batch-size N`` changes the batch size of every running daemon
(clamped to [1, 1024]) and exits. ``--executor ray [--address ADDR] [--actors N]`` runs the
embedding step on a Ray Data actor pool (:mod:`switchyard.backfill.ray_executor`, the ``ray``
extra); everything else stays in this daemon.

The daemon rides out transient failures (:mod:`switchyard.backfill.outage`) and exits only on a permanent
one, printing the reason: code 0 when the migration ended (cancelled, completed, deleted) or
the work is done, 1 for a refused credential or another refusal, 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from typing import TYPE_CHECKING

from switchyard.backfill.settings import BATCH_COUNTER, DaemonConfig, clamp_batch
from switchyard.proxy.errors import ConfigError
from switchyard.proxy.secret_sources import add_secret_argument
from switchyard.proxy.state.records import STATE_COLLECTION

if TYPE_CHECKING:  # the daemon and the client stack load when a command runs (proxy/command_loading.py)
    from switchyard.proxy.embedders import Embedder
    from switchyard.proxy.modelspec import ModelSpec
    from switchyard.proxy.state.store import StateStore

DEFAULT_URL = "http://localhost:6333"
_DEFAULTS = DaemonConfig()


def register(sub: Any) -> None:
    p = sub.add_parser("backfill", help="re-embed a migration's source into its target (daemon)")
    _common(p)
    p.add_argument("--once", action="store_true", help="exit when every partition is done")
    p.add_argument("--batch-size", type=int, help=_env_help("batch_size"))
    p.add_argument("--concurrency", type=int, help=_env_help("concurrency", "batches prepared ahead of the writer"))
    p.add_argument("--text-fetcher", help=_env_help("text_fetcher", "URL or module:callable (default: the "
                                                                    "payload's text field)"))
    p.add_argument("--lease-ttl", type=float, help=_env_help("lease_ttl"))
    p.add_argument("--owner", help=_env_help("owner", "daemon name in leases and progress (default: random)"))
    p.add_argument("--progress-interval", type=float, help=_env_help("progress_interval"))
    p.add_argument("--retry-base", type=float, help=_env_help(
        "retry_base", "first wait in seconds after a transient failure (doubles, with jitter)"))
    p.add_argument("--retry-max", type=float, help=_env_help(
        "retry_max", "longest wait in seconds between retries of a transient failure"))
    p.add_argument("--hot-recheck", type=float, help=_env_help(
        "hot_recheck", "re-read the hot-document counts every so many seconds and visit ids that "
                       "became hot after the plan first (clamped to [1, 3600]; 0: off)"))
    p.add_argument("--metrics-port", type=int, help=_env_help("metrics_port", "serve Prometheus metrics on this port"))
    p.add_argument("--metrics-addr", help=_env_help(
        "metrics_addr", "address the metrics port binds (default 127.0.0.1; 0.0.0.0 in a container)"))
    p.add_argument("--set-batch-size", type=int, help="change the running daemons' batch size and exit")
    p.add_argument("--executor", choices=("local", "ray"), help=_env_help(
        "executor", "where the embedding runs: in this process (local, the default), or on a Ray Data "
                    "actor pool (ray; needs switchyard[ray]); leases, checkpoints and writes stay here"))
    p.add_argument("--address", help=_env_help(
        "address", "with --executor ray: the Ray cluster (ray://host:10001, host:6379, auto; default: "
                   "RAY_ADDRESS, else a local loopback-only instance)"))
    p.add_argument("--actors", type=int, help=_env_help(
        "actors", "with --executor ray: embedding actors, each with the model loaded once (GPUs per "
                  "actor: the model spec's `gpus`)"))
    p.set_defaults(handler=lambda a: asyncio.run(_backfill(a)))
    v = sub.add_parser("verify", help="merge-join source and target; --repair fixes differences")
    _common(v)
    v.add_argument("--repair", action="store_true")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=lambda a: asyncio.run(_verify(a)))


#: The daemon's knobs that also come from the environment: dest -> (variable, type, default).
#: A flag on the command line wins over the variable, the variable over the default. The names
#: are registered in ``proxy/env_names.py`` (unknown ``SWITCHYARD_*`` variables are reported).
ENV_KNOBS: dict[str, tuple[str, Callable[[str], Any], Any]] = {
    "batch_size": ("SWITCHYARD_BACKFILL_BATCH_SIZE", int, _DEFAULTS.batch_size),
    "concurrency": ("SWITCHYARD_BACKFILL_CONCURRENCY", int, _DEFAULTS.concurrency),
    "text_fetcher": ("SWITCHYARD_BACKFILL_TEXT_FETCHER", str, None),
    "lease_ttl": ("SWITCHYARD_BACKFILL_LEASE_TTL", float, _DEFAULTS.lease_ttl),
    "owner": ("SWITCHYARD_BACKFILL_OWNER", str, None),
    "progress_interval": ("SWITCHYARD_BACKFILL_PROGRESS_INTERVAL", float, _DEFAULTS.progress_interval),
    "retry_base": ("SWITCHYARD_BACKFILL_RETRY_BASE", float, _DEFAULTS.retry_base),
    "retry_max": ("SWITCHYARD_BACKFILL_RETRY_MAX", float, _DEFAULTS.retry_max),
    "hot_recheck": ("SWITCHYARD_BACKFILL_HOT_RECHECK", float, _DEFAULTS.hot_recheck),
    "metrics_port": ("SWITCHYARD_BACKFILL_METRICS_PORT", int, None),
    "metrics_addr": ("SWITCHYARD_BACKFILL_METRICS_ADDR", str, "127.0.0.1"),
    "executor": ("SWITCHYARD_BACKFILL_EXECUTOR", str, "local"),
    "address": ("SWITCHYARD_BACKFILL_ADDRESS", str, None),
    "actors": ("SWITCHYARD_BACKFILL_ACTORS", int, 2),
}


def _env_help(dest: str, text: str = "") -> str:
    env, _, default = ENV_KNOBS[dest]
    shown = "" if default is None else f"; default {default}"
    return f"{text} (env {env}{shown})".lstrip()


def knobs_from_env(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill each knob the command line left unset from its variable, else its default; a value
    that does not parse is a :class:`ConfigError` naming the variable (it exits 2)."""
    for dest, (env, kind, default) in ENV_KNOBS.items():
        if getattr(args, dest, None) is not None:
            continue
        raw = environ.get(env)
        if raw is None:
            setattr(args, dest, default)
            continue
        try:
            setattr(args, dest, kind(raw))
        except ValueError as exc:
            raise ConfigError(f"{env}: {raw!r} is not a valid {kind.__name__}") from exc
    if args.executor not in ("local", "ray"):
        raise ConfigError(f"executor must be local or ray (got {args.executor!r})")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("migration", help="migration id")
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    p.add_argument("--state-collection", default=STATE_COLLECTION, help=argparse.SUPPRESS)


async def _backfill(args: argparse.Namespace) -> int:
    from switchyard.backfill.daemon import Daemon
    from switchyard.backfill.outage import Stopped
    from switchyard.proxy.migration.record import Migration

    knobs_from_env(args, os.environ)
    store = _store(args)
    try:
        if args.set_batch_size is not None:
            size = clamp_batch(args.set_batch_size)
            env = await store.require(Migration.KIND, args.migration)
            m = Migration.from_envelope(env)
            new = dataclasses.replace(m, counters={**m.counters, BATCH_COUNTER: size})
            await store.put(Migration.KIND, m.id, new.stored(), m.rev)
            print(f"batch size set to {size}")
            return 0
        if args.metrics_port:
            from prometheus_client import start_http_server
            start_http_server(args.metrics_port, addr=args.metrics_addr)
        config = DaemonConfig(batch_size=args.batch_size, concurrency=args.concurrency,
                              lease_ttl=args.lease_ttl, progress_interval=args.progress_interval,
                              text_fetcher=args.text_fetcher, retry_base=args.retry_base,
                              retry_max=args.retry_max, hot_recheck=args.hot_recheck)
        daemon = Daemon(store, args.migration, config, owner=args.owner,
                        embedder_factory=_embedder_factory(args))
        try:
            stats = await daemon.run(once=args.once)
        except Stopped as exc:
            print(f"switchyard: {exc}", file=sys.stderr)
            return exc.verdict.exit_code
        if daemon.ended:
            print(f"switchyard: {daemon.ended}", file=sys.stderr)
        print(json.dumps(dataclasses.asdict(stats), sort_keys=True))
        return 0
    finally:
        await store.close()


async def _verify(args: argparse.Namespace) -> int:
    from switchyard.proxy.migration.service import MigrationService

    store = _store(args)
    try:
        m = await MigrationService(store, store.client).verify(args.migration, repair=args.repair)
        ver = m.verification.to_dict() if m.verification else {}
        print(json.dumps(ver, sort_keys=True) if args.json else
              f"{m.id}: clean at {ver.get('at')}, counts {ver.get('counts')}, phase {m.phase}")
        return 0
    finally:
        await store.close()


def _embedder_factory(args: argparse.Namespace) -> Callable[[ModelSpec], Embedder] | None:
    """``--executor ray``: model B's embedder on a Ray actor pool (ray loads only then)."""
    if args.executor != "ray":
        if args.address is not None or args.actors != 2:
            raise ConfigError("--address and --actors need --executor ray")
        return None
    from switchyard.backfill import ray_executor

    return ray_executor.factory(args.address, args.actors)


def _store(args: argparse.Namespace) -> StateStore:
    from switchyard.proxy.state.store import StateStore

    store = StateStore.connect(args.url, args.api_key, timeout=60)
    store.collection = args.state_collection
    return store

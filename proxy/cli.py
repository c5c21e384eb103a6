"""The ``switchyard`` command line: one entry point, subcommands registered by their modules.

Each subcommand lives in the module that owns its behaviour and exposes
``register(subparsers)``; this file only lists those modules, so adding a command never means
editing another command's code. Modules are imported lazily only for ``--help`` listing cost;
a module that fails to import (an optional extra missing) hides its command with a note.

Before any command runs, :func:`main` reports unknown ``SWITCHYARD_*`` variables
(``proxy/env_names.py``) and reads the key files of the command's secret flags
(``--api-key-file``, ``--admin-key-file``; ``proxy/secret_sources.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from switchyard.proxy.env_names import warn_unknown_env
from switchyard.proxy.errors import ConfigError, SwitchyardError
from switchyard.proxy.secret_sources import resolve_secret_args

#: Modules that contribute subcommands, in the order ``--help`` shows them.
COMMAND_MODULES: tuple[str, ...] = (
    "switchyard.proxy.embedded.command",
    "switchyard.proxy.proxy_command",
    "switchyard.proxy.registry_command",
    "switchyard.proxy.embed_command",
    "switchyard.proxy.migration.command",
    "switchyard.proxy.schema.command",
    "switchyard.proxy.inspection.command",
    "switchyard.backfill.command",
    "switchyard.backfill.demo_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Online, reversible embedding-model migrations for Qdrant.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if logging.getLogger().level > logging.DEBUG:
        # qdrant-client's HTTP library logs every request at INFO (the state store polls)
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    warn_unknown_env(os.environ)
    try:
        resolve_secret_args(args, os.environ)
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 2
    except SwitchyardError as exc:
        print(f"switchyard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

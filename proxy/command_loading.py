"""Deferred command handlers: a subcommand's parser is built without importing its work.

``switchyard --help`` builds every subcommand's parser; if building one imported the client and
engine stack (qdrant-client, grpc, aiohttp, numpy), every command, even ``--help``, would pay
about a second of CPU first (``bench/cli.py`` measures it; ``tests/test_cli_imports.py`` fails
when ``--help`` imports those). A command module therefore registers
``deferred("switchyard.proxy.x_actions", "name")``: the named module is imported when the
command runs. The wrapper carries the target module's name as its ``__module__`` so tools that
follow a handler to its module (tests/container_check.py) see where the work is.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any


def deferred(module: str, attr: str, *partial: Any) -> Callable[[argparse.Namespace], Any]:
    """A handler that imports ``module`` and calls ``module.attr(*partial, args)`` when run."""
    def handler(args: argparse.Namespace) -> Any:
        return getattr(importlib.import_module(module), attr)(*partial, args)

    handler.__module__ = module
    handler.__qualname__ = handler.__name__ = attr
    return handler

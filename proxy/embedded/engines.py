"""The embedded upstream's engine seam: what the REST and gRPC front ends need from an engine,
and the choice between the two engines behind it.

An engine answers :meth:`EngineSeam.call` with ``QdrantLocal``'s method names and arguments
(qdrant-client's REST models in and out): collections (create with config, delete, list,
exists, info, update), aliases, writes (upsert, delete, vectors and payload operations, batch
updates, payload indexes, vector names), reads (retrieve, scroll, count, facet, query,
``query_batch``, groups) and, with a path, persistence. An engine lists in ``unsupported`` the
methods it cannot answer; calling one raises :class:`switchyard.proxy.errors.Unsupported` (501 /
``UNIMPLEMENTED`` in Qdrant's error shape). Both engines run :mod:`request_checks` first.

- ``local``: qdrant-client's local engine (:class:`switchyard.proxy.embedded.engine.Engine`): brute-force
  numpy, filters in Python, everything in one process.
- ``edge``: Qdrant's own engine, ``qdrant-edge-py`` (:class:`switchyard.proxy.embedded.edge_engine.EdgeEngine`):
  HNSW, quantization, real payload indexes, one worker process per collection.

The engine is chosen by ``--engine`` or ``SWITCHYARD_UPSTREAM_ENGINE``; the default is
:data:`DEFAULT_ENGINE`, falling back to ``local`` where ``qdrant-edge-py`` is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any, Protocol

from switchyard.proxy.errors import ConfigError

ENGINES = ("local", "edge")
ENV = "SWITCHYARD_UPSTREAM_ENGINE"
#: the engine used when neither the flag nor the environment names one (``local`` where
#: ``qdrant-edge-py`` is not installed: :func:`choose` says so in its reason, which is logged)
DEFAULT_ENGINE = "edge"


class EngineSeam(Protocol):
    """What the front ends call; see the module docstring."""

    name: str
    unsupported: frozenset[str]

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any: ...

    def next_operation_id(self) -> int: ...

    def close(self) -> None: ...


def edge_available() -> bool:
    """Whether ``qdrant-edge-py`` is importable here."""
    return importlib.util.find_spec("qdrant_edge") is not None


def choose(requested: str | None = None) -> tuple[str, str]:
    """(engine, reason): the flag, else the environment, else the default; ``edge`` falls back
    to ``local`` only when it was not asked for explicitly and is not installed."""
    explicit = requested or os.environ.get(ENV) or None
    name = (explicit or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        raise ConfigError(f"unknown upstream engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "edge" and not edge_available():
        if explicit:
            raise ConfigError("the edge engine needs qdrant-edge-py, which is not installed here")
        return "local", "qdrant-edge-py is not installed here: using the local engine"
    source = "--engine/" + ENV if explicit else "default"
    return name, f"{name} engine ({source})"


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    """``--engine`` (env :data:`ENV`) for ``switchyard upstream`` and ``switchyard up``."""
    parser.add_argument(
        "--engine", choices=ENGINES, default=os.environ.get(ENV) or None,
        help="engine of the embedded upstream: edge (Qdrant's own, qdrant-edge-py) or local "
             f"(qdrant-client's) (env {ENV}; default {DEFAULT_ENGINE}, local where "
             "qdrant-edge-py is not installed)",
    )


def make_engine(name: str, path: str | None, readers: int | None = None) -> EngineSeam:
    """A started engine of kind ``name`` storing in ``path`` (``None``: in memory)."""
    if name == "edge":
        from switchyard.proxy.embedded.edge_engine import EdgeEngine

        return EdgeEngine(path, readers=readers)
    from switchyard.proxy.embedded.engine import Engine

    return Engine(path, readers=readers)

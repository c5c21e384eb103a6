"""``switchyard migrate adapter`` and ``switchyard migrate eval`` (issue 15): the parsers.

Both talk to the state store through ``--url`` (a Switchyard proxy or Qdrant, like ``switchyard
doctor``; the proxy admits the tool to ``_switchyard`` with the admin key, or from loopback).

* ``adapter ID``: shows the migration's query adapters and score calibration (kind, dimensions,
  held-out fit, whether each is good enough to be used); ``--fit`` refits them from the
  backfill's sample reservoir; ``--off`` / ``--on`` turns their use in merged reads off or on.
* ``eval ID --queries FILE``: each line of FILE is ``{"text": ..., "relevant": {doc key:
  grade}}`` (``relevant`` optional). Every query is embedded with model A and model B, the
  source is searched with A's vector, the target with B's, and the merged answer is read
  through ``--url`` (an inference object naming model B, so the proxy merges); the ranked doc
  keys go to :func:`eval_gate.evaluate`. The verdict is printed, stored (kind ``eval``, key the
  migration id, with its time) and sets the exit status (0 GO, 1 NO-GO).

The handlers live in :mod:`quality_actions` and load when a command runs
(proxy/command_loading.py), so building these parsers imports neither numpy nor an embedder.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from switchyard.proxy.command_loading import deferred
from switchyard.proxy.secret_sources import add_secret_argument

DEFAULT_URL = "http://localhost:6333"


def register_into(msub: Any) -> None:
    """Add ``adapter`` and ``eval`` to ``switchyard migrate``'s subcommands."""
    a = msub.add_parser("adapter", help="show, refit or turn off the query adapter and score calibration")
    _common(a)
    a.add_argument("--fit", action="store_true", help="refit from the backfill's sample reservoir")
    onoff = a.add_mutually_exclusive_group()
    onoff.add_argument("--off", action="store_true", help="stop using them in merged reads")
    onoff.add_argument("--on", action="store_true", help="use them again")
    a.set_defaults(handler=deferred("switchyard.proxy.migration.quality_actions", "adapter"))
    e = msub.add_parser("eval", help="compare source, target and merged answers: GO / NO-GO before cutover")
    _common(e)
    e.add_argument("--queries", metavar="FILE.jsonl",
                   help='one {"text": ..., "relevant": {doc key: grade}} per line (default: sampled '
                        'from the shadow-read log, no judgements)')
    e.add_argument("--sample", type=_sample_size, default=100, metavar="N",
                   help="without --queries: how many shadow-read query texts to sample (1..500, default 100)")
    e.add_argument("--k", type=int, default=10)
    e.add_argument("--min-overlap", type=float, help="GO needs the overlap@k CI low at least this (default 0.2)")
    e.add_argument("--max-ndcg-drop", type=float, help="GO allows nDCG@k to drop at most this (default 0.02)")
    e.set_defaults(handler=deferred("switchyard.proxy.migration.quality_actions", "evaluate"))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="migration id")
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    add_secret_argument(p, "--admin-key", env="SWITCHYARD_ADMIN_KEY", help="the proxy's admin key")
    p.add_argument("--json", action="store_true")


def _sample_size(value: str) -> int:
    n = int(value)
    if not 1 <= n <= 500:
        raise argparse.ArgumentTypeError(f"--sample must be 1..500, got {n}")
    return n

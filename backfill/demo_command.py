"""``switchyard demo``: the parser; the demo itself (:mod:`switchyard.backfill.demo`) is
imported when the command runs, so ``switchyard --help`` stays cheap (proxy/command_loading.py)."""

from __future__ import annotations

from typing import Any

from switchyard.proxy.command_loading import deferred


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a whole migration on the embedded upstream (stdlib docstrings)")
    p.add_argument("--points", type=int, default=1500)
    p.add_argument("--hashing", action="store_true", help="use the hashing provider even if local models exist")
    p.add_argument("--dataset", metavar="DIR",
                   help="a BEIR retrieval set to load and score (default: ../shared/datasets/pydocs-faq "
                        "beside the clone, when present)")
    p.set_defaults(handler=deferred("switchyard.backfill.demo", "run"))

"""``switchyard embed``: embed texts with an inline model spec (no registry).

The parser only; the work is :func:`switchyard.proxy.embedders.report.handle`, imported when the
command runs so that ``switchyard --help`` does not load numpy and the embedders
(proxy/command_loading.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from switchyard.proxy.command_loading import deferred


def register(subparsers: Any) -> None:
    """Add ``switchyard embed``."""
    parser = subparsers.add_parser("embed", help="embed texts with an inline model spec (no registry)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec-json", help="the model spec as a JSON object")
    source.add_argument("--spec-file", type=Path, help="a file holding the model spec as JSON")
    parser.add_argument("--fingerprint", action="store_true", help="also compute the spec's fingerprint")
    parser.add_argument("--vectors", action="store_true", help="also print the vectors")
    parser.add_argument("texts", nargs="+", metavar="TEXT")
    parser.set_defaults(handler=deferred("switchyard.proxy.embedders.report", "handle"))

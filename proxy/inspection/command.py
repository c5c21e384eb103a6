"""``switchyard doctor COLLECTION``: what in a collection would block or degrade a migration.

Prints one block per finding (count, sample ids, what to do), worst first; ``--json`` prints
the report. Exit status 1 when a finding blocks a re-embedding migration, else 0, so scripts
can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

DEFAULT_URL = "http://localhost:6333"


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="inspect a collection: unstamped or mixed-model points, bad vectors, "
                                      "duplicates, missing text")
    p.add_argument("collection", help="collection or alias")
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    from switchyard.proxy.secret_sources import add_secret_argument

    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    p.add_argument("--text-field", default="text", help="payload field a re-embedding reads (default text)")
    p.add_argument("--vector", default=None, help="vector to inspect (default: the binding's)")
    p.add_argument("--limit", type=int, default=None, help="read at most this many points (default: all)")
    p.add_argument("--rate", type=float, default=2000.0,
                   help="points read per second at most (default 2000; 0 = unthrottled)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from qdrant_client import AsyncQdrantClient

    from switchyard.proxy.inspection.findings import render
    from switchyard.proxy.inspection.scan import inspect
    from switchyard.proxy.state.store import StateStore, tool_headers

    async def go() -> Any:
        client = AsyncQdrantClient(url=args.url, api_key=args.api_key, check_compatibility=False,
                                   metadata=tool_headers())
        try:
            return await inspect(client, StateStore(client), args.collection, text_field=args.text_field,
                                 limit=args.limit, rate=args.rate or None, vector=args.vector)
        finally:
            await client.close()

    report = asyncio.run(go())
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else render(report))
    return 1 if report.blocking else 0

"""A ``--text-fetcher`` for the hot-order backfill tests: payload texts, and one line per
call with the doc keys it was asked for in ``$BACKFILL_KEYS_FILE`` (the order points were
prepared in, across runs)."""

from __future__ import annotations

import os
from typing import Any


def keyed_texts(keys: list[Any], payloads: list[dict[str, Any]]) -> list[str | None]:
    with open(os.environ["BACKFILL_KEYS_FILE"], "a") as f:
        f.write(" ".join(str(k) for k in keys) + "\n")
        f.flush()
    return [p.get("text") for p in payloads]

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


class Gate:
    """What :func:`gated_texts` records (each call's keys) and where it holds the backfill: the
    first call waits for ``release`` once it has set ``first``."""

    def __init__(self) -> None:
        import asyncio

        self.calls: list[list[str]] = []
        self.first, self.release = asyncio.Event(), asyncio.Event()


#: the gate of the running in-process test (set by the test, in its event loop)
GATE: Gate | None = None


async def gated_texts(keys: list[Any], payloads: list[dict[str, Any]]) -> list[str | None]:
    """An in-process ``--text-fetcher``: payload texts; the first batch waits for the gate."""
    gate = GATE
    assert gate is not None, "set hot_helpers.GATE first"
    if not keys:  # an empty partition's batch: nothing prepared
        return []
    gate.calls.append([str(k) for k in keys])
    if len(gate.calls) == 1:
        gate.first.set()
        await gate.release.wait()
    return [p.get("text") for p in payloads]

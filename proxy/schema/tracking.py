"""Schema tracking in the state store (pure record helpers + the store calls).

Records:

Every record belongs to a *chain* (``--chain``, default ``default``), so several applications
(or test suites) can keep their own revision chains in one Qdrant.

- kind ``schema``, key the chain's name: its state -- ``revision`` (where the collections
  are), and ``run``, the journal of the upgrade or downgrade in progress (``None`` when none):
  its direction and target, the steps done, and the step started (the *intent*, written before
  the step's calls are sent, with the migration id or snapshot name once known). Every change
  is a compare-and-set on the record, so two runs at once cannot both advance it.
- kind ``schema_collection``, key ``<chain>:<collection>``: ``revision`` it was last applied at,
  ``config`` as last applied (the :func:`~switchyard.proxy.schema.config_view.view` read back
  after the step), ``history`` (revision, direction, who, when, migration ids, steps) and
  ``snapshots`` (revision, name, when).
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from typing import Any

from switchyard.proxy.state.store import Envelope, StateStore

KIND = "schema"
KEY = "default"
COLLECTION_KIND = "schema_collection"
HISTORY_MAX = 100


def who() -> str:
    """The operator recorded in history: user@host (never a secret)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return f"{user}@{socket.gethostname()}"


def empty_state() -> dict[str, Any]:
    return {"revision": None, "run": None}


def new_run(direction: str, target: str | None, through: str) -> dict[str, Any]:
    return {"direction": direction, "target": target, "through": through, "done": [],
            "current": None, "applied": {}, "started_at": time.time(), "by": who()}


def start_step(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    """The run with ``step_id`` as the intent in flight (counting its attempts)."""
    cur = run.get("current") or {}
    if cur.get("step") == step_id:
        return {**run, "current": {**cur, "attempts": int(cur.get("attempts", 1)) + 1}}
    return {**run, "current": {"step": step_id, "at": time.time(), "attempts": 1}}


def note(run: dict[str, Any], **facts: Any) -> dict[str, Any]:
    """The run with facts (migration id, snapshot name) added to the step in flight."""
    return {**run, "current": {**(run.get("current") or {}), **facts}}


def finish_step(run: dict[str, Any], step_id: str, applied: bool) -> dict[str, Any]:
    """The run with ``step_id`` done; ``applied`` counts the calls this run sent for it (0 when
    the step found its effect already there, after an interruption)."""
    counts = dict(run.get("applied") or {})
    counts[step_id] = int(counts.get(step_id, 0)) + (1 if applied else 0)
    return {**run, "done": [*run.get("done", []), step_id], "current": None, "applied": counts}


class Tracker:
    """Reads and compare-and-set writes of the schema records."""

    def __init__(self, store: StateStore, chain: str = KEY) -> None:
        self.store, self.chain = store, chain

    def _key(self, collection: str) -> str:
        return f"{self.chain}:{collection}"

    async def state(self) -> tuple[dict[str, Any], int]:
        env = await self.store.get(KIND, self.chain)
        return (dict(env.data), env.rev) if env else (empty_state(), 0)

    async def put_state(self, data: dict[str, Any], rev: int) -> int:
        env = await self.store.put(KIND, self.chain, data, rev)
        return env.rev

    async def collection(self, name: str) -> dict[str, Any] | None:
        env = await self.store.get(COLLECTION_KIND, self._key(name))
        return dict(env.data) if env else None

    async def collections(self) -> list[Envelope]:
        """This chain's collection records, ``key`` set to the collection's name."""
        import dataclasses
        return [dataclasses.replace(e, key=str(e.data["collection"]))
                for e in await self.store.list(COLLECTION_KIND)
                if e.data.get("chain") == self.chain and "collection" in e.data]

    async def record_collection(self, name: str, *, revision: str | None,
                                config: dict[str, Any] | None,
                                event: dict[str, Any] | None = None,
                                snapshot: dict[str, Any] | None = None) -> None:
        """Store the config as last applied, append a history event and/or a snapshot."""
        cur = await self.collection(name) or {"history": [], "snapshots": []}
        data = {**cur, "chain": self.chain, "collection": name, "revision": revision,
                "config": config}
        if event is not None:
            data["history"] = [*cur.get("history", []), {**event, "at": time.time(),
                                                          "by": who()}][-HISTORY_MAX:]
        if snapshot is not None:
            data["snapshots"] = [*cur.get("snapshots", []), snapshot]
        await self.store.upsert(COLLECTION_KIND, self._key(name), data)

    async def set_snapshots(self, name: str, snapshots: list[dict[str, Any]]) -> None:
        cur = await self.collection(name)
        if cur is not None:
            await self.store.upsert(COLLECTION_KIND, self._key(name), {**cur, "snapshots": snapshots})

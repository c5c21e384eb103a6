"""The plain Python API of versioned schemas (what the CLI and ``switchyard.alembic`` call).

``Schema(url, revisions=DIR)`` opens a connection per call (state store and REST client through
``url``, a Switchyard proxy or Qdrant) and closes it after: ``await s.upgrade("head")``,
``s.upgrade_sync("head")`` from synchronous code. Without ``revisions`` the folder is
``qdrant_migrations/`` beside the calling file.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.schema.executor import Executor
from switchyard.proxy.schema.qdrant_http import QdrantHttp
from switchyard.proxy.schema.revisions import DEFAULT_FOLDER, Revision, between, load_folder
from switchyard.proxy.schema.runner import Runner, plan_downgrade, plan_upgrade
from switchyard.proxy.schema.tracking import Tracker
from switchyard.proxy.state.store import StateStore


def beside_caller(depth: int = 2) -> Path:
    """``qdrant_migrations/`` in the folder of the file that called the API."""
    frame = inspect.stack()[depth]
    return Path(frame.filename).resolve().parent / DEFAULT_FOLDER


class PythonContext:
    """What a ``run_python`` function receives: the URL, a sync official client, the step."""

    def __init__(self, url: str, api_key: str | None, step: Any) -> None:
        self.url, self.api_key, self.step = url, api_key, step

    def client(self) -> Any:
        from qdrant_client import QdrantClient

        from switchyard.proxy.state.store import tool_headers
        return QdrantClient(url=self.url, api_key=self.api_key, check_compatibility=False,
                            metadata=tool_headers())


class Schema:
    def __init__(self, url: str, revisions: str | Path | None = None, *, api_key: str | None = None,
                 admin_key: str | None = None, chain: str = "default",
                 say: Callable[[str], None] | None = None) -> None:
        self.url, self.api_key, self.admin_key, self.chain = url, api_key, admin_key, chain
        self.folder = Path(revisions) if revisions is not None else beside_caller()
        self.say = say or (lambda _text: None)

    def revisions(self) -> list[Revision]:
        return load_folder(self.folder)

    @asynccontextmanager
    async def _runner(self) -> AsyncIterator[Runner]:
        http = QdrantHttp(self.url, self.api_key, self.admin_key)
        store = StateStore.connect(self.url, self.api_key, admin_key=self.admin_key)
        ex = Executor(http, Tracker(store, self.chain), self.say, backfill=self._backfill,
                      python_ctx=lambda step: PythonContext(self.url, self.api_key, step))
        try:
            yield Runner(self.revisions(), ex, self.say)
        finally:
            await http.close()
            await store.close()

    async def _backfill(self, mid: str) -> None:
        from switchyard.backfill.daemon import Daemon, DaemonConfig
        store = StateStore.connect(self.url, self.api_key, admin_key=self.admin_key)
        try:
            daemon = Daemon(store, mid, DaemonConfig(batch_size=64, refresh=0.3, progress_interval=5))
            stats = await daemon.run(once=True)
            self.say(f"  backfill of {mid}: {getattr(stats, 'written', '?')} points written")
        finally:
            await store.close()

    async def upgrade(self, target: str = "head", *, through: str = "complete",
                      snapshot: bool = False) -> str | None:
        async with self._runner() as r:
            return await r.apply("upgrade", target, through, snapshot)

    async def downgrade(self, target: str) -> str | None:
        async with self._runner() as r:
            return await r.apply("downgrade", target)

    async def stamp(self, target: str | None = None) -> str | None:
        async with self._runner() as r:
            return await r.stamp(target)

    async def restore(self, target: str) -> None:
        async with self._runner() as r:
            await r.restore(target)

    async def prune(self, keep: int = 1, older_than: float | None = None) -> list[str]:
        async with self._runner() as r:
            return await r.prune(keep, older_than)

    async def plan(self, direction: str, target: str, snapshot: bool = False) -> list[dict[str, Any]]:
        """The pending revisions' steps as JSON (``--dry-run`` / ``--plan-json``): pure after
        reading the current revision."""
        async with self._runner() as r:
            state, _ = await r.ex.tracker.state()
        ordered = self.revisions()
        cur = state.get("revision")
        planned = (plan_upgrade(ordered, cur, target, snapshot) if direction == "upgrade"
                   else plan_downgrade(ordered, cur, target))
        return [{"revision": rev.id, "message": rev.message,
                 "steps": [s.to_json() for s in steps]} for rev, steps, _ in planned]

    async def status(self) -> dict[str, Any]:
        ordered = self.revisions()
        async with self._runner() as r:
            state, _ = await r.ex.tracker.state()
            drift = await r.drift()
            collections = []
            for env in await r.ex.tracker.collections():
                collections.append({"name": env.key, "revision": env.data.get("revision"),
                                    "config": env.data.get("config"),
                                    "drift": drift.get(env.key, []),
                                    "snapshots": [{**s, "age": time.time() - float(s.get("at", 0))}
                                                  for s in env.data.get("snapshots", [])],
                                    "history": env.data.get("history", [])[-20:]})
            flying = await self._in_flight(r)
        head = ordered[-1].id if ordered else None
        return {"revision": state.get("revision"), "head": head,
                "pending": [x.id for x in between(ordered, state.get("revision"), "head")],
                "run": state.get("run"), "runs": state.get("runs", [])[-5:],
                "migrations": flying, "collections": collections}

    async def _in_flight(self, r: Runner) -> list[dict[str, Any]]:
        try:
            found = await r.ex.http.request("GET", "/switchyard/v1/migrations")
        except SwitchyardError:
            return []  # plain Qdrant: no admin API, so no migrations
        items = found.get("migrations", found) if isinstance(found, dict) else found
        out = []
        for m in items or []:
            m = m.get("migration", m)
            if m.get("phase") not in ("complete", "cancelled"):
                out.append({"id": m.get("id"), "logical": m.get("logical"), "phase": m.get("phase")})
        return out

    def upgrade_sync(self, target: str = "head", **kw: Any) -> str | None:
        return _run(self.upgrade(target, **kw))

    def downgrade_sync(self, target: str) -> str | None:
        return _run(self.downgrade(target))


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    raise SwitchyardError("call the async method from a running event loop", raw=True)

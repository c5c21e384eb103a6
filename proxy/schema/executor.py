"""The executor: applies planned steps, journaled so an interrupted run resumes (I/O).

Contract: before a step sends anything the run's record names it as the *intent* (and counts
each send); after its effect is read back, the step is marked done and the collection's config
as last applied is recorded. A rerun after SIGKILL skips the steps done and, for the one in
flight, first checks whether its effect is already there (:func:`already`): a collection that
exists, a vector or index present or gone, HNSW/quantization values already set, an alias
already pointing, a snapshot or migration already created (its id or name is noted in the
intent as soon as it is known). So no call is sent twice for a step whose first send took
effect; ``run_python`` functions are the exception and must be idempotent (documented).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from switchyard.proxy.errors import ConfigError, Conflict, NotFound, SwitchyardError
from switchyard.proxy.schema import migrations
from switchyard.proxy.schema.config_view import view
from switchyard.proxy.schema.planner import Step
from switchyard.proxy.schema.qdrant_http import QdrantHttp
from switchyard.proxy.schema.tracking import Tracker, finish_step, note, start_step

Say = Callable[[str], None]


def _subset(want: Any, have: Any) -> bool:
    """Whether every leaf of ``want`` equals the same leaf of ``have`` (the live config)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_subset(v, have.get(k)) for k, v in want.items())
    return bool(want == have)


def already(step: Step, live: dict[str, Any] | None, aliases: Mapping[str, str]) -> bool:
    """Whether the step's effect is already in the live view (pure)."""
    a, op = step.args, step.op
    vectors = (live or {}).get("vectors", {})
    indexes = (live or {}).get("indexes", {})
    if op == "create_collection":
        return live is not None
    if op == "drop_collection":
        return live is None
    if live is None:
        return False
    if op == "add_named_vector":
        return a["name"] in vectors or a["name"] in live.get("sparse_vectors", {})
    if op == "drop_named_vector":
        return a["name"] not in vectors and a["name"] not in live.get("sparse_vectors", {})
    if op == "create_index":
        return a["field_name"] in indexes
    if op == "drop_index":
        return a["field_name"] not in indexes
    if op == "change_hnsw":
        return _subset(a["hnsw_config"], live.get("hnsw"))
    if op == "change_quantization":
        q = a["quantization_config"]
        return (not live.get("quantization")) if q == "Disabled" else _subset(q, live.get("quantization"))
    if op == "change_vectors":
        return _subset(a["vectors"], vectors)
    if op == "rename_via_alias":
        return aliases.get(a["alias"]) == step.collection
    if op == "bind_model":
        return bool(live.get("model") == a["model"])
    return False


class Executor:
    """Runs steps against ``http`` with the journal in ``tracker``."""

    def __init__(self, http: QdrantHttp, tracker: Tracker, say: Say,
                 backfill: Callable[[str], Awaitable[None]] | None = None,
                 python_ctx: Callable[[Step], Any] | None = None) -> None:
        self.http, self.tracker, self.say = http, tracker, say
        self.backfill = backfill
        self.python_ctx = python_ctx
        self.fns: dict[str, Callable[[Any], Any]] = {}
        self.through = "complete"

    async def live(self, collection: str) -> dict[str, Any] | None:
        info = await self.http.collection(collection)
        binding = await self.tracker.store.get("binding", collection)
        return view(info, str(binding.data.get("model_id")) if binding else None)

    async def run_step(self, step: Step, state: dict[str, Any], rev: int) -> tuple[dict[str, Any], int]:
        """Apply one step under the journal; returns the new (state, record revision)."""
        run = start_step(state["run"], step.id)
        state, rev = await self._save({**state, "run": run}, rev)
        cur = state["run"]["current"]
        live = await self.live(step.collection) if step.collection != "-" else None
        aliases = await self.http.aliases() if step.op == "rename_via_alias" else {}
        sent = False
        if step.mode in ("direct", "bind") and already(step, live, aliases):
            self.say(f"  {step.id}: already applied (found in the live config), not sent again")
        elif step.mode == "direct":
            state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
            for call in step.calls:
                await self.http.send(_fit_alias_call(call, aliases) if step.op == "rename_via_alias" else call)
            sent = True
        elif step.mode == "bind":
            state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
            await self._bind(step)
            sent = True
        elif step.mode == "snapshot":
            state, rev, sent = await self._snapshot(step, state, rev)
        elif step.mode == "migration":
            state, rev, sent = await self._migration(step, state, rev)
        elif step.mode == "python":
            state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
            fn = self.fns.get(step.id)
            if fn is None:
                raise ConfigError(f"{step.id}: run_python function not found")
            await asyncio.to_thread(fn, self.python_ctx(step) if self.python_ctx else None)
            sent = True
        elif step.mode == "restore":
            state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
            await self._restore_vector(step)
            sent = True
        if step.collection != "-":
            after = await self.live(step.collection)
            await self.tracker.record_collection(
                step.collection, revision=step.revision, config=after,
                event={"step": step.id, "op": step.op, "sent": sent,
                       "migration": state["run"]["current"].get("migration")})
        run = finish_step(state["run"], step.id, sent)
        run["applied"][step.id] = int(state["run"]["current"].get("sends", 0))
        return await self._save({**state, "run": run}, rev)

    async def _bind(self, step: Step) -> None:
        from switchyard.proxy.registry import bind
        from switchyard.proxy.state.records import Binding
        a = step.args
        await bind(self.tracker.store, self.tracker.store.client,
                   Binding(step.collection, a["model"], bool(a.get("enforce")), str(a.get("vector") or "")))

    async def _save(self, state: dict[str, Any], rev: int) -> tuple[dict[str, Any], int]:
        try:
            return state, await self.tracker.put_state(state, rev)
        except Conflict as exc:
            raise Conflict(f"another schema run changed the schema record: {exc}") from exc

    async def _snapshot(self, step: Step, state: dict[str, Any], rev: int) -> tuple[dict[str, Any], int, bool]:
        cur = state["run"]["current"]
        have = {s.get("name") for s in await self.http.snapshots(step.collection)}
        if cur.get("snapshot") in have:
            self.say(f"  {step.id}: snapshot {cur['snapshot']} already taken")
            return state, rev, False
        if cur.get("sends"):
            # sent before an interruption, name not noted: adopt the newest one taken since
            since = float(cur.get("at", 0)) - 1
            for s in sorted(await self.http.snapshots(step.collection),
                            key=lambda s: str(s.get("creation_time") or ""), reverse=True):
                if _epoch(s.get("creation_time")) >= since:
                    state, rev = await self._save({**state, "run": note(state["run"], snapshot=s["name"])}, rev)
                    await self._record_snapshot(step, s)
                    return state, rev, False
        state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
        made = await self.http.send(step.calls[0])
        state, rev = await self._save({**state, "run": note(state["run"], snapshot=made["name"])}, rev)
        await self._record_snapshot(step, made)
        self.say(f"  {step.id}: snapshot {made['name']} of {step.collection}")
        return state, rev, True

    async def _record_snapshot(self, step: Step, snap: Mapping[str, Any]) -> None:
        rec = await self.tracker.collection(step.collection) or {}
        await self.tracker.record_collection(
            step.collection, revision=rec.get("revision"), config=rec.get("config"),
            snapshot={"revision": step.revision, "name": snap["name"], "at": time.time(),
                      "size": snap.get("size")})

    async def _migration(self, step: Step, state: dict[str, Any], rev: int) -> tuple[dict[str, Any], int, bool]:
        cur = state["run"]["current"]
        mid = cur.get("migration")
        sent = False
        if mid is None and cur.get("sends"):
            mid = await migrations.find(self.http, step.collection, float(cur.get("at", 0)))
        if mid is None:
            state, rev = await self._save({**state, "run": note(state["run"], sends=int(cur.get("sends", 0)) + 1)}, rev)
            mid = await migrations.plan(self.http, step)
            sent = True
        run = note(state["run"], migration=mid)
        run["migrations"] = sorted({*run.get("migrations", []), mid})
        state, rev = await self._save({**state, "run": run}, rev)
        if self.backfill is None:
            raise ConfigError("a migration step needs the backfill")
        await migrations.drive(self.http, mid, self.through, self.backfill, self.say)
        return state, rev, sent

    async def _restore_vector(self, step: Step) -> None:
        """Copy the values of vector ``name`` back from the snapshot taken before the
        revision that dropped it, for the points still in the collection."""
        c, name, snap = step.collection, step.args["name"], step.args.get("snapshot")
        if not snap:
            rec = await self.tracker.collection(c) or {}
            found = [s for s in rec.get("snapshots", []) if s.get("revision") == step.args["from_revision"]]
            if not found:
                # the drop runs only after its snapshot is recorded: without one, nothing was
                # deleted (an upgrade interrupted before it), so there is nothing to restore
                self.say(f"  {step.id}: no snapshot at {step.args['from_revision']}: the vector "
                         "was never dropped, nothing to restore")
                return
            snap = found[-1]["name"]
        tmp = f"{c}__restore"
        data = await self.http.download(c, snap)
        await self.http.request("DELETE", f"/collections/{tmp}")
        await self.http.upload(tmp, snap, data)
        offset: Any = None
        try:
            while True:
                page = await self.http.request("POST", f"/collections/{tmp}/points/scroll", {
                    "limit": 256, "offset": offset, "with_vector": [name], "with_payload": False})
                ids = [p["id"] for p in page["points"]]
                present = {p["id"] for p in await self.http.request(
                    "POST", f"/collections/{c}/points", {"ids": ids, "with_payload": False})}
                points = [{"id": p["id"], "vector": {name: p["vector"][name]}} for p in page["points"]
                          if p["id"] in present and name in (p.get("vector") or {})]
                if points:
                    await self.http.request("PUT", f"/collections/{c}/points/vectors?wait=true",
                                            {"points": points})
                offset = page.get("next_page_offset")
                if offset is None:
                    break
        finally:
            await self.http.request("DELETE", f"/collections/{tmp}")


def _fit_alias_call(call: Any, aliases: Mapping[str, str]) -> Any:
    """The alias request without its ``delete_alias`` when the alias does not exist yet
    (Qdrant refuses deleting a missing alias, and the whole request with it)."""
    import dataclasses
    actions = [a for a in call.body["actions"]
               if "delete_alias" not in a or a["delete_alias"]["alias_name"] in aliases]
    return dataclasses.replace(call, body={"actions": actions})


def _epoch(text: Any) -> float:
    from datetime import datetime, timezone
    if not text:
        return 0.0
    try:
        dt = datetime.fromisoformat(str(text))
    except ValueError:
        return 0.0
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def drift_of(tracked: Sequence[tuple[str, dict[str, Any] | None]], lives: Mapping[str, Any],
             skip: set[str]) -> dict[str, list[str]]:
    """Collection -> diff lines for each tracked collection whose live view differs (pure)."""
    from switchyard.proxy.schema.config_view import diff
    out = {}
    for name, recorded in tracked:
        if name in skip:
            continue
        lines = diff(recorded, lives.get(name))
        if lines:
            out[name] = lines
    return out


class Refused(SwitchyardError):
    """A schema run refused with its reason (drift, another run, unknown revision)."""

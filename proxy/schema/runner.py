"""``schema upgrade`` / ``downgrade`` / ``status`` / ``stamp`` / ``restore`` /
``prune-snapshots``: the orchestration over the revision chain, the planner and the executor.

Plans are pure (:func:`plan_upgrade`, :func:`plan_downgrade`: the steps for a current revision
and a target); the :class:`Runner` reads the schema record, refuses while a tracked
collection drifted (the diff is the reason) or another run of the other direction is in
flight, and then applies the pending steps under the journal, advancing the recorded revision
after each revision's last step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from switchyard.proxy.errors import BadRequest, NotFound
from switchyard.proxy.schema.executor import Executor, Refused, drift_of
from switchyard.proxy.schema.operations import record
from switchyard.proxy.schema.planner import Step, plan_revision
from switchyard.proxy.schema.revisions import Revision, between, resolve
from switchyard.proxy.schema.tracking import new_run


def plan_upgrade(ordered: Sequence[Revision], current: str | None, target: str | None,
                 snapshot: bool = False) -> list[tuple[Revision, list[Step], dict[str, Any]]]:
    """(revision, steps, run_python functions by step id) for each pending revision."""
    out = []
    for r in between(ordered, current, target):
        ops = record(r.upgrade)
        steps = plan_revision(r.id, ops, snapshot)
        out.append((r, steps, _fns(steps, ops)))
    return out


def plan_downgrade(ordered: Sequence[Revision], current: str | None, target: str | None
                   ) -> list[tuple[Revision, list[Step], dict[str, Any]]]:
    """The revisions after ``target`` up to ``current``, newest first, with their downgrade
    steps, each followed by a restore step per vector its upgrade dropped (the values come
    back from the snapshot taken before that upgrade)."""
    target = resolve(ordered, target)
    undo = list(reversed(between(ordered, target, current)))
    out = []
    for r in undo:
        ops = record(r.downgrade)
        steps = [dataclass_replace(s, id=f"down:{s.id}") for s in plan_revision(r.id, ops)]
        for i, up in enumerate(o for o in record(r.upgrade) if o.name == "drop_named_vector"):
            steps.append(Step(f"down:{r.id}:r{i}:restore", r.id, "restore_vector", up.collection,
                              "restore", (), False, {"name": up.args["name"], "from_revision": r.id}))
        out.append((r, steps, _fns(steps, ops)))
    return out


def dataclass_replace(step: Step, **kw: Any) -> Step:
    import dataclasses
    return dataclasses.replace(step, **kw)


def _fns(steps: Sequence[Step], ops: Sequence[Any]) -> dict[str, Any]:
    fn_by_index = {i: o.fn for i, o in enumerate(ops) if o.fn is not None}
    out = {}
    for s in steps:
        parts = s.id.split(":")
        idx = parts[-2]
        if s.mode == "python" and idx.isdigit() and int(idx) in fn_by_index:
            out[s.id] = fn_by_index[int(idx)]
    return out


class Runner:
    def __init__(self, ordered: Sequence[Revision], executor: Executor, say: Callable[[str], None]) -> None:
        self.ordered, self.ex, self.say = list(ordered), executor, say

    async def drift(self, skip: set[str] = frozenset()) -> dict[str, list[str]]:  # type: ignore[assignment]
        tracked = [(e.key, e.data.get("config")) for e in await self.ex.tracker.collections()]
        lives = {name: await self.ex.live(name) for name, _ in tracked}
        return drift_of(tracked, lives, set(skip))

    async def _begin(self, direction: str, target: str | None, through: str) -> tuple[dict[str, Any], int]:
        state, rev = await self.ex.tracker.state()
        run = state.get("run")
        skip: set[str] = set()
        if run and run["direction"] == "upgrade" and direction == "downgrade":
            # the abandoned step may have half-changed its collection: not drift
            cur_step = (run.get("current") or {}).get("step")
            skip = {s.collection for _, steps, _ in self._plan("upgrade", state, run["target"], False)
                    for s in steps if s.id == cur_step}
            state, rev = await self._abandon(state, rev)
            run = None
        if run:
            if run["direction"] != direction or run["target"] != target:
                raise Refused(f"a {run['direction']} to {run['target'] or 'base'} is in progress "
                              f"(started by {run.get('by')}); rerun that first", raw=True)
            cur = run.get("current") or {}
            if cur.get("step"):
                self.say(f"resuming: {len(run.get('done', []))} steps done, {cur['step']} was in flight")
                skip = {s.collection for _, steps, _ in self._plan(direction, state, target, False)
                        for s in steps if s.id == cur["step"]}
        drifted = await self.drift(skip)
        if drifted:
            lines = [f"{c}: {line}" for c, ls in drifted.items() for line in ls]
            raise Refused("drift: the live config differs from the one last applied:\n  "
                          + "\n  ".join(lines) + "\naccept it with `switchyard schema stamp` or "
                          "undo it, then rerun", raw=True)
        if not run:
            state = {**state, "run": new_run(direction, target, through)}
            rev = await self.ex.tracker.put_state(state, rev)
        return state, rev

    async def _abandon(self, state: dict[str, Any], rev: int) -> tuple[dict[str, Any], int]:
        """Give up an interrupted upgrade so a downgrade can undo it: the revision whose steps
        had started counts as reached (its ``downgrade()`` then runs; the already-applied
        probes skip what never happened)."""
        run = state["run"]
        started = [*run.get("done", []), (run.get("current") or {}).get("step")]
        ids = [r.id for r in self.ordered]
        reached = state.get("revision")
        for step_id in filter(None, started):
            rid = str(step_id).split(":")[0]
            if rid in ids and (reached is None or ids.index(rid) > ids.index(reached)):
                reached = rid
        mid = (run.get("current") or {}).get("migration")
        if mid:  # before complete, a downgrade is the in-flight migration's own rollback
            from switchyard.proxy.schema import migrations
            final = await migrations.rollback(self.ex.http, str(mid), self.say)
            self.say(f"  migration {mid}: {final}")
        self.say(f"abandoning the interrupted upgrade to {run['target']}: undoing from {reached}")
        state = {**state, "revision": reached, "run": None,
                 "runs": [*state.get("runs", []), {**run, "abandoned_at": time.time()}][-20:]}
        return state, await self.ex.tracker.put_state(state, rev)

    def _plan(self, direction: str, state: dict[str, Any], target: str | None,
              snapshot: bool) -> list[tuple[Revision, list[Step], dict[str, Any]]]:
        cur = state.get("revision")
        if direction == "upgrade":
            return plan_upgrade(self.ordered, cur, target, snapshot)
        return plan_downgrade(self.ordered, cur, target)

    async def apply(self, direction: str, target: str | None, through: str = "complete",
                    snapshot: bool = False) -> str | None:
        """Run pending revisions to ``target``; returns the revision reached."""
        target = resolve(self.ordered, target)
        state0, _ = await self.ex.tracker.state()
        self._plan(direction, state0, target, snapshot)  # a bad revision fails before the run starts
        state, rev = await self._begin(direction, target, through)
        if snapshot and not state["run"].get("snapshot"):
            state = {**state, "run": {**state["run"], "snapshot": True}}
            rev = await self.ex.tracker.put_state(state, rev)
        self.ex.through = through
        plan = self._plan(direction, state, target, snapshot or bool(state["run"].get("snapshot")))
        for r, steps, fns in plan:
            self.ex.fns = fns
            self.say(f"{direction} {r.id}: {r.message}")
            for step in steps:
                if step.id in state["run"]["done"]:
                    continue
                self.say(f"  {step.id} [{step.mode}]")
                state, rev = await self.ex.run_step(step, state, rev)
            new_rev = r.id if direction == "upgrade" else r.parent
            state = {**state, "revision": new_rev}
            rev = await self.ex.tracker.put_state(state, rev)
            for coll in sorted({s.collection for s in steps if s.collection != "-"}):
                live = await self.ex.live(coll)
                await self.ex.tracker.record_collection(
                    coll, revision=new_rev, config=live,
                    event={"revision": r.id, "direction": direction,
                           "migrations": _migrations_of(state["run"], steps)})
            self.say(f"  at {new_rev or 'base'}")
        finished = {k: v for k, v in state["run"].items() if k != "current"}
        runs = [*state.get("runs", []), {**finished, "ended_at": time.time()}][-20:]
        state = {**state, "run": None, "runs": runs}
        await self.ex.tracker.put_state(state, rev)
        return state.get("revision")

    async def stamp(self, revision: str | None) -> str | None:
        """Record ``revision`` (default: the current one) as applied and the live config of
        every tracked collection as the one last applied: accepts drift."""
        state, rev = await self.ex.tracker.state()
        if state.get("run"):
            raise Refused("a schema run is in progress; finish it before stamping", raw=True)
        ids = [r.id for r in self.ordered]
        new = resolve(self.ordered, revision) if revision else state.get("revision")
        if new is not None and new not in ids:
            raise BadRequest(f"unknown revision {new!r}")
        for env in await self.ex.tracker.collections():
            await self.ex.tracker.record_collection(
                env.key, revision=new, config=await self.ex.live(env.key),
                event={"stamp": new, "accepted_drift": True})
        await self.ex.tracker.put_state({**state, "revision": new}, rev)
        return new

    async def restore(self, revision: str) -> None:
        """Recover each collection snapshotted at ``revision`` from that snapshot (the state
        before the revision ran) and record the revision before it as current."""
        r = next((x for x in self.ordered if x.id == revision), None)
        if r is None:
            raise BadRequest(f"unknown revision {revision!r}")
        found = []
        for env in await self.ex.tracker.collections():
            snaps = [s for s in env.data.get("snapshots", []) if s.get("revision") == revision]
            if snaps:
                found.append((env.key, snaps[-1]["name"]))
        if not found:
            raise NotFound(f"no snapshot recorded at revision {revision}")
        state, rev = await self.ex.tracker.state()
        for coll, name in found:
            self.say(f"restore {coll} from snapshot {name}")
            data = await self.ex.http.download(coll, name)
            await self.ex.http.upload(coll, name, data)
            await self.ex.tracker.record_collection(
                coll, revision=r.parent, config=await self.ex.live(coll),
                event={"restore": revision, "snapshot": name})
        await self.ex.tracker.put_state({**state, "revision": r.parent, "run": None}, rev)

    async def prune(self, keep: int, older_than: float | None) -> list[str]:
        """Delete snapshots beyond the newest ``keep`` per collection (and, with
        ``older_than`` seconds, only those older); returns ``collection/name`` removed."""
        removed = []
        now = time.time()
        for env in await self.ex.tracker.collections():
            snaps = list(env.data.get("snapshots", []))
            keep_set = snaps[-keep:] if keep > 0 else []
            left = []
            for s in snaps:
                old = older_than is None or now - float(s.get("at", now)) > older_than
                if s in keep_set or not old:
                    left.append(s)
                    continue
                try:
                    await self.ex.http.request(
                        "DELETE", f"/collections/{env.key}/snapshots/{s['name']}?wait=true")
                except NotFound:
                    pass
                removed.append(f"{env.key}/{s['name']}")
            await self.ex.tracker.set_snapshots(env.key, left)
        return removed


def _migrations_of(run: dict[str, Any], steps: Sequence[Step]) -> list[str]:
    """The migration ids the run created for these steps (noted in the run as they start)."""
    mine = {s.collection for s in steps if s.mode == "migration"}
    return [str(m) for m in run.get("migrations", [])] if mine else []

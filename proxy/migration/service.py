"""The migration control plane's I/O: plan, transitions (compare-and-set), acknowledgement,
verification, knobs, cleanup and watching. Decisions are delegated to the pure modules.

Transitions commit with a compare-and-set on the record's revision: two operators racing the
same step, exactly one wins and the other gets :class:`Conflict` naming the phase it lost to.
Steps that change what proxies do then wait (bounded) until every live proxy acts on the new
``route_rev``; when the wait ends with laggards the step stays committed, the refusal names
them, and the next forward step is refused by the ``proxies_acknowledged`` guard until they
catch up or go silent past their TTL.

The steps' shared ways of committing (compare-and-set, recorded refusals, hooks) live in
:mod:`commits` and the verification steps in :mod:`verify_steps`; :class:`MigrationService`
builds on both, and this module keeps :class:`ServiceConfig`, :class:`VerifyRun` and
:data:`VERIFY_PHASES` importable from here.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from switchyard.proxy.dataplane import hot_docs, repair_log
from switchyard.proxy.errors import BadRequest, Conflict
from switchyard.proxy.migration import eval_gate, eval_guard
from switchyard.proxy.migration import facts as io
from switchyard.proxy.migration import heartbeats, kinds, phases, plan_checks, progress, retention, verify_state
from switchyard.proxy.migration.commits import ServiceConfig
from switchyard.proxy.migration.planner import (
    PlanFacts, PlanRequest, doctor_findings, estimate, plan_order, validate,
)
from switchyard.proxy.migration.record import (
    CANCELLED, COMPLETE, LOOKUP_MODES, MIRROR_MODES, PLANNED, Event, Migration, Refused,
)
from switchyard.proxy.migration.routing import route_for
from switchyard.proxy.migration.verify_steps import VERIFY_PHASES, VerifyRun, VerifySteps
from switchyard.proxy.state.records import Binding

__all__ = ["VERIFY_PHASES", "MigrationService", "ServiceConfig", "VerifyRun", "cleanup_refusal"]


class MigrationService(VerifySteps):
    """Status, plan, transitions, knobs and cleanup of migrations. Construction, reading a record
    and committing to it come from :class:`~switchyard.proxy.migration.commits.RecordCommits`,
    the verify steps from :class:`~switchyard.proxy.migration.verify_steps.VerifySteps`."""

    # -- reading

    async def list(self) -> list[Migration]:
        return [Migration.from_envelope(e) for e in await self.store.list(Migration.KIND)]

    async def acks(self, m: Migration) -> builtins.list[heartbeats.ProxyAck]:
        beats = await heartbeats.list_heartbeats(self.store)
        return heartbeats.ack_states(beats, m.id, m.route_rev, self.clock(), self.config.heartbeat_ttl)

    async def status(self, migration_id: str) -> dict[str, Any]:
        """The record, every proxy's acknowledgement state, and what the phase routes where."""
        m = await self.get(migration_id)
        acks = await self.acks(m)
        routes = {op: dataclasses.asdict(route_for(m, op)) for op in ("read", "write")}
        records = [e.data for e in await self.store.list(progress.KIND)
                   if e.key.startswith(f"{migration_id}/")]
        backfill = progress.summary(records, m.counter("backfill_done"), m.counter("backfill_total"),
                                    self.clock())
        runs = await verify_state.views(self.store, m, self.clock())
        return {"migration": m.to_dict(), "repair": await repair_log.view(self.store, migration_id),
                "order": await plan_checks.order_view(self.store, m),
                "proxies": [a.to_dict() for a in acks],
                "laggards": list(heartbeats.laggards(acks)), "routes": routes, "backfill": backfill,
                "verify": runs[0] if runs else None, "verify_runs": runs,
                "transitions": await self._transitions(m)}

    async def _transitions(self, m: Migration) -> builtins.list[dict[str, Any]]:
        """The transitions out of the current phase, each allowed now or refused with the
        reason the guard would give (what the status page and ``migrate status`` offer)."""
        options = [t for t in phases.TRANSITIONS.values() if m.phase in t.sources]
        if not options:
            return []
        facts = await self._facts(m)
        out = []
        for t in options:
            why = phases.refusal(m, t.name, facts)
            out.append({"name": t.name, "allowed": why is None, "reason": why})
        return out

    async def watch(self, migration_id: str, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """Yield the status now and again whenever it changes; the caller decides when to stop."""
        last: Any = None
        while True:
            current = await self.status(migration_id)
            key = (current["migration"]["rev"], [(p["instance_id"], p["state"], p["acted_rev"])
                                                 for p in current["proxies"]],
                   current["backfill"].get("done"), current["repair"].get("size"),
                   orjson.dumps(current["verify"]), [t["allowed"] for t in current["transitions"]])
            if key != last:
                last = key
                yield current
            await asyncio.sleep(interval)

    # -- plan

    async def plan(self, req: PlanRequest) -> dict[str, Any]:
        """Validate and estimate; unless ``dry_run``, create the target and store the record.

        A dry run reports the reasons instead of raising; a real plan raises :class:`Refused`.
        """
        f = await io.gather(self.store, self.client, req, max_active=self.config.max_active,
                            sample_size=self.config.sample_size, probe_texts=self.config.probe_texts)
        if req.kind in kinds.KINDS and f.source.exists:  # the kind's own facts (split: its values)
            f = await kinds.get(req.kind).enrich(self.client, self.store, f)
        counts = await plan_checks.source_counts(self.store, f.source.collection)
        f = dataclasses.replace(f, hot_counts=counts.counts, doctor=await plan_checks.doctor(
            self.client, self.store, f, self.config.doctor_limit, self.config.doctor_rate))
        reasons, est = validate(f), estimate(f)
        order = plan_order(req.order, req.kind, f.hot_counts)
        report: dict[str, Any] = {"ok": not reasons, "reasons": reasons, "estimate": est.to_dict(),
                                  "source": f.source.collection, "target": f.target,
                                  "logical_is_alias": f.source.is_alias, "dry_run": req.dry_run,
                                  "kind": req.kind, "force": req.force,
                                  "order": {"requested": req.order, "order": order.order,
                                            "hot": len(order.hot), "reason": order.reason},
                                  "require_eval": req.require_eval,
                                  "doctor": plan_checks.doctor_view(f)}
        kind = kinds.KINDS.get(req.kind)
        if kind is not None and f.source.exists:
            report["layout"] = kind.layout(f).to_dict()
            report["cleanup"] = kind.cleanup_removes(_draft(f))
        if req.dry_run:
            return report
        if reasons:
            self._notify("refusal", None, {"action": "plan", "reason": "; ".join(reasons)})
            raise Refused("; ".join(reasons))
        assert f.binding is not None and f.model_b is not None and kind is not None
        now = self.clock()
        fields = kind.record_fields(f)
        fields["options"] = {**dict(fields.get("options") or {}), **req.shared_options()}
        m = dataclasses.replace(_draft(f), id=f"{req.logical}-{uuid.uuid4().hex[:8]}", created_at=now,
                                mirror=req.mirror, lookup=req.lookup,
                                throttle=None if req.throttle is None else float(req.throttle),
                                counters={"backfill_total": est.points, "backfill_done": 0},
                                **fields).with_event(Event(now, "plan", "", "planned", 1))
        forced = [d["text"] for d in doctor_findings(f) if d["severity"] == "blocks"] if req.force else []
        if forced:
            m = m.with_event(Event(now, "plan:force", PLANNED, PLANNED, 1, "; ".join(forced)))
        if m.throttle == 0:  # planned paused; the event also tells older readers (layout 1)
            m = m.with_event(Event(now, "throttle:0", PLANNED, PLANNED, 1, "planned with throttle 0"))
        await kind.create_targets(self.client, self.store, f)
        stored = Migration.from_envelope(await self.store.create(Migration.KIND, m.id, m.stored()))
        if f.hot_counts:  # the source's earlier counts: the backfill may start hot
            await self.store.upsert(hot_docs.KIND, f"{stored.id}/planned", counts.to_dict())
        self._notify("transition", stored, {"action": "plan"})
        report["migration"] = stored.to_dict()
        return report

    # -- transitions

    async def transition(self, migration_id: str, name: str, expected_rev: int | None = None,
                         require_eval: bool | None = None, eval_max_age: float | None = None) -> Migration:
        """Apply transition ``name`` if its guards allow it. ``switch_reads`` also needs a fresh GO
        eval when asked here (``require_eval``) or in the plan (:mod:`eval_guard`)."""
        t = phases.transition_named(name)
        if t is None:
            raise BadRequest(f"unknown transition {name!r} (one of {', '.join(sorted(phases.TRANSITIONS))})")
        m = self._expect(await self.get(migration_id), expected_rev)
        if phases.proxies_acknowledged in t.guards:
            await self._settle(m)  # proxies may still be picking up the previous step
        facts = await self._facts(m)
        why = phases.refusal(m, t.name, facts)
        if why is None and t.name == "switch_reads":
            why = await self._eval_refusal(m, require_eval, eval_max_age)
        if why:
            await self._refuse(m, t.name, why)
        def step(cur: Migration) -> Migration:  # on a fresh record: the guards again, same facts
            again = phases.refusal(cur, t.name, facts)
            if again:
                raise Conflict(f"migration `{cur.id}` changed while {t.name} was applied: {again}")
            return phases.apply(cur, t.name, facts.now)

        stored = await self._cas_fresh(m, step, pinned=expected_rev is not None)
        self._notify("transition", stored, {"action": t.name, "from_phase": m.phase})
        if t.name == "complete":
            await self._on_complete(stored)
        try:
            if t.needs_ack:
                stored = await self._await_ack(stored, t.name)
        finally:  # committed either way: a late acknowledgement does not bring the records back
            if stored.phase in (COMPLETE, CANCELLED):
                await retention.purge(self.store, stored.id)  # never raises (module docstring)
        return stored

    async def _eval_refusal(self, m: Migration, require_eval: bool | None,
                            max_age: float | None) -> str | None:
        required, age = eval_guard.settings(m.options, require_eval, max_age)
        if not required:
            return None
        env = await self.store.get(eval_gate.KIND, m.id)
        return eval_guard.refusal(m.id, env.data if env else None, self.clock(), age)

    async def set_read_mode(self, migration_id: str, mode: str,
                            expected_rev: int | None = None) -> Migration:
        m = self._expect(await self.get(migration_id), expected_rev)
        why = phases.read_mode_refusal(m, mode)
        if why:
            await self._refuse(m, f"read_mode:{mode}", why)
        stored = await self._cas_fresh(m, lambda cur: phases.set_read_mode(cur, mode, self.clock()),
                                       pinned=expected_rev is not None)
        self._notify("transition", stored, {"action": f"read_mode:{mode}"})
        return await self._await_ack(stored, f"read_mode:{mode}")

    async def pause(self, migration_id: str) -> Migration:
        return await self._knob(migration_id, "pause", lambda m: dataclasses.replace(m, paused=True))

    async def resume(self, migration_id: str) -> Migration:
        return await self._knob(migration_id, "resume", lambda m: dataclasses.replace(m, paused=False))

    async def throttle(self, migration_id: str, points_per_second: float | None) -> Migration:
        """Set the backfill rate: ``None`` unthrottled, 0 paused, else points per second."""
        if points_per_second is not None and points_per_second < 0:
            raise BadRequest(f"throttle must be >= 0 points per second, got {points_per_second}")
        rate = None if points_per_second is None else float(points_per_second)
        action = "throttle:unthrottled" if rate is None else f"throttle:{rate:g}"
        return await self._knob(migration_id, action, lambda m: dataclasses.replace(m, throttle=rate))
    async def cleanup(self, migration_id: str, yes: bool) -> Migration:
        """Delete the source after ``complete``; needs ``yes`` and never runs twice."""
        m = await self.get(migration_id)
        why = cleanup_refusal(m, yes)
        if why:
            await self._refuse(m, "cleanup", why)
        await kinds.of(m).cleanup(self.client, self.store, m)
        await retention.purge(self.store, m.id)  # again: the one at complete may have failed
        stored = await self._cas_fresh(  # the source is gone: the event must land
            m, lambda cur: cur.with_event(Event(self.clock(), "cleanup", cur.phase, cur.phase, cur.rev + 1)),
            pinned=False)
        self._notify("transition", stored, {"action": "cleanup"})
        return stored

    # -- internals

    async def _facts(self, m: Migration) -> phases.Facts:
        acks = await self.acks(m)
        return phases.Facts(now=self.clock(), verification_ttl=self.config.verification_ttl,
                            laggards=heartbeats.laggards(acks),
                            repair_pending=await repair_log.size(self.store, m.id))

    async def _settle(self, m: Migration) -> None:
        """Wait (bounded by ``ack_timeout``) until no live proxy lags ``m``'s routing revision;
        the guard that follows refuses, naming the laggards, if some still do."""
        deadline = time.monotonic() + self.config.ack_timeout
        while heartbeats.laggards(await self.acks(m)) and time.monotonic() < deadline:
            await asyncio.sleep(self.config.ack_poll)

    async def _await_ack(self, m: Migration, action: str) -> Migration:
        deadline = time.monotonic() + self.config.ack_timeout
        while True:
            lagging = heartbeats.laggards(await self.acks(m))
            if not lagging:
                return m
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.config.ack_poll)
        reason = (f"{action} is committed at revision {m.route_rev}, but proxies {', '.join(lagging)} "
                  f"did not acknowledge it within {self.config.ack_timeout:g}s; further steps wait for them")
        await self._refuse(await self.get(m.id), action, reason)
        raise AssertionError("unreachable")

    async def _on_complete(self, m: Migration) -> None:
        """Repoint the logical alias to the target and rebind it to model B; the source stays."""
        in_place = getattr(kinds.of(m), "complete_in_place", None)
        if in_place is not None:  # one collection: its bindings move to B's vector
            await in_place(self.store, m)
            return
        if not m.logical_is_alias or m.kind == "split":  # a split has no one target to point at
            return
        await io.repoint_alias(self.client, m.logical, m.target)
        env = await self.store.get(Binding.KIND, m.logical)
        if env is not None:
            b = Binding.from_dict(env.data)
            moved = Binding(b.collection, m.model_b, b.enforce, kinds.of(m).target_vector_name(m))
            await self.store.put(Binding.KIND, m.logical, moved.to_dict(), env.rev)

    async def _knob(self, migration_id: str, action: str,
                    change: Callable[[Migration], Migration]) -> Migration:
        """Backfill knobs commute, so a lost compare-and-set is simply retried (bounded)."""
        m = await self.get(migration_id)
        stored = await self._retrying(m, lambda cur: change(cur).with_event(
            Event(self.clock(), action, cur.phase, cur.phase, cur.rev + 1)), f"{action} not applied")
        self._notify("knob", stored, {"action": action})
        return stored


def _draft(f: PlanFacts) -> Migration:
    """The record a plan would store, before its kind's fields, id and counters (pure)."""
    r = f.request
    return Migration(
        id=f"{r.logical}-draft", logical=r.logical, source=f.source.collection, target=f.target,
        model_a=f.binding.model_id if f.binding else "", model_b=f.model_b.id if f.model_b else "",
        logical_is_alias=f.source.is_alias, vector=f.binding.vector if f.binding else "",
        doc_key=r.doc_key, text_field=r.text_field, copy_vectors=r.copy_vectors,
        mirror=r.mirror if r.mirror in MIRROR_MODES else "sync",
        lookup=r.lookup if r.lookup in LOOKUP_MODES else "exact", kind=r.kind or "reembed",
        options=dict(r.options))


def cleanup_refusal(m: Migration, yes: bool) -> str | None:
    """Pure guard for ``cleanup``."""
    if m.phase != COMPLETE:
        return f"cleanup only runs after complete (phase is {m.phase})"
    if any(e.action == "cleanup" for e in m.history):
        return f"source `{m.source}` was already cleaned up"
    split = m.kind == "split"  # the targets replace the shared source: its name goes with it
    if not split and not m.logical_is_alias and m.logical == m.source:
        return (f"the logical name `{m.logical}` is the source collection itself; clients that "
                "bypass the proxy still use it, so it is kept (create an alias first)")
    if not yes and split:
        return (f"cleanup deletes `{m.source}` for good, and writes to `{m.logical}` through the proxy "
                "are refused from then on (clients write to the split targets; reads keep fanning "
                "out); pass --yes")
    if not yes:
        return f"cleanup deletes `{m.source}` for good; pass --yes"
    return None

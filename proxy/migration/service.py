"""The migration control plane's I/O: plan, transitions (compare-and-set), acknowledgement,
verification, knobs, cleanup and watching. Decisions are delegated to the pure modules.

Transitions commit with a compare-and-set on the record's revision: two operators racing the
same step, exactly one wins and the other gets :class:`Conflict` naming the phase it lost to.
Steps that change what proxies do then wait (bounded) until every live proxy acts on the new
``route_rev``; when the wait ends with laggards the step stays committed, the refusal names
them, and the next forward step is refused by the ``proxies_acknowledged`` guard until they
catch up or go silent past their TTL.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from qdrant_client import AsyncQdrantClient

from switchyard.proxy.config import default_instance_id
from switchyard.proxy.dataplane import hot_docs, repair_log
from switchyard.proxy.errors import BadRequest, Conflict, NotFound
from switchyard.proxy.migration import eval_gate, eval_guard
from switchyard.proxy.migration import facts as io
from switchyard.proxy.migration import heartbeats, kinds, phases, plan_checks, progress, retention, verify_state
from switchyard.proxy.migration.hooks import Hooks
from switchyard.proxy.migration.planner import (
    PlanFacts, PlanRequest, doctor_findings, estimate, plan_order, validate,
)
from switchyard.proxy.migration.record import (
    CANCELLED, COMPLETE, DUAL_WRITE, LOOKUP_MODES, MIRROR_MODES, PLANNED, READS_SWITCHED, VERIFIED, Event, Migration,
    Refused, Verification,
)
from switchyard.proxy.migration.routing import route_for
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

VERIFY_PHASES = frozenset({DUAL_WRITE, VERIFIED, READS_SWITCHED})


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    ack_timeout: float = 30.0
    ack_poll: float = 0.25
    heartbeat_ttl: float = heartbeats.DEFAULT_TTL
    verification_ttl: float = phases.DEFAULT_VERIFICATION_TTL
    max_active: int = phases.DEFAULT_MAX_ACTIVE
    sample_size: int = 256
    probe_texts: int = 8
    #: the plan's doctor scan of the source: at most this many points (from the start of the
    #: id order, so it covers the sample), at most this many per second
    doctor_limit: int = 2000
    doctor_rate: float = 5000.0
    #: Who runs this service's verifications, as the ``verify`` record names it.
    instance_id: str = dataclasses.field(default_factory=default_instance_id)


@dataclass(frozen=True, slots=True)
class VerifyRun:
    """A verification that passed its guard and claimed its own run record (see
    :meth:`MigrationService.begin_verify` and :mod:`switchyard.proxy.migration.verify_state`)."""

    migration: Migration
    repair: bool
    run: verify_state.Run


class MigrationService:
    def __init__(self, store: StateStore, client: AsyncQdrantClient,
                 config: ServiceConfig = ServiceConfig(), hooks: Hooks | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.client, self.config = store, client, config
        self.hooks = hooks or Hooks()
        self.clock = clock

    async def close(self) -> None:
        await self.hooks.drain()

    # -- reading

    async def get(self, migration_id: str) -> Migration:
        env = await self.store.get(Migration.KIND, migration_id)
        if env is None:
            raise NotFound(f"migration `{migration_id}` doesn't exist")
        return Migration.from_envelope(env)

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

    async def verify(self, migration_id: str, expected_rev: int | None = None,
                     repair: bool = False) -> Migration:
        """Verify source against target; on success in ``dual_write`` also enter ``verified``.

        :meth:`begin_verify` then :meth:`run_verify`, in one call (``switchyard verify``); the
        admin API runs the second half as a background job (``switchyard.proxy.migration.verify_jobs``).
        """
        return await self.run_verify(await self.begin_verify(migration_id, repair, expected_rev))

    async def begin_verify(self, migration_id: str, repair: bool = False,
                           expected_rev: int | None = None) -> VerifyRun:
        """The quick half: the phase guard (refusal recorded) and the claim of a run record,
        which from now on shows the run as ``running`` (the migration's latest verify) in every
        proxy's status; :class:`Conflict` while another process's verify of this migration is
        live."""
        m = self._expect(await self.get(migration_id), expected_rev)
        if m.phase not in VERIFY_PHASES:
            await self._refuse(m, "verify", f"verification runs in {', '.join(sorted(VERIFY_PHASES))}, "
                                            f"not in phase {m.phase}")
        run = await verify_state.claim(self.store, m.id, self.config.instance_id, repair, self.clock())
        return VerifyRun(m, repair, run)

    async def run_verify(self, run: VerifyRun) -> Migration:
        """The long half: the backfill's merge-join (:func:`switchyard.backfill.verify.verify`: ids and
        source digests, differences confirmed by a second look). A clean result is stamped on the
        record (and proves the backfill done); differences are refused with their counts and
        sample ids, and ``repair`` fixes them first (re-embedding with model B). The outcome is
        also left on the run's record (also when the run fails or is cancelled)."""
        from switchyard.backfill.verify import refusal_reason, run_for_service

        m, vrun = run.migration, run.run
        try:
            found, left = await run_for_service(self.store, self.client, m, run.repair, vrun)
        except asyncio.CancelledError:
            await verify_state.finish_quietly(self.store, vrun, "cancelled",
                                              "stopped before it finished (its process shut down)")
            raise
        except Exception as exc:
            await verify_state.finish_quietly(self.store, vrun, "failed", str(exc))
            raise
        final = left if left is not None else found
        if not final.clean:
            counts = final.counts()
            hint = ("; a non-empty source needs the backfill first (`switchyard backfill "
                    f"{m.id}`)" if m.backfill != "done" else "; run `switchyard migrate verify --repair`")
            reason = (f"source `{m.source}` holds {counts['source']} points; verification found "
                      f"missing={counts['missing']}, extra={counts['extra']}, stale={counts['stale']} "
                      f"(sample ids {final.samples()}){hint}")
            reason = refusal_reason(final, reason)  # approximate points (adapter images) apart
            try:
                await self._refuse(await self.get(m.id), "verify", reason)
            finally:  # the outcome shows once the refusal is on the migration's record
                await verify_state.finish(self.store, vrun, "refused", reason, counts, self.clock())
        counts = {**found.counts(), **({"repaired": len(found.missing) + len(found.extra) + len(found.stale)}
                                       if left is not None else {})}
        ver = Verification(self.clock(), True, counts, "repaired" if left is not None else "", vrun.id)
        try:
            stored = await self._stamp(m.id, ver)
            if stored.phase == DUAL_WRITE:
                stored = await self.transition(m.id, "verify", stored.rev)
        except BaseException as exc:
            await verify_state.finish_quietly(self.store, vrun, "failed",
                                              f"clean, but stamping it failed: {exc}")
            raise
        # only now: whoever sees the job ended also sees the stamp and the `verified` phase
        await verify_state.finish(self.store, vrun, "clean", ver.note, counts, self.clock())
        return stored

    async def _stamp(self, migration_id: str, ver: Verification) -> Migration:
        """Stamp a clean verification on the current record. A verify runs long while daemons
        move counters and operators turn knobs, so a lost compare-and-set is retried (bounded);
        a migration that left the verify phases meanwhile is refused instead."""
        source = ver.counts.get("source", 0)

        async def still(m: Migration) -> None:
            if m.phase not in VERIFY_PHASES:
                await self._refuse(m, "verify", f"the verification was clean, but the migration "
                                                f"moved to phase {m.phase} while it ran")

        m = await self.get(migration_id)
        await still(m)
        return await self._retrying(m, lambda cur: dataclasses.replace(
            cur, verification=ver, backfill="done",
            counters={**cur.counters, "backfill_total": source, "backfill_done": source}),
            "the clean verification was not stamped", still)

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

    def _expect(self, m: Migration, expected_rev: int | None) -> Migration:
        if expected_rev is not None and m.rev != expected_rev:
            raise Conflict(f"migration `{m.id}` is now in phase {m.phase} at revision {m.rev}, "
                           f"not revision {expected_rev}")
        return m

    async def _facts(self, m: Migration) -> phases.Facts:
        acks = await self.acks(m)
        return phases.Facts(now=self.clock(), verification_ttl=self.config.verification_ttl,
                            laggards=heartbeats.laggards(acks),
                            repair_pending=await repair_log.size(self.store, m.id))

    async def _retrying(self, m: Migration, change: Callable[[Migration], Migration], what: str,
                        still: Callable[[Migration], Awaitable[None]] | None = None) -> Migration:
        """Store ``change(m)`` by compare-and-set. A lost race re-reads the record and applies
        ``change`` to the fresh one (at most :data:`_CAS_RETRIES` attempts); ``still(fresh)``
        raises when the fresh record no longer admits the change, and that refusal stands.
        Daemons move counters and operators turn knobs all the time, so a lost race is usually
        not the caller's conflict."""
        for _ in range(_CAS_RETRIES):
            try:
                return await self._cas(m, change(m))
            except Conflict:
                m = await self.get(m.id)
                if still is not None:
                    await still(m)
        raise Conflict(f"migration `{m.id}` kept changing; {what}")

    async def _cas_fresh(self, m: Migration, change: Callable[[Migration], Migration], pinned: bool) -> Migration:
        """:meth:`_retrying` for operator steps: a write that left the phase and routing revision
        as they were (a daemon's counters, a backfill knob) is not the operator's conflict; with a
        ``pinned`` revision (the caller's ``expected_rev``), or when the phase or routing moved,
        the :class:`Conflict` stands."""
        phase, route_rev = m.phase, m.route_rev

        async def still(now: Migration) -> None:
            if pinned or now.phase != phase or now.route_rev != route_rev:
                raise Conflict(f"migration `{now.id}` changed concurrently: it is now in phase "
                               f"{now.phase} at revision {now.rev}")

        return await self._retrying(m, change, "the step was not applied", still)

    async def _cas(self, m: Migration, new: Migration) -> Migration:
        """Store ``new`` if ``m`` is still current; else :class:`Conflict` naming the current phase."""
        try:
            env = await self.store.put(Migration.KIND, m.id, new.stored(), m.rev)
        except Conflict as exc:
            now = await self.get(m.id)
            raise Conflict(f"migration `{m.id}` changed concurrently: it is now in phase "
                           f"{now.phase} at revision {now.rev}") from exc
        return Migration.from_envelope(env)

    async def _refuse(self, m: Migration, action: str, reason: str) -> None:
        """Record ``reason`` as the last refusal (best effort), notify hooks, raise :class:`Refused`."""
        try:
            await self._cas(m, phases.refused(m, action, reason, self.clock()))
        except Conflict:
            pass
        self._notify("refusal", m, {"action": action, "reason": reason})
        raise Refused(reason)

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

    def _notify(self, kind: str, m: Migration | None, extra: dict[str, Any]) -> None:
        event = {"event": kind, "at": self.clock(), **extra}
        if m is not None:
            event.update(migration=m.id, logical=m.logical, phase=m.phase, rev=m.rev)
        self.hooks.notify(event)


#: Compare-and-set attempts when only housekeeping writes got in between (``_cas_fresh``).
_CAS_RETRIES = 5


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

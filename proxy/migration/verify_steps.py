"""The migration service's verification: the phase guard and run claim, the long merge-join
(with ``repair``), and stamping a clean result on the record.

A verify comes in two halves, :meth:`VerifySteps.begin_verify` (quick: guard, run record) then
:meth:`VerifySteps.run_verify` (minutes on a large collection), because the admin API runs the
long half as a background job (:mod:`switchyard.proxy.migration.verify_jobs`);
:meth:`VerifySteps.verify` runs both in one call (``switchyard verify``).

:class:`VerifySteps` is a base of :class:`switchyard.proxy.migration.service.MigrationService`,
used only through it. A clean verify in ``dual_write`` enters ``verified`` through the
service's ``transition``; this class declares that method for the type checker only, so this
module does not import :mod:`service` (which imports it: no cycle).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switchyard.proxy.migration import verify_state
from switchyard.proxy.migration.commits import RecordCommits
from switchyard.proxy.migration.record import DUAL_WRITE, READS_SWITCHED, VERIFIED, Migration, Verification

VERIFY_PHASES = frozenset({DUAL_WRITE, VERIFIED, READS_SWITCHED})


@dataclass(frozen=True, slots=True)
class VerifyRun:
    """A verification that passed its guard and claimed its own run record (see
    :meth:`MigrationService.begin_verify` and :mod:`switchyard.proxy.migration.verify_state`)."""

    migration: Migration
    repair: bool
    run: verify_state.Run


class VerifySteps(RecordCommits):
    """``verify``, ``begin_verify``, ``run_verify`` (and ``_stamp``) of :class:`MigrationService`
    (see the module docstring)."""

    if TYPE_CHECKING:  # defined by MigrationService, the only class built on this one
        async def transition(self, migration_id: str, name: str, expected_rev: int | None = None,
                             require_eval: bool | None = None,
                             eval_max_age: float | None = None) -> Migration: ...

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

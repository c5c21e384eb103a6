"""Verifications as owned background jobs of the proxy process, one per migration.

A verify reads both collections end to end (and with ``repair`` re-embeds what differs), which
takes minutes on a large collection: far too long for one admin request. The admin API starts
it here and either awaits its outcome (``wait=true``) or answers at once (``wait=false``) while
the ``verify`` record shows its progress in every proxy's status.

- Each job is one verify run with its own record (``switchyard.proxy.migration.verify_state``): status
  shows its progress under its run id, apart from any other verify (another proxy's is
  refused while live; a backfill daemon's full-verify pass runs beside it in its own record).
- One job per migration: a second request while one runs *joins* it (awaits the same
  outcome); a request with the other ``repair`` value is refused (409) instead of silently
  getting a result it did not ask for.
- The job is shielded from its callers: a client that disconnects does not stop it.
- :meth:`VerifyJobs.stop` cancels and awaits every job (the interceptor calls it on shutdown),
  so nothing outlives the proxy; the cancelled run leaves ``cancelled`` on its record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TypeAlias

from switchyard.proxy.errors import Conflict, SwitchyardError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService, VerifyRun
from switchyard.proxy.owned_tasks import stop_task

log = logging.getLogger("switchyard.verify")

Outcome: TypeAlias = Migration | SwitchyardError


@dataclass(frozen=True, slots=True)
class VerifyJob:
    migration_id: str
    repair: bool
    task: asyncio.Task[Outcome]
    run_id: str = ""

    @property
    def running(self) -> bool:
        return not self.task.done()


def _kind(repair: bool) -> str:
    return "with repair" if repair else "without repair"


class VerifyJobs:
    """The running verifications of one process (see the module docstring)."""

    def __init__(self, service: MigrationService) -> None:
        self.service = service
        self._jobs: dict[str, VerifyJob] = {}
        self._starting = asyncio.Lock()

    def running(self, migration_id: str) -> VerifyJob | None:
        job = self._jobs.get(migration_id)
        return job if job is not None and job.running else None

    async def start(self, migration_id: str, repair: bool) -> tuple[VerifyJob, bool]:
        """(the job, whether it was already running and this call joined it).

        The guard and the claim of the run's record run before this returns, so an
        unknown migration (404), a wrong phase (409, recorded as the last refusal) or another
        process's live verify (409) is answered at once, and status shows the job running."""
        async with self._starting:
            job = self.running(migration_id)
            if job is not None:
                if job.repair != repair:
                    raise Conflict(
                        f"a verify {_kind(job.repair)} of migration `{migration_id}` is already "
                        f"running in this proxy; a verify {_kind(repair)} can start once it ends "
                        "(follow it with `switchyard migrate status`)")
                return job, True
            run = await self.service.begin_verify(migration_id, repair)
            task = asyncio.get_running_loop().create_task(self._run(run), name=f"verify-{migration_id}")
            job = VerifyJob(migration_id, repair, task, run.run.id)
            self._jobs[migration_id] = job
            task.add_done_callback(lambda _: self._forget(job))
            return job, False

    async def outcome(self, job: VerifyJob) -> Migration:
        """Await ``job`` (without cancelling it if this caller goes away): the migration, or
        the error it ended with (a refusal carries counts and sample ids)."""
        try:
            result = await asyncio.shield(job.task)
        except asyncio.CancelledError:
            if not job.task.cancelled():
                raise  # this caller was cancelled; the job goes on
            raise SwitchyardError(f"the verify of migration `{job.migration_id}` was stopped before "
                                  "it finished: the proxy is shutting down") from None
        if isinstance(result, SwitchyardError):
            raise type(result)(result.message, raw=True)  # a fresh error per waiter
        return result

    async def stop(self) -> None:
        """Cancel every running job and wait until each has finished."""
        for job in list(self._jobs.values()):
            await stop_task(job.task)
        self._jobs.clear()

    async def _run(self, run: VerifyRun) -> Outcome:
        try:
            return await self.service.run_verify(run)
        except SwitchyardError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a foreign error from the upstream or embedder
            log.exception("verify of %s failed", run.migration.id)
            return SwitchyardError(f"verify of migration `{run.migration.id}` failed: {exc}")

    def _forget(self, job: VerifyJob) -> None:
        if self._jobs.get(job.migration_id) is job:
            del self._jobs[job.migration_id]

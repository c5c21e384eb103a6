"""The migration service's base: construction, reading the record, and committing changes to it.

Every step of :class:`switchyard.proxy.migration.service.MigrationService` writes the record the
same way, so the ways live here once, at the bottom of its bases: the verification steps
(:mod:`verify_steps`) build on :class:`RecordCommits`, and the operator steps (plan,
transitions, knobs, cleanup: :mod:`service`) on those. This module imports neither of them.

- a write is a compare-and-set on the record's revision (:meth:`RecordCommits._cas`); a lost
  race raises :class:`Conflict` naming the phase it lost to, or, where the write commutes with
  whatever got in between, is retried on the fresh record (bounded, :meth:`RecordCommits._retrying`
  and :meth:`RecordCommits._cas_fresh`);
- a refused step records its reason on the record (best effort), tells the hooks and raises
  :class:`Refused` (:meth:`RecordCommits._refuse`);
- hooks hear every transition, knob and refusal (:meth:`RecordCommits._notify`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.proxy.config import default_instance_id
from switchyard.proxy.errors import Conflict, NotFound
from switchyard.proxy.migration import heartbeats, phases
from switchyard.proxy.migration.hooks import Hooks
from switchyard.proxy.migration.record import Migration, Refused
from switchyard.proxy.state.store import StateStore


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


class RecordCommits:
    """What every migration step needs: the store, the client, the config, hooks and clock;
    the record read by id; and its compare-and-set commits and recorded refusals."""

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

    # -- committing

    def _expect(self, m: Migration, expected_rev: int | None) -> Migration:
        if expected_rev is not None and m.rev != expected_rev:
            raise Conflict(f"migration `{m.id}` is now in phase {m.phase} at revision {m.rev}, "
                           f"not revision {expected_rev}")
        return m

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

    def _notify(self, kind: str, m: Migration | None, extra: dict[str, Any]) -> None:
        event = {"event": kind, "at": self.clock(), **extra}
        if m is not None:
            event.update(migration=m.id, logical=m.logical, phase=m.phase, rev=m.rev)
        self.hooks.notify(event)


#: Compare-and-set attempts when only housekeeping writes got in between (``_cas_fresh``).
_CAS_RETRIES = 5

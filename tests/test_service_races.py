"""Operator actions against the daemons' housekeeping writes: a counters update that lands
between the service's read and its compare-and-set is not the operator's conflict (the action is
applied to the fresh record), while a pinned revision or a phase change still is.

The race is made deterministic at a seam we own: a state store that, once armed, performs one
"daemon" write of the migration's counters right before the service's next compare-and-set."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from switchyard.proxy.errors import Conflict
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.store import Envelope, StateStore
from test_migration_service import World, planned, world  # noqa: F401 - the fixture


class RacingStore(StateStore):
    """Before the next ``put`` of a migration record, another writer updates its counters."""

    race: str | None = None  # "counters" | "phase"

    async def put(self, kind: str, key: str, data: dict[str, Any], expected_rev: int) -> Envelope:
        if kind == Migration.KIND and self.race is not None:
            race, self.race = self.race, None
            env = await self.require(kind, key)
            m = Migration.from_envelope(env)
            other = (dataclasses.replace(m, counters={**m.counters, "backfill_done": 7}) if race == "counters"
                     else dataclasses.replace(m, phase="verified"))
            await super().put(kind, key, other.stored(), env.rev)
        return await super().put(kind, key, data, expected_rev)


def _racing(w: World) -> RacingStore:
    return RacingStore(w.client, collection=w.store.collection)


async def test_read_mode_and_transition_survive_a_counters_write(world: World) -> None:  # noqa: F811
    store = _racing(world)
    service = world.service()
    service.store = store
    mid = await planned(world, service)
    store.race = "counters"
    m = await service.transition(mid, "start")
    assert m.phase == "dual_write" and m.counter("backfill_done") == 7  # applied on the fresh record
    store.race = "counters"
    m = await service.set_read_mode(mid, "merged")
    assert m.read_mode == "merged" and m.counter("backfill_done") == 7


async def test_a_pinned_revision_or_a_phase_change_is_still_a_conflict(world: World) -> None:  # noqa: F811
    store = _racing(world)
    service = world.service()
    service.store = store
    mid = await planned(world, service)
    m = await service.transition(mid, "start")
    store.race = "counters"
    with pytest.raises(Conflict, match="changed concurrently"):
        await service.set_read_mode(mid, "merged", expected_rev=m.rev)
    store.race = "phase"
    with pytest.raises(Conflict, match="now in phase verified"):
        await service.set_read_mode(mid, "shadow")

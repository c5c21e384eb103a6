"""Proxy heartbeats: each proxy reports the migration revisions it acts on; the control plane
computes who lags.

A heartbeat is a state-store record of kind ``proxy`` keyed by instance id::

    {"instance_id": "p-1", "acted": {"<migration id>": <route_rev>}, "last_seen": <unix time>}

written last-writer-wins (nobody else writes it). A proxy silent for longer than the TTL is
``gone`` and stops counting: the wait for acknowledgement never hangs on a dead replica.
``last_seen`` is the proxy's wall clock, so hosts need roughly synchronised clocks (NTP), and
the TTL should be several heartbeat intervals plus the state cache TTL.

A proxy beats only while its state snapshot is fresh (``stale`` returns ``None``): one that
cannot read the state store stops beating, so it is never counted as having acted on a
revision it has not seen. While its last record is younger than the TTL it counts as
``lagging`` for any newer revision (transitions wait); after that it is ``gone`` and stops
counting, by which time it already refuses the writes a migration governs
(``switchyard.proxy.state.freshness``), so nothing it does goes unmirrored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.heartbeat")

KIND = "proxy"
DEFAULT_TTL = 10.0
DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    instance_id: str
    acted: Mapping[str, int] = field(default_factory=dict)
    last_seen: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "acted": dict(self.acted), "last_seen": self.last_seen}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Heartbeat:
        acted = {str(k): int(v) for k, v in dict(data.get("acted") or {}).items()}
        return cls(str(data["instance_id"]), acted, float(data.get("last_seen") or 0.0))


@dataclass(frozen=True, slots=True)
class ProxyAck:
    """One proxy as ``status`` shows it: the revision it acts on and whether it still counts."""

    instance_id: str
    acted_rev: int
    last_seen: float
    state: str  # "acked" | "lagging" | "gone"

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "acted_rev": self.acted_rev,
                "last_seen": self.last_seen, "state": self.state}


def ack_states(beats: Iterable[Heartbeat], migration_id: str, route_rev: int,
               now: float, ttl: float) -> list[ProxyAck]:
    """Every known proxy's state for one migration revision (pure), in instance-id order."""
    out = []
    for b in sorted(beats, key=lambda b: b.instance_id):
        acted = int(b.acted.get(migration_id, 0))
        if now - b.last_seen > ttl:
            state = "gone"
        elif acted >= route_rev:
            state = "acked"
        else:
            state = "lagging"
        out.append(ProxyAck(b.instance_id, acted, b.last_seen, state))
    return out


def laggards(acks: Iterable[ProxyAck]) -> tuple[str, ...]:
    """Live proxies that have not acted on the revision yet."""
    return tuple(a.instance_id for a in acks if a.state == "lagging")


class SnapshotSource(Protocol):
    """What the heartbeat needs from the proxy's state cache: its current snapshot."""

    @property
    def snapshot(self) -> Any: ...


def acted_revisions(snapshot: Any) -> dict[str, int]:
    """The ``route_rev`` of every migration the snapshot holds: what this proxy acts on."""
    migrations = getattr(snapshot, "migrations", None) or {}
    return {mid: int(m.route_rev) for mid, m in migrations.items()}


async def beat(store: StateStore, instance_id: str, cache: SnapshotSource) -> Heartbeat:
    hb = Heartbeat(instance_id, acted_revisions(cache.snapshot), time.time())
    await store.upsert(KIND, instance_id, hb.to_dict())
    return hb


async def list_heartbeats(store: StateStore) -> list[Heartbeat]:
    return [Heartbeat.from_dict(e.data) for e in await store.list(KIND)]


#: ``stale()``: why this proxy may not vouch for its snapshot now (``None``: it may).
StaleCheck = Callable[[], "str | None"]


def _never_stale() -> str | None:
    return None


async def run_heartbeats(store: StateStore, instance_id: str, cache: SnapshotSource,
                         interval: float = DEFAULT_INTERVAL, stale: StaleCheck = _never_stale) -> None:
    """Heartbeat every ``interval`` seconds until cancelled; a failed beat is logged, not fatal;
    no beat while ``stale()`` gives a reason (logged once per reason)."""
    last_error = ""
    while True:
        reason = stale()
        if reason is not None:
            if reason.split(" for ")[0] != last_error.split(" for ")[0]:
                log.warning("heartbeat of %s withheld: %s", instance_id, reason)
            last_error = reason
        else:
            try:
                await beat(store, instance_id, cache)
                last_error = ""
            except SwitchyardError as exc:
                if str(exc) != last_error:
                    log.warning("heartbeat of %s failed: %s", instance_id, exc)
                last_error = str(exc)
        await asyncio.sleep(interval)


class HeartbeatLoop:
    """Owns the heartbeat task: :meth:`start` after the state cache, :meth:`stop` on shutdown."""

    def __init__(self, store: StateStore, instance_id: str, cache: SnapshotSource,
                 interval: float = DEFAULT_INTERVAL, stale: StaleCheck = _never_stale) -> None:
        self.store, self.instance_id, self.cache, self.interval = store, instance_id, cache, interval
        self.stale = stale
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                run_heartbeats(self.store, self.instance_id, self.cache, self.interval, self.stale),
                name=f"heartbeat-{self.instance_id}")

    async def stop(self) -> None:
        """Stop beating and withdraw this proxy's record, so transitions stop waiting for it
        at once (a proxy that dies without stopping ages out after the TTL instead)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
            try:
                await self.store.delete(KIND, self.instance_id)
            except SwitchyardError:
                pass

"""Fail closed on state: when a proxy's snapshot is too old, writes a migration governs are refused.

A proxy decides where a write goes (and whether it is mirrored) from its cached
:class:`~switchyard.proxy.state.snapshot.StateSnapshot`. When the state store cannot be read, that snapshot
ages; past ``state_max_staleness`` the proxy no longer knows whether a migration moved on (a
phase change, a new secondary), so a write it forwarded could go unmirrored with no repair
record. :func:`write_refusal` is the one decision, pure and tested as a table:

=========================  ==========================  ==================  =====================
snapshot age               collection at last snapshot  call kind           verdict
=========================  ==========================  ==================  =====================
<= bound                   anything                    anything            allow
> bound (or never read)    governed by a migration     write               refuse (503) + reason
> bound (or never read)    governed by a migration     read                allow (last routing)
> bound (or never read)    not governed                anything            allow
=========================  ==========================  ==================  =====================

"Governed" means a migration in an active phase (planned .. writes_switched) names the
collection as its logical name; a complete or cancelled one no longer mirrors anything.

The same bound stops the heartbeat (``switchyard.proxy.migration.heartbeats``): a stale proxy sends none,
so it ages out as ``gone`` rather than being counted as having acted on a revision it never saw;
since ``heartbeat_interval < heartbeat_ttl``, it already refuses those writes by the time the
control plane stops waiting for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import Counter

from switchyard.proxy.errors import StateUnavailable
from switchyard.proxy.migration.record import ACTIVE_PHASES, Migration
from switchyard.proxy.migration.routing import governing

log = logging.getLogger("switchyard.state")

STALE_REFUSALS = Counter("switchyard_stale_state_refusals_total",
                         "writes refused because the proxy could not read its migration state")

#: How much longer than the cache TTL a snapshot may be trusted by default.
DEFAULT_SLACK = 3.0


def governed_by(migrations: Mapping[str, Migration], name: str) -> str | None:
    """The id of the active migration governing ``name`` in a snapshot, else ``None`` (pure)."""
    if not migrations:
        return None
    m = governing(migrations.values(), name)
    return m.id if m is not None and m.phase in ACTIVE_PHASES else None


def stale_reason(age: float | None, max_age: float, cause: str | None) -> str | None:
    """Why the snapshot may not be trusted (``None``: it may). ``age`` ``None``: never read."""
    if age is not None and age <= max_age:
        return None
    held = "never read it" if age is None else f"for {age:.1f} s"
    why = f" ({cause})" if cause else ""
    return f"Switchyard cannot read its migration state {held}{why}"


def write_refusal(age: float | None, max_age: float, collection: str, migration_id: str | None,
                  kind: str, cause: str | None = None) -> str | None:
    """The refusal reason for one call, or ``None`` to let it through. See the module table."""
    if kind != "write" or migration_id is None:
        return None
    stale = stale_reason(age, max_age, cause)
    if stale is None:
        return None
    return (f"{stale}; writes to {collection} (migration {migration_id}) are refused until it "
            "can, so none goes unmirrored")


class AgeSource(Protocol):
    """The proxy's state cache as the guard sees it."""

    last_exception: BaseException | None

    def age(self) -> float | None: ...


def cause_of(cache: AgeSource) -> str | None:
    """The last refresh failure in a few words (for the refusal and the withheld heartbeat)."""
    exc = cache.last_exception
    if exc is None:
        return None
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class StateGuard:
    """Applies :func:`write_refusal` to the live cache: the executor calls it for every routed
    call, the heartbeat loop asks :meth:`stale` before each beat."""

    def __init__(self, cache: AgeSource, max_age: float) -> None:
        self.cache = cache
        self.max_age = max_age
        self._logged: tuple[str, str | None] | None = None  # one warning per collection and cause

    def stale(self) -> str | None:
        return stale_reason(self.cache.age(), self.max_age, cause_of(self.cache))

    def check(self, migrations: Mapping[str, Migration], collection: str, kind: str) -> None:
        """Raise :class:`~switchyard.proxy.errors.StateUnavailable` when this call must be refused."""
        if kind != "write":
            return
        mid = governed_by(migrations, collection)
        if mid is None:
            return
        reason = write_refusal(self.cache.age(), self.max_age, collection, mid, kind,
                               cause_of(self.cache))
        if reason is not None:
            STALE_REFUSALS.inc()
            episode = (collection, cause_of(self.cache))
            if episode != self._logged:  # an outage refuses many writes: log it once, count all
                self._logged = episode
                log.warning("refused write: %s", reason)
            raise StateUnavailable(reason)

"""The migration state machine: phases, transitions, and the guards that refuse them (all pure).

Each transition names the phases it may start from, the phase it enters, whether it changes
what proxies do (then the service waits for every live proxy to act on the new revision) and
its guards. A guard is a pure function returning a refusal reason, or ``None`` when it lets the
transition through; :func:`refusal` runs them in a fixed order and returns the first reason.
The clock, the heartbeats and the repair-log size come in as :class:`Facts`, so every
decision here is a table test away.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from switchyard.proxy.migration.record import (
    CANCELLED, COMPLETE, DUAL_WRITE, PLANNED, READ_MODES, READS_SWITCHED, VERIFIED,
    WRITES_SWITCHED, Event, Migration,
)

#: Default freshness of a verification for ``switch-reads`` (seconds).
DEFAULT_VERIFICATION_TTL = 3600.0
#: Default limit of active migrations across the cluster.
DEFAULT_MAX_ACTIVE = 3
#: Phases in which the read-mode knob may be turned.
READ_MODE_PHASES = frozenset({PLANNED, DUAL_WRITE, VERIFIED})


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards need from the world, gathered by the service before deciding."""

    now: float
    verification_ttl: float = DEFAULT_VERIFICATION_TTL
    laggards: tuple[str, ...] = ()
    #: the repair log's true size (records in the store, coarse entry included), not a counter
    repair_pending: int = 0


Guard = Callable[[Migration, Facts], "str | None"]


def verification_fresh(m: Migration, f: Facts) -> str | None:
    """Refuse without a clean verification younger than the TTL."""
    v = m.verification
    if v is None:
        return "no verification has been recorded; run `switchyard migrate verify`"
    if not v.clean:
        return f"the last verification found differences {dict(v.counts)}; repair and verify again"
    age = f.now - v.at
    if age > f.verification_ttl:
        return (f"the last verification is {age:.0f}s old, older than its TTL of "
                f"{f.verification_ttl:.0f}s; verify again")
    return None


def backfill_done(m: Migration, f: Facts) -> str | None:
    if m.backfill != "done":
        done, total = m.counter("backfill_done"), m.counter("backfill_total")
        return f"the backfill is {m.backfill} ({done}/{total} points); it must be done first"
    return None


def proxies_acknowledged(m: Migration, f: Facts) -> str | None:
    """Refuse while a live proxy still acts on an older revision of this migration."""
    if f.laggards:
        return (f"proxies {', '.join(f.laggards)} have not acknowledged revision {m.route_rev}; "
                "wait for them or for their heartbeat TTL to expire")
    return None


def repair_log_empty(m: Migration, f: Facts) -> str | None:
    if f.repair_pending:
        return f"the repair log holds {f.repair_pending} entries; let the backfill replay them first"
    return None


def active_limit(active: int, limit: int) -> str | None:
    """Planner guard: at most ``limit`` active migrations in total."""
    if active >= limit:
        return f"{active} migrations are active, the limit is {limit}; complete or cancel one first"
    return None


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    sources: frozenset[str]
    to_phase: str
    needs_ack: bool
    guards: tuple[Guard, ...] = ()
    inverse: bool = False


def _t(name: str, sources: Sequence[str], to_phase: str, needs_ack: bool,
       guards: tuple[Guard, ...] = (), inverse: bool = False) -> Transition:
    return Transition(name, frozenset(sources), to_phase, needs_ack, guards, inverse)


TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    _t("start", [PLANNED], DUAL_WRITE, True, (proxies_acknowledged,)),
    _t("verify", [DUAL_WRITE], VERIFIED, False,
       (verification_fresh, backfill_done, repair_log_empty)),
    _t("switch_reads", [VERIFIED], READS_SWITCHED, True,
       (verification_fresh, repair_log_empty, proxies_acknowledged)),
    _t("switch_reads_back", [READS_SWITCHED], VERIFIED, True, inverse=True),
    _t("switch_writes", [READS_SWITCHED], WRITES_SWITCHED, True, (proxies_acknowledged,)),
    _t("switch_writes_back", [WRITES_SWITCHED], READS_SWITCHED, True, inverse=True),
    _t("complete", [WRITES_SWITCHED], COMPLETE, True, (repair_log_empty, proxies_acknowledged)),
    _t("cancel", [PLANNED, DUAL_WRITE, VERIFIED], CANCELLED, True, inverse=True),
)}


def transition_named(name: str) -> Transition | None:
    """Accepts CLI spellings too: ``switch-reads --back`` arrives as ``switch-reads-back``."""
    return TRANSITIONS.get(name.replace("-", "_"))


def phase_refusal(m: Migration, t: Transition) -> str | None:
    if m.phase in t.sources:
        return None
    allowed = ", ".join(sorted(t.sources))
    return f"cannot {t.name.replace('_', '-')} from phase {m.phase} (only from {allowed})"


def refusal(m: Migration, name: str, facts: Facts) -> str | None:
    """Why ``name`` may not be applied to ``m`` now, or ``None`` if it may."""
    t = transition_named(name)
    if t is None:
        return f"unknown transition {name!r} (one of {', '.join(sorted(TRANSITIONS))})"
    why = phase_refusal(m, t)
    if why:
        return why
    for guard in t.guards:
        why = guard(m, facts)
        if why:
            return why
    return None


def apply(m: Migration, name: str, now: float) -> Migration:
    """The record after ``name`` (caller checked :func:`refusal`).

    ``route_rev`` moves to the next revision only when the step changes what proxies do, so a
    step like ``verify`` never makes live proxies look behind.
    """
    t = TRANSITIONS[name.replace("-", "_")]
    route_rev = m.rev + 1 if t.needs_ack else m.route_rev
    moved = dataclasses.replace(m, phase=t.to_phase, route_rev=route_rev, last_refusal=None)
    return moved.with_event(Event(now, t.name, m.phase, t.to_phase, m.rev + 1))


def read_mode_refusal(m: Migration, mode: str) -> str | None:
    """The read-mode knob exists only before reads are switched."""
    if mode not in READ_MODES:
        return f"unknown read mode {mode!r} (one of {', '.join(READ_MODES)})"
    if m.phase not in READ_MODE_PHASES:
        return f"the read mode can only change before reads_switched (phase is {m.phase})"
    return None


def set_read_mode(m: Migration, mode: str, now: float) -> Migration:
    moved = dataclasses.replace(m, read_mode=mode, route_rev=m.rev + 1)
    return moved.with_event(Event(now, f"read_mode:{mode}", m.phase, m.phase, m.rev + 1))


def refused(m: Migration, action: str, reason: str, now: float) -> Migration:
    """The record with ``reason`` as its last refusal (what ``status`` shows)."""
    return dataclasses.replace(m, last_refusal=Event(now, action, m.phase, m.phase, m.rev, reason))

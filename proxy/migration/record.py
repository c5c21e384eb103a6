"""The migration record kept in the state store (kind ``migration``), and its JSON form.

A :class:`Migration` is immutable: every change builds a new one and is stored with a
compare-and-set on the store revision (``rev``, copied from the envelope, never from ``data``).
``route_rev`` is the store revision at which the fields proxies act on (phase, read mode) last
changed: proxies acknowledge it, so counter or throttle updates never make them look behind.

``throttle`` is the operator's backfill rate in points per second: ``None`` is "unthrottled",
``0`` is "paused" (everywhere: plan, record, CLI, admin API, status). Records are stored with
``layout`` :data:`LAYOUT`; older ones are migrated on read (:func:`migrate_throttle`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from switchyard.proxy.errors import BadRequest, SwitchyardError
from switchyard.proxy.state.store import Envelope

PLANNED = "planned"
DUAL_WRITE = "dual_write"
VERIFIED = "verified"
READS_SWITCHED = "reads_switched"
WRITES_SWITCHED = "writes_switched"
COMPLETE = "complete"
CANCELLED = "cancelled"
PHASES = (PLANNED, DUAL_WRITE, VERIFIED, READS_SWITCHED, WRITES_SWITCHED, COMPLETE, CANCELLED)
#: Phases in which a migration occupies its collection (counts against the active limit).
ACTIVE_PHASES = frozenset({PLANNED, DUAL_WRITE, VERIFIED, READS_SWITCHED, WRITES_SWITCHED})

READ_MODES = ("source", "merged", "shadow")
#: How a merged read finds source hits' documents in the target: ``exact`` by doc key (a
#: ``MatchAny`` on the doc-key field: any point of the document counts), ``ids`` by the hits'
#: own point ids (one cheap retrieve; exact only when a document's points arrive together).
LOOKUP_MODES = ("exact", "ids")
BACKFILL_STATES = ("pending", "running", "done")


class Refused(SwitchyardError):
    """A transition or command refused by a guard; the message says why (409 / FAILED_PRECONDITION)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"
    prefix = "Refused: "


@dataclass(frozen=True, slots=True)
class Verification:
    """A verification result: when, whether it found nothing missing/extra/stale, its counts,
    and the verify run that found it (``switchyard.proxy.migration.verify_state``; "" before runs)."""

    at: float
    clean: bool
    counts: Mapping[str, int] = field(default_factory=dict)
    note: str = ""
    run: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "clean": self.clean, "counts": dict(self.counts), "note": self.note,
                "run": self.run}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verification:
        counts = {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}
        return cls(float(data["at"]), bool(data["clean"]), counts, str(data.get("note") or ""),
                   str(data.get("run") or ""))


@dataclass(frozen=True, slots=True)
class Event:
    """One line of history or the last refusal: what was attempted, the outcome, and why."""

    at: float
    action: str
    from_phase: str
    to_phase: str
    rev: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(float(data["at"]), str(data["action"]), str(data["from_phase"]),
                   str(data["to_phase"]), int(data["rev"]), str(data.get("reason") or ""))


MIRROR_MODES = ("sync", "async")

#: Layout of the stored record. 1 (no ``layout`` field): ``throttle`` 0 meant "unthrottled"
#: unless the last ``throttle:`` history event was ``throttle:0``. 2: ``None`` is unthrottled
#: and 0 is paused.
LAYOUT = 2


def migrate_throttle(stored: Any, layout: int, history_actions: Sequence[str]) -> float | None:
    """The throttle of a stored record in today's terms (pure): ``None`` unthrottled, 0 paused.

    Layout 1 (written before ``layout`` existed) stored 0 both for a plan without ``--throttle``
    (unthrottled) and after a ``throttle 0`` command (paused); the backfill told them apart by
    the last ``throttle:`` event of the history (``switchyard.backfill.throttle.operator_rate`` then), and
    so does this migration, which keeps every old record's behaviour."""
    if layout >= 2:
        return None if stored is None else float(stored)
    value = float(stored or 0.0)
    if value > 0:
        return value
    events = [a for a in history_actions if a.startswith("throttle:")]
    return 0.0 if events and events[-1] == "throttle:0" else None


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration of ``logical`` from ``source`` (model A) to ``target`` (model B), of
    ``kind`` (``reembed`` re-embeds with B; other kinds: ``switchyard.proxy.migration.kinds``)."""

    KIND: ClassVar[str] = "migration"
    HISTORY_LIMIT: ClassVar[int] = 100

    id: str
    logical: str
    source: str
    target: str
    model_a: str
    model_b: str
    logical_is_alias: bool = False
    vector: str = ""
    doc_key: str = "doc_id"
    text_field: str = "text"
    copy_vectors: bool = False
    mirror: str = "sync"  # "sync": the client's answer waits for the secondary; "async": it does not
    lookup: str = "exact"  # merged reads' doc-key lookup (LOOKUP_MODES); older records: exact
    #: what kind of change (``switchyard.proxy.migration.kinds``); records before kinds: reembed
    kind: str = "reembed"
    #: the kind's options as planned (a JSON map; a kind may add what it derived at plan time)
    options: Mapping[str, Any] = field(default_factory=dict)
    phase: str = PLANNED
    read_mode: str = "source"
    rev: int = 0
    route_rev: int = 1
    created_at: float = 0.0
    paused: bool = False
    throttle: float | None = None  # None: unthrottled; 0: paused
    backfill: str = "pending"
    counters: Mapping[str, int] = field(default_factory=dict)
    last_refusal: Event | None = None
    verification: Verification | None = None
    #: The recent verify runs (``switchyard.proxy.migration.verify_state``), newest last: the last is the
    #: latest verify. Empty in records from before runs (their one ``verify`` record is read).
    verify_runs: tuple[str, ...] = ()
    history: tuple[Event, ...] = ()

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise BadRequest(f"unknown phase {self.phase!r} (one of {', '.join(PHASES)})")
        if self.read_mode not in READ_MODES:
            raise BadRequest(f"unknown read mode {self.read_mode!r} (one of {', '.join(READ_MODES)})")
        if self.backfill not in BACKFILL_STATES:
            raise BadRequest(f"unknown backfill state {self.backfill!r}")
        if self.mirror not in MIRROR_MODES:
            raise BadRequest(f"unknown mirror mode {self.mirror!r} (one of {', '.join(MIRROR_MODES)})")
        if self.lookup not in LOOKUP_MODES:
            raise BadRequest(f"unknown lookup mode {self.lookup!r} (one of {', '.join(LOOKUP_MODES)})")
        if not isinstance(self.kind, str) or not self.kind:
            raise BadRequest(f"migration kind must be a non-empty name, got {self.kind!r}")
        if self.throttle is not None and self.throttle < 0:
            raise BadRequest(f"throttle must be >= 0 points per second, got {self.throttle}")

    @property
    def key(self) -> str:
        return self.id

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    def counter(self, name: str) -> int:
        return int(self.counters.get(name, 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``rev`` is included for readers but ignored by :meth:`from_envelope`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["counters"] = dict(self.counters)
        out["options"] = dict(self.options)
        out["last_refusal"] = self.last_refusal.to_dict() if self.last_refusal else None
        out["verification"] = self.verification.to_dict() if self.verification else None
        out["history"] = [e.to_dict() for e in self.history]
        out["verify_runs"] = list(self.verify_runs)
        out["layout"] = LAYOUT
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Migration:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            kwargs["counters"] = {str(k): int(v) for k, v in dict(data.get("counters") or {}).items()}
            kwargs["options"] = dict(data.get("options") or {})
            kwargs["kind"] = str(data.get("kind") or "reembed")
            refusal = data.get("last_refusal")
            kwargs["last_refusal"] = Event.from_dict(refusal) if refusal else None
            ver = data.get("verification")
            kwargs["verification"] = Verification.from_dict(ver) if ver else None
            kwargs["history"] = tuple(Event.from_dict(e) for e in data.get("history") or ())
            kwargs["verify_runs"] = tuple(str(r) for r in data.get("verify_runs") or ())
            kwargs["throttle"] = migrate_throttle(data.get("throttle"), int(data.get("layout") or 1),
                                                  [e.action for e in kwargs["history"]])
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed migration record: {exc}") from exc

    @classmethod
    def from_envelope(cls, env: Envelope) -> Migration:
        return dataclasses.replace(cls.from_dict(env.data), rev=env.rev)

    def stored(self) -> dict[str, Any]:
        """What goes into the envelope's ``data`` (without ``rev``, which the envelope owns)."""
        out = self.to_dict()
        out.pop("rev")
        return out

    def with_event(self, event: Event) -> Migration:
        """This record with ``event`` appended to a bounded history."""
        history = (*self.history, event)[-self.HISTORY_LIMIT:]
        return dataclasses.replace(self, history=history)

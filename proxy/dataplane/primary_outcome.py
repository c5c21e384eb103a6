"""What a primary's answer means for the mirror: level the secondary, or leave it alone (pure).

A mirrored write goes to the primary first; its answer decides what the secondary needs:

=================================  ===========  =================================================
primary answered                   level        why
=================================  ===========  =================================================
2xx                                ``MIRROR``   the write applied
401 / 403                          ``NOTHING``  the caller was refused before any data was read
400 / 422, one operation           ``NOTHING``  the request was refused as invalid, not applied
400 / 422, a batch                 ``REREAD``   a batch applies its operations in order: the ones
                                                before the invalid one have applied
404, payload / vector edits,       ``REREAD``   Qdrant applies them to every id it finds, then
a batch                                         answers 404 for the first missing id
                                                (``segments_updater.rs: check_unprocessed_points``)
404, upsert / delete               ``NOTHING``  only a missing collection answers 404 there
other 4xx (405, 409, 413, 429)     ``NOTHING``  refused before it was applied
408, 5xx, no answer (exception,    ``RECORD``   the write may have applied in part, or may still
timeout, cancelled), unknown code               apply after we look: the ids go to the repair log
=================================  ===========  =================================================

``REREAD`` levels the touched ids with whatever the primary holds now (a failure of that goes
to the repair log like any mirror failure). ``NOTHING`` writes no mirror, no re-read and no
repair record, which is what keeps a flood of refused writes (e.g. keyless upserts against a
keyed upstream) out of the repair log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

#: Write kinds Qdrant applies to the ids it found before answering 404 for a missing one.
PARTIAL_ON_MISSING = frozenset({"set_payload", "overwrite_payload", "delete_payload", "clear_payload",
                                "update_vectors", "delete_vectors"})
BATCH = "batch"

#: gRPC status code -> the REST status Qdrant answers for the same condition.
GRPC_AS_HTTP = {
    "OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "UNIMPLEMENTED": 405,
    "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNKNOWN": 500,
    "DATA_LOSS": 500, "ABORTED": 500, "UNAVAILABLE": 503,
    # DEADLINE_EXCEEDED, CANCELLED: the upstream may still apply the write -> no status (RECORD)
}


class Level(Enum):
    MIRROR = "mirror"    # applied: level the secondary as usual
    REREAD = "reread"    # may have applied in part: level the touched ids by re-reading the primary
    RECORD = "record"    # outcome unknown: record the touched ids in the repair log
    NOTHING = "nothing"  # not applied: no mirror, no re-read, no repair record


@dataclass(frozen=True, slots=True)
class Verdict:
    level: Level
    reason: str


def status_of(reply: Any) -> int | None:
    """The HTTP status of a REST or gRPC reply (``None``: a gRPC code whose outcome is unknown)."""
    status = getattr(reply, "status", None)
    if isinstance(status, int):
        return status
    return GRPC_AS_HTTP.get(str(getattr(reply, "code", "")))


def after_primary(status: int | None, kinds: frozenset[str]) -> Verdict:
    """What the secondary needs after the primary answered ``status`` to a write of ``kinds``."""
    if status is None:
        return Verdict(Level.RECORD, "the primary gave no answer; the write may have applied")
    if 200 <= status < 300:
        return Verdict(Level.MIRROR, f"the primary applied the write ({status})")
    partial = BATCH in kinds or bool(kinds & PARTIAL_ON_MISSING)
    if status in (401, 403):
        return Verdict(Level.NOTHING, f"the primary refused the caller ({status}); nothing applied")
    if status in (400, 422):
        if BATCH in kinds:
            return Verdict(Level.REREAD, f"a batch answered {status}: its earlier operations may have applied")
        return Verdict(Level.NOTHING, f"the primary refused the request as invalid ({status}); nothing applied")
    if status == 404:
        if partial:
            return Verdict(Level.REREAD, "404 for a missing id: Qdrant applied the write to the ids it found")
        return Verdict(Level.NOTHING, "404 (missing collection): nothing applied")
    if status == 408 or status >= 500:
        return Verdict(Level.RECORD, f"the primary answered {status}; the write may have applied in part")
    if 400 <= status < 500:
        return Verdict(Level.NOTHING, f"the primary refused the write ({status}); nothing applied")
    return Verdict(Level.RECORD, f"unexpected primary status {status}; the write may have applied")

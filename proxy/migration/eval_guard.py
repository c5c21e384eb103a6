"""``switch-reads --require-eval``: cut reads over only on a fresh GO from ``migrate eval`` (pure).

``switchyard migrate eval MIGRATION [--queries FILE | --sample N]`` stores its verdict (kind
:data:`~switchyard.proxy.migration.eval_gate.KIND`, key the migration id, one record: the newest
eval replaces the one before) with the time it ran. A switch of reads asked with
``--require-eval`` (CLI), ``require_eval: true`` (the admin API's transition body), or planned
with ``migrate plan --require-eval`` (then every switch-reads of that migration requires it), is
refused unless that verdict is GO and younger than ``max_age`` seconds (the request's, else the
plan's ``eval_max_age``, else :data:`DEFAULT_MAX_AGE`). The refusal names what is missing and
what to run. :func:`settings` and :func:`refusal` are the whole decision (a table test covers
them); the service only reads the record and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_MAX_AGE = 3600.0
#: an eval stamped this far in the future (clock skew between hosts) still counts as fresh
SKEW = 300.0


def settings(options: Mapping[str, Any], require_eval: bool | None,
             max_age: float | None) -> tuple[bool, float]:
    """Whether this switch needs a fresh GO and how fresh: the request asks for it, or the plan
    did (``options["require_eval"]``); the request's max age, else the plan's, else the default."""
    required = bool(require_eval) or bool(options.get("require_eval"))
    planned = options.get("eval_max_age")
    age = max_age if max_age is not None else (float(planned) if planned is not None else DEFAULT_MAX_AGE)
    return required, float(age)


def age_text(seconds: float) -> str:
    """``42 s``, ``12 min``, ``2.0 h``, ``3.1 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def refusal(migration_id: str, record: Mapping[str, Any] | None, now: float, max_age: float) -> str | None:
    """Why reads may not switch on this eval record (``None``: a GO younger than ``max_age``)."""
    run = f"run `switchyard migrate eval {migration_id} [--queries FILE | --sample N]`"
    if record is None:
        return f"no eval verdict for migration {migration_id}: {run}"
    verdict = record.get("verdict")
    try:
        at = float(record["at"])
    except (KeyError, TypeError, ValueError):
        return f"the newest eval of migration {migration_id} has no time stamp: {run} again"
    age = now - at
    if verdict != "GO":
        why = "; ".join(str(r) for r in record.get("reasons") or ()) or "no reason recorded"
        return (f"the newest eval of migration {migration_id} ({age_text(max(age, 0.0))} ago) is "
                f"{verdict or 'unreadable'} ({why}); fix the target, then {run} again")
    if age > max_age:
        return (f"the newest eval of migration {migration_id} is GO but {age_text(age)} old (max age "
                f"{age_text(max_age)}): {run} again")
    if age < -SKEW:
        return (f"the newest eval of migration {migration_id} is stamped {age_text(-age)} in the "
                f"future (clock skew?): {run} again")
    return None

"""The facade both admin front ends call: JSON-safe dicts in, JSON-safe dicts out.

Front ends only decode the wire into these arguments, check the caller with
:func:`switchyard.proxy.admin.access.admin_verdict`, and encode the results; every decision is in the
control plane behind this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from switchyard.proxy import registry
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.service import MigrationService
from switchyard.proxy.migration.verify_jobs import VerifyJobs


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise BadRequest(f"{name} must be an integer")
    return int(value)


def _flag(value: Any, name: str, default: bool) -> bool:
    """A boolean argument: JSON ``true``/``false`` or the query-string words Qdrant accepts."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def throttle_value(points_per_second: Any, unthrottled: Any) -> float | None:
    """The throttle a request asks for (pure): ``None`` for unthrottled, else a number >= 0.

    Unthrottled must be asked for by name: a missing rate is refused, never read as 0 (paused)
    or as unthrottled, so a client built for the older meaning of 0 cannot lift a limit."""
    if _flag(unthrottled, "unthrottled", False):
        if points_per_second is not None:
            raise BadRequest("throttle takes `points_per_second` or `unthrottled`, not both")
        return None
    if isinstance(points_per_second, bool) or not isinstance(points_per_second, (int, float)):
        raise BadRequest("throttle needs a number `points_per_second` (0 pauses) or "
                         "`unthrottled: true`")
    return float(points_per_second)


def _focus(status: dict[str, Any], run_id: str) -> dict[str, Any]:
    """``status`` with ``verify`` set to run ``run_id`` (this request's), when it is listed:
    a daemon's verify pass may have started after it and be the migration's latest."""
    mine = next((v for v in status.get("verify_runs") or () if v.get("id") == run_id), None)
    return {**status, "verify": mine} if mine is not None else status


class AdminService:
    def __init__(self, migrations: MigrationService, jobs: VerifyJobs | None = None) -> None:
        self.migrations = migrations
        self.store = migrations.store
        self.jobs = jobs if jobs is not None else VerifyJobs(migrations)

    async def close(self) -> None:
        """Cancel and await running verify jobs (the proxy stops its own ``jobs`` instead)."""
        await self.jobs.stop()

    async def models(self) -> dict[str, Any]:
        return {"models": [s.to_dict() for s in await registry.list_models(self.store)]}

    async def bindings(self) -> dict[str, Any]:
        return {"bindings": [b.to_dict() for b in await registry.list_bindings(self.store)]}

    async def plan(self, body: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(body, Mapping) or not body.get("logical"):
            raise BadRequest("plan needs `logical` (and `to_model` for kind reembed)")
        if (body.get("kind") or "reembed") == "reembed" and not body.get("to_model"):
            raise BadRequest("plan needs `logical` and `to_model`")
        body = dict(body)
        if isinstance(body.get("options"), Mapping):
            body["options"] = integral(body["options"])
        try:
            req = PlanRequest.from_dict(body)
        except TypeError as exc:
            raise BadRequest(f"invalid plan request: {exc}") from exc
        return await self.migrations.plan(req)

    async def list(self) -> dict[str, Any]:
        return {"migrations": [m.to_dict() for m in await self.migrations.list()]}

    async def get(self, migration_id: str) -> dict[str, Any]:
        return await self.migrations.status(migration_id)

    async def transition(self, migration_id: str, name: str, expected_rev: Any = None,
                         require_eval: Any = None, max_age: Any = None) -> dict[str, Any]:
        """``require_eval`` / ``max_age`` (seconds): ``switch_reads`` only on a fresh GO eval."""
        if not name:
            raise BadRequest("transition needs `name`")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, (int, float))
                                    or max_age <= 0):
            raise BadRequest(f"max_age must be a number of seconds > 0, got {max_age!r}")
        await self.migrations.transition(migration_id, name, _opt_int(expected_rev, "expected_rev"),
                                         _flag(require_eval, "require_eval", False),
                                         None if max_age is None else float(max_age))
        return await self.get(migration_id)

    async def read_mode(self, migration_id: str, mode: str, expected_rev: Any = None) -> dict[str, Any]:
        await self.migrations.set_read_mode(migration_id, mode, _opt_int(expected_rev, "expected_rev"))
        return await self.get(migration_id)

    async def pause(self, migration_id: str) -> dict[str, Any]:
        await self.migrations.pause(migration_id)
        return await self.get(migration_id)

    async def resume(self, migration_id: str) -> dict[str, Any]:
        await self.migrations.resume(migration_id)
        return await self.get(migration_id)

    async def throttle(self, migration_id: str, points_per_second: Any,
                       unthrottled: Any = False) -> dict[str, Any]:
        """``points_per_second`` (0 pauses), or ``unthrottled`` true to lift the limit."""
        await self.migrations.throttle(migration_id, throttle_value(points_per_second, unthrottled))
        return await self.get(migration_id)

    async def verify(self, migration_id: str, repair: Any = False, wait: Any = True) -> dict[str, Any]:
        """Start (or join) the migration's verify job; with ``wait`` await its outcome.

        ``status`` in the result is Qdrant's word for it: ``completed`` after waiting (a refusal
        raises as before, with counts and sample ids), ``acknowledged`` when the job was
        started or joined without waiting; ``verify`` then shows it running (``joined`` says
        whether it was already running)."""
        job, joined = await self.jobs.start(migration_id, _flag(repair, "repair", False))
        if _flag(wait, "wait", True):
            await self.jobs.outcome(job)
            return {**_focus(await self.get(migration_id), job.run_id), "status": "completed"}
        status = _focus(await self.get(migration_id), job.run_id)
        if status.get("verify") is not None:
            status["verify"]["joined"] = joined
        return {**status, "status": "acknowledged"}

    async def cleanup(self, migration_id: str, yes: bool) -> dict[str, Any]:
        await self.migrations.cleanup(migration_id, bool(yes))
        return await self.get(migration_id)

    def watch(self, migration_id: str, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        return self.migrations.watch(migration_id, max(0.1, float(interval or 1.0)))


def integral(value: Any) -> Any:
    """``value`` with whole-number floats as ints (pure): gRPC's ``Struct`` carries every number
    as a double, and Qdrant's settings (sizes, ``m``, ...) are integers."""
    if isinstance(value, Mapping):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value

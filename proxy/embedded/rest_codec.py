"""The embedded upstream's REST plumbing: route records, body parsing and Qdrant's envelopes.

Bodies parse into qdrant-client's REST models (pydantic, ``extra="forbid"`` like Qdrant's serde
``deny_unknown_fields``), so a body Qdrant would reject is rejected here with a 400 in Qdrant's
words (``Json deserialize error: unknown field `x```). Results serialise with orjson from the
models' JSON dict form, omitting ``None`` fields as Qdrant's ``skip_serializing_if`` does, except
the few fields Qdrant always writes (:data:`KEEP_NULL`).

Nothing here imports aiohttp: handlers get a :class:`Ctx` and return a result object; the app
module (``rest_app``) does the HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client.http import models

from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.embedded.request_checks import check_point_id
from switchyard.proxy.errors import BadRequest, Unsupported


#: Bodies larger than this are parsed off the event loop.
INLINE_PARSE_LIMIT = 256 * 1024

#: (model, field) pairs Qdrant serialises even when null.
KEEP_NULL: frozenset[tuple[type[BaseModel], str]] = frozenset(
    {(models.ScrollResult, "next_page_offset"), (models.UpdateResult, "operation_id")}
)


@dataclass(slots=True)
class Ctx:
    """What a handler sees of one request: path parameters, query string, raw body."""

    engine: EngineSeam
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    operations: itertools.count[int]
    #: the front end's request object, for routes that stream their body (``Route.raw``)
    request: Any = None

    @property
    def collection(self) -> str:
        return self.params["collection_name"]

    async def parse(self, model: Any) -> Any:
        """The body as ``model`` (a pydantic class or a ``Union``); empty body means ``{}``.

        Bodies over :data:`INLINE_PARSE_LIMIT` parse on a worker thread, so a 32 MiB upsert
        does not stall every other request on the event loop.
        """
        if len(self.body) > INLINE_PARSE_LIMIT:
            return await asyncio.to_thread(parse_body, self.body, model)
        return parse_body(self.body or b"{}", model)

    @property
    def timeout(self) -> int | None:
        """The ``timeout`` query parameter in seconds (strict mode's ``max_timeout`` checks it)."""
        raw = self.query.get("timeout")
        if not raw:
            return None
        if not raw.isdigit():
            raise BadRequest("Query deserialize error: invalid digit found in string", raw=True)
        return int(raw)

    def update_result(self) -> models.UpdateResult:
        """A write's result with the next operation id; ``wait=false`` says acknowledged.

        Writes always complete before the response (stronger than Qdrant's ``wait=false``).
        """
        waited = self.query.get("wait", "false").lower() in ("true", "1", "")
        status = models.UpdateStatus.COMPLETED if waited else models.UpdateStatus.ACKNOWLEDGED
        return models.UpdateResult(operation_id=next(self.operations), status=status)


Handler = Callable[[Ctx], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One REST operation; ``path`` uses the spec's placeholder names; ``write`` needs a full key."""

    method: str
    path: str
    handler: Handler
    write: bool = False
    #: the handler reads the body itself, streaming (``ctx.request``), under its own bound
    raw: bool = False


@functools.lru_cache(maxsize=256)
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def parse_body(body: bytes, model: Any) -> Any:
    """Validate JSON ``body`` into ``model``; any failure is a :class:`BadRequest` in Qdrant's words."""
    try:
        return _adapter(model).validate_json(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation(exc), raw=True) from exc


def describe_validation(exc: ValidationError) -> str:
    """Qdrant-like text for a body error: syntax, unknown field, or the first schema mismatch."""
    errors = exc.errors()
    for err in errors:
        if err["type"] == "json_invalid":
            return f"Json deserialize error: {err['msg']}"
    # in a union every branch reports; the deepest unknown field is in the branch that fit best
    unknown = [err for err in errors if err["type"] == "extra_forbidden"]
    if unknown:
        deepest = max(unknown, key=lambda e: len(e["loc"]))
        return f"Json deserialize error: unknown field `{deepest['loc'][-1]}`"
    first = min(errors, key=lambda e: len(e["loc"])) if errors else None
    if first is None:
        return "Json deserialize error: invalid body"
    loc = ".".join(str(p) for p in first["loc"])
    where = f" at `{loc}`" if loc else ""
    return f"Json deserialize error: {first['msg']}{where}"


def to_jsonable(value: Any) -> Any:
    """A result as plain JSON data, ``None`` fields omitted except :data:`KEEP_NULL`."""
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name in type(value).model_fields:
            item = getattr(value, name)
            if item is None and (type(value), name) not in KEEP_NULL:
                continue
            out[name] = to_jsonable(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, float):
        return float(value)  # numpy scalars are float subclasses orjson would refuse
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return TypeAdapter(type(value)).dump_python(value, mode="json")


def envelope(result: Any, elapsed: float) -> bytes:
    """Qdrant's success body: ``{"result": ..., "status": "ok", "time": t}``."""
    return orjson.dumps({"result": to_jsonable(result), "status": "ok", "time": elapsed})


def selector(points: list[models.ExtendedPointId] | None, flt: models.Filter | None) -> Any:
    """The points selector of a payload/vector write that names ``points`` or a ``filter``."""
    if points is not None:
        return models.PointIdsList(points=points)
    if flt is not None:
        return models.FilterSelector(filter=flt)
    raise BadRequest("Either `points` or `filter` is required")


def no_shard_key(shard_key: Any) -> None:
    """Reject custom sharding, which the local engine does not have."""
    if shard_key is not None:
        raise Unsupported("shard keys are not supported by the embedded upstream")


def unsupported(what: str) -> Handler:
    """A handler answering 501 for an operation the local engine cannot back."""

    async def handler(ctx: Ctx) -> Any:
        raise Unsupported(f"{what} is not supported by the embedded upstream (local engine)")

    return handler


def point_id(text: str) -> models.ExtendedPointId:
    """A point id from a URL segment: unsigned integer or UUID, as Qdrant accepts."""
    if text.isdigit():
        pid = int(text)
        check_point_id(pid)
        return pid
    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise BadRequest(f"Unable to parse point id `{text}`") from exc

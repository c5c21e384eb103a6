"""The embedded upstream's storage engine: qdrant-client's local engine behind one worker thread.

``qdrant_client.local.QdrantLocal`` has no locks and is not safe to call from two threads or
two overlapping coroutines at once. :class:`Engine` serialises every call onto a single worker
thread, so the REST and gRPC front ends may call it concurrently and the event loop never blocks
on a scan. Calls take and return qdrant-client's REST models (``qdrant_client.http.models``);
the gRPC front end converts with ``GrpcToRest`` / ``RestToGrpc``.

Errors: the local engine raises ``ValueError`` (and pydantic ``ValidationError``) for
everything. :func:`translate` maps them at this seam onto :mod:`proxy.errors` with Qdrant's
own wording and status, e.g. ``Not found: Collection `x` doesn't exist!`` (404).

Durability: with a path, the local engine writes every point to SQLite before applying it and
commits per write, and replaces ``meta.json`` atomically, so a write acknowledged here survives
``kill -9`` of the process.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError
from qdrant_client.local.qdrant_local import QdrantLocal

from proxy.errors import BadRequest, Conflict, NotFound, SwitchyardError

_COLLECTION_NOT_FOUND = re.compile(r"^Collection (?P<name>.+?) not found$")
_POINT_NOT_FOUND = re.compile(r"^Point (?P<id>.+?) is not found in the collection$")
_ALREADY_EXISTS = re.compile(r"^Collection (?P<name>.+?) already exists")
_WRONG_INPUT = "Wrong input: "


def translate(exc: Exception) -> SwitchyardError:
    """Map a local-engine exception onto the error tree, in Qdrant's words."""
    if isinstance(exc, SwitchyardError):
        return exc
    if isinstance(exc, KeyError) and len(exc.args) == 1 and _is_point_id(exc.args[0]):
        # the local engine's writes to points it lacks (e.g. update_vectors) raise KeyError(id)
        return NotFound(f"No point with id {exc.args[0]} found")
    if isinstance(exc, ValidationError):
        return BadRequest(f"Validation error in JSON body: {_short_validation(exc)}")
    text = str(exc)
    if m := _COLLECTION_NOT_FOUND.match(text):
        return NotFound(f"Collection `{m['name']}` doesn't exist!")
    if m := _POINT_NOT_FOUND.match(text):
        return NotFound(f"No point with id {m['id']} found")
    if m := _ALREADY_EXISTS.match(text):
        return Conflict(f"Wrong input: Collection `{m['name']}` already exists!", raw=True)
    if text.startswith(_WRONG_INPUT):
        return BadRequest(text[len(_WRONG_INPUT):])
    return BadRequest(text)


def _is_point_id(value: object) -> bool:
    """Whether ``value`` looks like a point id (an unsigned int or a UUID string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    return False


def _short_validation(exc: ValidationError) -> str:
    """A one-line summary of a pydantic error, like Qdrant's serde messages."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


class Engine:
    """Serialised async access to one ``QdrantLocal``.

    ``path=None`` keeps everything in memory. All methods of ``QdrantLocal`` are reachable
    through :meth:`call` by name; exceptions come out translated.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._local = QdrantLocal(
            location=path if path else ":memory:", force_disable_check_same_thread=True
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchyard-engine")
        self._operations = itertools.count(1)

    def next_operation_id(self) -> int:
        """The next write's ``operation_id``: increasing per engine, shared by the front ends."""
        return next(self._operations)

    @property
    def local(self) -> QdrantLocal:
        """The engine itself, for code already running on the worker thread (see :meth:`run`)."""
        return self._local

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``QdrantLocal.<method>(*args, **kwargs)`` on the worker thread."""
        return await self.run(functools.partial(getattr(self._local, method), *args, **kwargs))

    async def run(self, fn: Any) -> Any:
        """Run ``fn()`` on the worker thread (for multi-step operations that must not interleave)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._guarded, fn))

    @staticmethod
    def _guarded(fn: Any) -> Any:
        try:
            return fn()
        except (ValueError, ValidationError, AssertionError, KeyError, TypeError) as exc:
            raise translate(exc) from exc

    def close(self) -> None:
        """Stop the worker after queued calls finish, then close storage (releases the lock file)."""
        self._executor.shutdown(wait=True)
        self._local.close()

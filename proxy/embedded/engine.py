"""The embedded upstream's storage engine: qdrant-client's local engine behind a small thread pool.

``qdrant_client.local.QdrantLocal`` has no locks: a write must never overlap anything else.
Its reads keep no caches or lazy state; the one thing a read writes is the cosine search's
re-normalisation of the (already unit) stored vectors in place, which two reads at once do to
the same values, so reads may overlap. :class:`Engine` admits calls as a readers-writer lock
in arrival order (:class:`Admission`): reads run together on the pool, a write runs alone, and
nothing overtakes an earlier write, nor a write an earlier read. (On 2 cores two brute-force
searches gain little from overlapping -- GIL-bound or memory-bound -- but lookups and
metadata reads no longer queue behind a search.) The REST and gRPC front ends may call it
concurrently and the event loop never blocks on a scan. Calls take and return qdrant-client's
REST models (``qdrant_client.http.models``);
the gRPC front end converts with ``GrpcToRest`` / ``RestToGrpc``.

Errors: the local engine raises ``ValueError`` (and pydantic ``ValidationError``) for
everything. :func:`translate` maps them at this seam onto :mod:`switchyard.proxy.errors` with Qdrant's
own wording and status, e.g. ``Not found: Collection `x` doesn't exist!`` (404).

Durability: with a path, the local engine writes every point to SQLite before applying it and
commits per write, and replaces ``meta.json`` atomically, so a write acknowledged here survives
``kill -9`` of the process.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import os
import re
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError
from qdrant_client.local.qdrant_local import QdrantLocal

from switchyard.proxy.embedded import (keyword_scan, local_layout, local_strict, request_checks,
                                       strict_enforce)
from switchyard.proxy.embedded.local_indexes import PayloadIndexes
from switchyard.proxy.errors import BadRequest, Conflict, NotFound, SwitchyardError

_COLLECTION_NOT_FOUND = re.compile(r"^Collection (?P<name>.+?) not found$")
_POINT_NOT_FOUND = re.compile(r"^Point (?P<id>.+?) is not found in the collection$")
_ALREADY_EXISTS = re.compile(r"^Collection (?P<name>.+?) already exists")
_WRONG_INPUT = "Wrong input: "

# The local engine warns on every payload index that indexes have no effect there; here exact
# keyword / integer matches do use one (keyword_scan), and the warning only confuses operators.
warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")

#: ``QdrantLocal`` methods that only read; every other method is a write and runs alone.
READ_METHODS = frozenset({
    "collection_exists", "count", "facet", "get_aliases", "get_collection",
    "get_collection_aliases", "get_collections", "info", "query_batch_points", "query_points",
    "query_points_groups", "retrieve", "scroll", "search_matrix_offsets", "search_matrix_pairs",
})


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
    if dimension := request_checks.dimension_message(text):
        return BadRequest(dimension)
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


class Admission:
    """A readers-writer lock for one event loop that admits in arrival order.

    A read is admitted while no write runs or waits ahead of it; a write once everything
    admitted before it has finished. So reads overlap each other, and the order between a
    write and anything else is the order of arrival (FIFO, no starvation either way).
    """

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[bool, asyncio.Future[None]]] = collections.deque()
        self._readers = 0
        self._writing = False

    async def acquire(self, write: bool) -> None:
        if not self._queue and self._free(write):
            self._take(write)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((write, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(write)  # admitted just as we were cancelled: give it back
            else:
                self._wake()  # our place in the queue no longer holds anyone back
            raise

    def release(self, write: bool) -> None:
        if write:
            self._writing = False
        else:
            self._readers -= 1
        self._wake()

    def _free(self, write: bool) -> bool:
        return not self._writing and (not write or self._readers == 0)

    def _take(self, write: bool) -> None:
        if write:
            self._writing = True
        else:
            self._readers += 1

    def _wake(self) -> None:
        while self._queue:
            write, fut = self._queue[0]
            if fut.cancelled():
                self._queue.popleft()
                continue
            if not self._free(write):
                return
            self._queue.popleft()
            self._take(write)
            fut.set_result(None)


class Engine:
    """Async access to one ``QdrantLocal``: concurrent reads, exclusive writes, in order.

    ``path=None`` keeps everything in memory. All methods of ``QdrantLocal`` are reachable
    through :meth:`call` by name (reads are :data:`READ_METHODS`); exceptions come out
    translated. ``readers``: threads for concurrent reads (default: the machine's cores, at
    most 4).
    """

    name = "local"
    #: every seam method is answered (matrices, groups and ids as queries included)
    unsupported: frozenset[str] = frozenset()

    def __init__(self, path: str | None = None, readers: int | None = None) -> None:
        self.path = path
        self._local = QdrantLocal(
            location=path if path else ":memory:", force_disable_check_same_thread=True
        )
        workers = readers or max(1, min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="switchyard-engine")
        self._admission = Admission()
        self._keywords = keyword_scan.KeywordIndex()
        self.indexes = PayloadIndexes(path)
        self._operations = itertools.count(1)
        #: strict mode, with its rate-limit buckets per collection (:mod:`local_strict`)
        self.strict = strict_enforce.Enforcer()

    def next_operation_id(self) -> int:
        """The next write's ``operation_id``: increasing per engine, shared by the front ends."""
        return next(self._operations)

    @property
    def local(self) -> QdrantLocal:
        """The engine itself, for code already running on the worker thread (see :meth:`run`)."""
        return self._local

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``QdrantLocal.<method>(*args, **kwargs)`` on a worker thread (after Qdrant's own
        request checks, :mod:`request_checks`)."""
        timeout = kwargs.pop("timeout", None)  # the request's, for strict mode's max_timeout
        request_checks.check_call(method, args, kwargs)
        await local_strict.check(self, method, args, kwargs, timeout)
        if method == "delete_collection":
            self.strict.forget(self._local.aliases.get(args[0], args[0]) if args
                               else kwargs.get("collection_name", ""))
        if method == "query_batch":  # one engine turn, as Qdrant answers a batch from one snapshot
            name, batch = args
            local = self._local
            return await self.run(lambda: [local.query_points(name, **kw) for kw in batch], read=True)
        if method == "scroll":  # exact-match lookups answered as from a payload index
            fn = functools.partial(keyword_scan.scroll, self._local, self._keywords, *args, **kwargs)
        elif method in local_layout.METHODS:  # tuning, payload indexes, facets as Qdrant has them
            fn = functools.partial(local_layout.call, self._local, self.indexes, method, *args, **kwargs)
        else:
            fn = functools.partial(getattr(self._local, method), *args, **kwargs)
        return await self.run(fn, read=method in READ_METHODS)

    async def run(self, fn: Any, *, read: bool = False) -> Any:
        """Run ``fn()`` on a worker thread, alone unless ``read`` (for multi-step operations that
        must not interleave with writes; ``read=True`` only if ``fn`` never writes).

        The lock is released when the thread finishes ``fn``, not when the caller stops
        waiting: a cancelled caller never lets a write overlap a call still running.
        """
        write = not read
        await self._admission.acquire(write)
        loop = asyncio.get_running_loop()
        try:
            job = self._executor.submit(self._guarded, fn, write)
        except BaseException:
            self._admission.release(write)
            raise
        job.add_done_callback(functools.partial(self._finished, loop, write))
        return await asyncio.wrap_future(job, loop=loop)

    def _finished(self, loop: asyncio.AbstractEventLoop, write: bool, _job: Future[Any]) -> None:
        try:
            loop.call_soon_threadsafe(self._admission.release, write)
        except RuntimeError:  # the loop is closed: nobody is left to admit
            pass

    def _guarded(self, fn: Any, write: bool) -> Any:
        try:
            return fn()
        except (ValueError, ValidationError, AssertionError, KeyError, TypeError) as exc:
            raise translate(exc) from exc
        finally:
            if write:  # still alone: no read can see an index older than this write
                self._keywords.invalidate()
                self.indexes.invalidate()

    def close(self) -> None:
        """Stop the worker after queued calls finish, then close storage (releases the lock file)."""
        self._executor.shutdown(wait=True)
        self._local.close()

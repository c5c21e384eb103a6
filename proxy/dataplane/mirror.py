"""Mirrored writes: bring the secondary collection to the primary's state for what a write touched.

One path for every write kind and both protocols (the executor decodes a ``WriteIntent`` and
hands the primary call to :meth:`Mirror.write`):

1. ``prepare`` (before the primary write): resolve the intent's filters to ids on the primary
   (bounded; a larger filter is mirrored as a repair-log filter), and for an unconditional
   upsert start embedding its texts with the secondary's model, so the embedding overlaps the
   primary write;
2. the write-ahead intent (``intents.py``): the ids and unresolved filters go to the proxy's
   local intent log, durable, before the primary sees the write, so a proxy killed at any
   later instant leaves a repair record (its next start converts pending intents);
3. the primary write; the client always gets its reply. Its status decides what the secondary
   needs (``primary_outcome.after_primary``, a table): nothing for a refusal (no mirror, no
   re-read, no repair record), a re-read for a write that may have applied in part, the
   repair log for an unknown outcome (5xx, no answer);
4. ``finish`` (after a primary that applied): the secondary gets, for each touched id, the
   primary's point as it now is (the request's own points for an unconditional upsert; a
   re-read otherwise, which is what makes conditional upserts, payload edits and deletes exact)
   with the secondary model's vector (embedded from the text field, or copied in copy-vectors
   migrations, or kept when the text did not change), its own model's metadata, and, on the
   target, the digest of the source content; ids gone from the primary are deleted. A point
   without text goes to the repair log; with a usable query adapter the target also gets the
   adapter's image of its A vector, flagged ``embedding_approximate`` (``adapter_points.py``).
   The points are built, and the upstream called, by ``secondary_points.py`` (this module's
   ``Mirror`` extends it); this module decides when, and what becomes of a failure;
5. the intent is cleared once the secondary is level or the difference is in the repair log.

Steps 1-4 of writes touching the same points run one after the other in this proxy (a filter
write, or one not understood, runs alone in its migration): ``write_order.py``.

Everything after the primary's answer is total: any exception becomes a repair record (logged
with its reason), never an error for the client. Cancellation is kept as cancellation: the
intent is handed to :meth:`Mirror.sweep` (run periodically) which records it, so not even a
cancelled handler leaves a silent difference. All legs carry the client's own credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from prometheus_client import Counter, Gauge, Histogram

from switchyard.proxy.dataplane import adapter_points
from switchyard.proxy.dataplane.adapter_store import AdapterCache
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.intents import IntentLog
from switchyard.proxy.dataplane.primary_outcome import Level, Verdict, after_primary, status_of
from switchyard.proxy.dataplane.repair_spool import RepairLog
from switchyard.proxy.dataplane.secondary_leg import GrpcLeg
from switchyard.proxy.dataplane.secondary_points import SecondaryPoints, _as_new
from switchyard.proxy.dataplane.write_order import WriteOrder
from switchyard.proxy.dataplane.writes import WriteIntent, point_key
from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.intercept.routes import rest_path
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.wire import GrpcForward, Headers, RestCall, RestForward

log = logging.getLogger("switchyard.mirror")

MAX_FILTER_IDS = 10_000
_CREDENTIALS = ("api-key", "authorization")
#: The filter of a write the mirror does not understand: the whole collection needs a verify.
EVERYTHING: dict[str, Any] = {}

MIRRORED = Counter("switchyard_mirrored_writes_total", "Mirrored writes by outcome.", ["migration", "outcome"])
MIRROR_SECONDS = Histogram("switchyard_mirror_seconds", "Time spent on the secondary leg of a write.")
MIRROR_QUEUE = Gauge("switchyard_mirror_queue", "Writes waiting for their async mirror.")

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    """Where and how to mirror: decided from the route and the migration (pure data)."""

    migration: Migration
    primary: str
    secondary: str
    spec: ModelSpec  # the secondary's model
    to_target: bool  # the secondary is the migration's target (it records source digests)

    @property
    def copy(self) -> bool:
        return bool(self.migration.copy_vectors)


@dataclass(slots=True)
class Prepared:
    target: MirrorTarget
    intent: WriteIntent
    headers: Headers
    ids: list[Any] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    embedding: asyncio.Task[np.ndarray] | None = None
    embedded_texts: list[str] = field(default_factory=list)
    reread: bool = False  # bring the secondary level by re-reading the primary, whatever the write
    ticket: int | None = None  # the write-ahead intent, cleared once the secondary is level
    understood: bool = True  # False: the mirror cannot tell what the write touched
    approximated: list[Any] = field(default_factory=list)  # ids given an adapter image (no text)
    _unique_ids: list[Any] | None = field(default=None, init=False, repr=False)

    def unique_ids(self) -> list[Any]:
        """``ids`` without repeats (by canonical key), in first-seen order; computed once, as
        ``ids`` is final once ``prepare`` returns (the intent, the records and the secondary
        leg all need it: a key per id per use cost ~4 us per point of a mirrored upsert)."""
        if self._unique_ids is None:
            self._unique_ids = _unique(self.ids)
        return self._unique_ids


class Mirror(SecondaryPoints):
    """Mirrors writes; in ``async`` migrations through a bounded queue drained by one owned worker.
    The secondary's points are built, and the upstream called, by the methods it inherits
    from ``SecondaryPoints`` (``secondary_points.py``)."""

    def __init__(self, pool: EmbedderPool, repair: RepairLog, forward: RestForward,
                 queue_size: int = 1024, intents: IntentLog | None = None,
                 adapters: AdapterCache | None = None, grpc_forward: GrpcForward | None = None) -> None:
        self.pool = pool
        #: the upstream's gRPC, for secondaries of gRPC clients' upserts (``secondary_grpc``);
        #: ``None``: every secondary goes over REST
        self._grpc = GrpcLeg(grpc_forward) if grpc_forward is not None else None
        self.repair = repair
        #: query adapters for upserts without text (default: a cache over the repair log's store)
        self.adapters = adapters if adapters is not None else AdapterCache(repair.store)
        self.intents = intents
        self._forward = forward
        self._queue: asyncio.Queue[Prepared] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._orphans: list[tuple[Prepared, str]] = []
        self.order = WriteOrder()

    # -- the whole write

    async def write(self, target: MirrorTarget, intent: WriteIntent | None, client_headers: Headers,
                    send: Callable[[], Awaitable[R]]) -> R:
        """Run ``send`` (the primary write) between the intent and the mirror; the primary's
        reply is returned whatever happens to the secondary (module docstring). Writes to the
        same points are held in order from before the primary until the secondary leg
        (``write_order.py``)."""
        exclusive = intent is None or bool(intent.filters)
        async with self.order.hold(target.migration.id, () if intent is None else intent.ids, exclusive):
            return await self._write(target, intent, client_headers, send)

    async def _write(self, target: MirrorTarget, intent: WriteIntent | None, client_headers: Headers,
                     send: Callable[[], Awaitable[R]]) -> R:
        prep = await self.prepare(target, intent, client_headers)
        await self._begin(prep)  # raises before the primary when the intent cannot be written
        try:
            reply = await send()
        except asyncio.CancelledError:
            self._orphan(prep, "the proxy stopped waiting for the primary write (cancelled)")
            raise
        except BaseException as exc:
            self.abandon(prep)
            await self._record(prep, prep.unique_ids(), prep.unresolved,
                               f"the primary write raised {type(exc).__name__}: {exc}; it may have applied")
            raise
        try:
            await self.settle(prep, after_primary(status_of(reply), prep.intent.kinds))
        except asyncio.CancelledError:
            self._orphan(prep, "the mirror was cancelled after the primary answered")
            raise
        return reply

    async def settle(self, prep: Prepared, verdict: Verdict) -> None:
        """Act on the primary's answer (never raises but for cancellation)."""
        mid = prep.target.migration.id
        if verdict.level is Level.NOTHING:
            self.abandon(prep)
            MIRRORED.labels(mid, "not_applied").inc()
            self._clear(prep)
        elif verdict.level is Level.RECORD or not prep.understood:
            self.abandon(prep)
            why = verdict.reason if prep.understood else "write not understood by the mirror; full verification needed"
            await self._record(prep, prep.unique_ids(), prep.unresolved, why)
        else:
            prep.reread = prep.reread or verdict.level is Level.REREAD
            if prep.target.migration.mirror == "async":
                await self.submit(prep)
            else:
                await self.finish(prep)

    async def _begin(self, prep: Prepared) -> None:
        if self.intents is None or (not prep.ids and not prep.unresolved):
            return
        prep.ticket = await self.intents.begin(prep.target.migration.id, prep.unique_ids(), prep.unresolved)

    def _clear(self, prep: Prepared) -> None:
        if self.intents is not None and prep.ticket is not None:
            self.intents.clear(prep.ticket)
            prep.ticket = None

    async def _record(self, prep: Prepared, ids: Sequence[Any], filters: Sequence[dict[str, Any]],
                      reason: str, clear: bool = True) -> bool:
        """Put ids / filters in the repair log (durably); clear the intent once they are, when
        ``clear``. False when even the local spool failed: the intent then stays pending."""
        try:
            await self.repair.record(prep.target.migration.id, ids, filters, reason)
        except Exception as exc:  # noqa: BLE001 - the intent stays; the sweep tries again
            log.critical("migration %s: repair record not written (%s); the write-ahead intent stays "
                         "pending and the periodic sweep retries: %s", prep.target.migration.id, exc, reason)
            self._orphans.append((prep, reason))
            return False
        if clear:
            self._clear(prep)
        return True

    def _orphan(self, prep: Prepared, reason: str) -> None:
        """Cancelled mid-write: no awaiting now; :meth:`sweep` records the intent soon."""
        self.abandon(prep)
        if prep.ids or prep.unresolved:
            self._orphans.append((prep, reason))

    async def sweep(self) -> int:
        """Record the writes whose handler was cancelled (the proxy runs this periodically)."""
        found, self._orphans = self._orphans, []
        for prep, reason in found:
            await self._record(prep, prep.unique_ids(), prep.unresolved, reason)
        return len(found)

    # -- async mode

    async def submit(self, prep: Prepared) -> None:
        """Queue ``finish`` for later (``--mirror async``); a full queue goes to the repair log."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain(), name="mirror-async")
        try:
            self._queue.put_nowait(prep)
            MIRROR_QUEUE.set(self._queue.qsize())
        except asyncio.QueueFull:
            self.abandon(prep)
            await self._record(prep, prep.unique_ids(), prep.unresolved,
                               f"async mirror queue full ({self._queue.maxsize} writes waiting)")

    async def _drain(self) -> None:
        while True:
            prep = await self._queue.get()
            MIRROR_QUEUE.set(self._queue.qsize())
            await self.finish(prep)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Finish queued writes (bounded), then record whatever is left in the repair log."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await stop_task(self._worker)
        while not self._queue.empty():
            prep = self._queue.get_nowait()
            self.abandon(prep)
            await self._record(prep, prep.unique_ids(), prep.unresolved,
                               "proxy stopped before the async mirror ran")
        await self.sweep()

    # -- the legs

    async def prepare(self, target: MirrorTarget, intent: WriteIntent | None, client_headers: Headers) -> Prepared:
        headers = tuple((k, v) for k, v in client_headers if k in _CREDENTIALS)
        if intent is None:
            return Prepared(target, WriteIntent(), headers, unresolved=[EVERYTHING], understood=False)
        prep = Prepared(target, intent, headers, ids=list(intent.ids))
        for flt in intent.filters:
            try:
                found = await self._ids_matching(target.primary, flt, headers)
            except SwitchyardError:
                found = None
            if found is None:
                prep.unresolved.append(flt)
            else:
                prep.ids.extend(found)
        texts = [p.text for p in intent.upserts if p.text is not None]
        if intent.fast and not target.copy and texts and target.migration.kind != "split":
            prep.embedded_texts = texts
            prep.embedding = asyncio.get_running_loop().create_task(
                self.pool.embed(target.spec, texts), name="mirror-embed")
        return prep

    def abandon(self, prep: Prepared) -> None:
        """Nothing (more) to mirror: stop the embedding started for it."""
        if prep.embedding is not None:
            prep.embedding.cancel()

    async def finish(self, prep: Prepared) -> bool:
        """Apply the mirror; on any failure record the repair log. True when fully mirrored.
        Total: every exception becomes a repair record (cancellation: see :meth:`sweep`)."""
        mid = prep.target.migration.id
        with MIRROR_SECONDS.time():
            try:
                missing_text = await self._sync(prep)
            except asyncio.CancelledError:
                self._orphan(prep, "the mirror was cancelled before the secondary was level")
                raise
            except Exception as exc:  # noqa: BLE001 - after a primary that applied: record, never fail
                log.warning("migration %s: mirrored write failed (%s: %s); recording %d id(s) for repair",
                            mid, type(exc).__name__, exc, len(prep.ids))
                await self._record(prep, prep.unique_ids(), prep.unresolved,
                                   f"mirrored write failed: {type(exc).__name__}: {exc}")
                MIRRORED.labels(mid, "failed").inc()
                return False
            finally:
                if prep.embedding is not None and not prep.embedding.done():
                    prep.embedding.cancel()
        recorded = True
        if prep.approximated:
            recorded = await self._record(prep, prep.approximated, [], adapter_points.REASON, clear=False)
        if missing_text:
            recorded = await self._record(prep, missing_text, [], f"no text in field "
                                          f"`{prep.target.migration.text_field}` to embed with "
                                          f"`{prep.target.spec.id}`", clear=False) and recorded
        if prep.unresolved:
            recorded = await self._record(prep, [], prep.unresolved, f"filter matched more than "
                                          f"{MAX_FILTER_IDS} points; left to the backfill", clear=False) and recorded
        if recorded:
            self._clear(prep)
        level = not missing_text and not prep.unresolved and not prep.approximated
        outcome = "ok" if level else "approximate" if not missing_text and not prep.unresolved else "partial"
        MIRRORED.labels(mid, outcome).inc()
        return level

    async def _sync(self, prep: Prepared) -> list[Any]:
        """Write the secondary; returns ids that could not be embedded (no text)."""
        t = prep.target
        ids = prep.unique_ids()
        if not ids:
            return []
        if t.migration.kind == "split":  # one source, a target per split key: levelled there
            from switchyard.proxy.dataplane import split_mirror

            return await split_mirror.sync(self, prep)
        # the request's own points are the primary's state only for an unconditional upsert
        # that succeeded; copy-vectors migrations re-read too, because Qdrant may store a vector
        # other than the one sent (Cosine normalises), and the digest is over the stored one
        if prep.intent.fast and not prep.reread and not t.copy:
            current = {point_key(p.id): p for p in prep.intent.upserts}  # last write of an id wins
        else:
            current = {point_key(p["id"]): _as_new(p, t) for p in await self._retrieve(t.primary, ids, prep.headers, t.copy)}
        # ``current`` holds only ids of ``ids``: as many keys means none is gone
        gone = [] if len(current) == len(ids) else [pid for pid in ids if point_key(pid) not in current]
        points: list[dict[str, Any]] = []
        missing: list[Any] = []
        if not await self._sent_over_grpc(prep, list(current.values())):
            points, missing = await self._secondary_points(prep, list(current.values()))
        if points:
            await self._call(RestCall("PUT", rest_path(t.secondary, "/points"), "wait=true", prep.headers,
                                      orjson.dumps({"points": points}, option=orjson.OPT_SERIALIZE_NUMPY)))
        if gone:
            await self._call(RestCall("POST", rest_path(t.secondary, "/points/delete"), "wait=true",
                                      prep.headers, orjson.dumps({"points": gone})))
        return missing

    async def _ids_matching(self, collection: str, flt: dict[str, Any], headers: Headers) -> list[Any] | None:
        body = orjson.dumps({"filter": flt, "limit": MAX_FILTER_IDS + 1, "with_payload": False, "with_vector": False})
        reply = await self._call(RestCall("POST", rest_path(collection, "/points/scroll"), "", headers, body))
        points = orjson.loads(reply)["result"]["points"]
        return None if len(points) > MAX_FILTER_IDS else [p["id"] for p in points]


def _unique(ids: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for pid in ids:
        key = point_key(pid)
        if key not in seen:
            seen.add(key)
            out.append(pid)
    return out

"""Mirrored writes: bring the secondary collection to the primary's state for what a write touched.

One path for every write kind and both protocols (the executor decodes a ``WriteIntent``):

1. ``prepare`` (before the primary write): resolve the intent's filters to ids on the primary
   (bounded; a larger filter is mirrored as a repair-log filter), and for an unconditional
   upsert start embedding its texts with the secondary's model, so the embedding overlaps the
   primary write;
2. the executor forwards the primary write; the client gets its reply;
3. ``finish`` (only after the primary succeeded): the secondary gets, for each touched id, the
   primary's point as it now is (the request's own points for an unconditional upsert; a
   re-read otherwise, which is what makes conditional upserts, payload edits and deletes exact)
   with the secondary model's vector (embedded from the text field, or copied in copy-vectors
   migrations, or kept when the text did not change), its own model's metadata, and, on the
   target, the digest of the source content; ids gone from the primary are deleted.

``finish`` never raises: any failure puts the ids (or filters) into the repair log.
All legs carry the client's own credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter, Gauge, Histogram

from proxy.dataplane.digest import DIGEST_FIELD, source_digest, vector_repr
from proxy.dataplane.embedder_pool import EmbedderPool
from proxy.dataplane.repair_spool import RepairLog
from proxy.dataplane.writes import NewPoint, WriteIntent, strip_meta
from proxy.errors import SwitchyardError, UpstreamError
from proxy.intercept.planner import metadata_for
from proxy.intercept.routes import rest_path
from proxy.migration.record import Migration
from proxy.modelspec import ModelSpec
from proxy.owned_tasks import stop_task
from proxy.wire import Headers, RestCall, RestForward

log = logging.getLogger("switchyard.mirror")

MAX_FILTER_IDS = 10_000
_CREDENTIALS = ("api-key", "authorization")

MIRRORED = Counter("switchyard_mirrored_writes_total", "Mirrored writes by outcome.", ["migration", "outcome"])
MIRROR_SECONDS = Histogram("switchyard_mirror_seconds", "Time spent on the secondary leg of a write.")
MIRROR_QUEUE = Gauge("switchyard_mirror_queue", "Writes waiting for their async mirror.")


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


class Mirror:
    """Mirrors writes; in ``async`` migrations through a bounded queue drained by one owned worker."""

    def __init__(self, pool: EmbedderPool, repair: RepairLog, forward: RestForward,
                 queue_size: int = 1024) -> None:
        self.pool = pool
        self.repair = repair
        self._forward = forward
        self._queue: asyncio.Queue[Prepared] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, prep: Prepared) -> None:
        """Queue ``finish`` for later (``--mirror async``); a full queue goes to the repair log."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain(), name="mirror-async")
        try:
            self._queue.put_nowait(prep)
            MIRROR_QUEUE.set(self._queue.qsize())
        except asyncio.QueueFull:
            self.abandon(prep)
            await self.repair.record(prep.target.migration.id, _unique(prep.ids), prep.unresolved,
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
            await self.repair.record(prep.target.migration.id, _unique(prep.ids), prep.unresolved,
                                     "proxy stopped before the async mirror ran")

    async def prepare(self, target: MirrorTarget, intent: WriteIntent, client_headers: Headers) -> Prepared:
        headers = tuple((k, v) for k, v in client_headers if k in _CREDENTIALS)
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
        if intent.fast and not target.copy and texts:
            prep.embedded_texts = texts
            prep.embedding = asyncio.get_running_loop().create_task(
                self.pool.embed(target.spec, texts), name="mirror-embed")
        return prep

    def abandon(self, prep: Prepared) -> None:
        """The primary write failed: nothing to mirror."""
        if prep.embedding is not None:
            prep.embedding.cancel()

    async def finish(self, prep: Prepared) -> bool:
        """Apply the mirror; on any failure record the repair log. True when fully mirrored."""
        mid = prep.target.migration.id
        with MIRROR_SECONDS.time():
            try:
                missing_text = await self._sync(prep)
            except (SwitchyardError, OSError, asyncio.TimeoutError, ValueError) as exc:
                await self.repair.record(mid, _unique(prep.ids), prep.unresolved, f"mirrored write failed: {exc}")
                MIRRORED.labels(mid, "failed").inc()
                return False
            finally:
                if prep.embedding is not None and not prep.embedding.done():
                    prep.embedding.cancel()
        if missing_text:
            await self.repair.record(mid, missing_text, [], f"no text in field "
                                     f"`{prep.target.migration.text_field}` to embed with `{prep.target.spec.id}`")
        if prep.unresolved:
            await self.repair.record(mid, [], prep.unresolved,
                                     f"filter matched more than {MAX_FILTER_IDS} points; left to the backfill")
        ok = not missing_text and not prep.unresolved
        MIRRORED.labels(mid, "ok" if ok else "partial").inc()
        return ok

    async def _sync(self, prep: Prepared) -> list[Any]:
        """Write the secondary; returns ids that could not be embedded (no text)."""
        t = prep.target
        ids = _unique(prep.ids)
        if not ids:
            return []
        # the request's own points are the primary's state only for an unconditional upsert
        # that succeeded; copy-vectors migrations re-read too, because Qdrant may store a vector
        # other than the one sent (Cosine normalises), and the digest is over the stored one
        if prep.intent.fast and not prep.reread and not t.copy:
            current = {_key(p.id): p for p in prep.intent.upserts}  # last write of an id wins
        else:
            current = {_key(p["id"]): _as_new(p, t) for p in await self._retrieve(t.primary, ids, prep.headers, t.copy)}
        gone = [pid for pid in ids if _key(pid) not in current]
        points, missing = await self._secondary_points(prep, list(current.values()))
        if points:
            await self._call(RestCall("PUT", rest_path(t.secondary, "/points"), "wait=true", prep.headers,
                                      orjson.dumps({"points": points})))
        if gone:
            await self._call(RestCall("POST", rest_path(t.secondary, "/points/delete"), "wait=true",
                                      prep.headers, orjson.dumps({"points": gone})))
        return missing

    async def _secondary_points(self, prep: Prepared, points: list[NewPoint]) -> tuple[list[dict[str, Any]], list[Any]]:
        t = prep.target
        if t.copy:
            return [self._point(t, p, p.vector) for p in points if p.vector is not None], \
                   [p.id for p in points if p.vector is None]
        with_text = [p for p in points if p.text is not None]
        missing = [p.id for p in points if p.text is None]
        vectors = await self._vectors(prep, with_text)
        return [self._point(t, p, _place(vec, t.migration.vector)) for p, vec in zip(with_text, vectors)], missing

    async def _vectors(self, prep: Prepared, points: list[NewPoint]) -> list[list[float]]:
        if not points:
            return []
        texts = [p.text or "" for p in points]
        if prep.embedding is not None and texts == prep.embedded_texts:
            matrix = await prep.embedding
        else:
            matrix = await self.pool.embed(prep.target.spec, texts)
        return np.asarray(matrix, dtype=np.float32).tolist()

    @staticmethod
    def _point(t: MirrorTarget, p: NewPoint, vector: Any) -> dict[str, Any]:
        payload = {**strip_meta(p.payload), **metadata_for(t.spec)}
        payload.pop(DIGEST_FIELD, None)
        if t.to_target:
            payload[DIGEST_FIELD] = source_digest(p.payload, vector_repr(p.vector) if t.copy else None)
        return {"id": p.id, "vector": vector, "payload": payload}

    async def _retrieve(self, collection: str, ids: Sequence[Any], headers: Headers, vectors: bool) -> list[dict[str, Any]]:
        body = orjson.dumps({"ids": list(ids), "with_payload": True, "with_vector": vectors})
        reply = await self._call(RestCall("POST", rest_path(collection, "/points"), "", headers, body))
        return list(orjson.loads(reply)["result"])

    async def _ids_matching(self, collection: str, flt: dict[str, Any], headers: Headers) -> list[Any] | None:
        body = orjson.dumps({"filter": flt, "limit": MAX_FILTER_IDS + 1, "with_payload": False, "with_vector": False})
        reply = await self._call(RestCall("POST", rest_path(collection, "/points/scroll"), "", headers, body))
        points = orjson.loads(reply)["result"]["points"]
        return None if len(points) > MAX_FILTER_IDS else [p["id"] for p in points]

    async def _call(self, call: RestCall) -> bytes:
        headers = (*call.headers, ("content-type", "application/json"))
        reply = await self._forward(RestCall(call.method, call.path, call.query, headers, call.body))
        if not reply.ok:
            raise UpstreamError(f"{call.method} {call.path} answered {reply.status}: {reply.body[:200]!r}")
        return reply.body


def _as_new(point: dict[str, Any], t: MirrorTarget) -> NewPoint:
    payload = point.get("payload") or {}
    text = payload.get(t.migration.text_field)
    return NewPoint(point["id"], payload, text if isinstance(text, str) else None, point.get("vector"))


def _place(vector: list[float], name: str) -> Any:
    return {name: vector} if name else vector


def _key(point_id: Any) -> str:
    return str(point_id).lower()


def _unique(ids: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for pid in ids:
        if _key(pid) not in seen:
            seen.add(_key(pid))
            out.append(pid)
    return out

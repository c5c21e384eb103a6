"""Copying one batch, and the bounded scroll -> text/embed -> write pipeline over a partition.

A batch is copied in three steps (:class:`Copier`):

1. ``prepare``: take the text (or the vectors, in copy-vectors mode) and embed with model B;
2. ``write``: upsert into the target with ``insert_only`` (a mirrored write that got there first
   is newer and wins), payload = the source's content + B's metadata + the source digest;
3. re-read the batch's ids from the source: ids that vanished are deleted from the target, ids
   whose digest changed are redone -- each only while the target still holds *our* digest, so
   a newer mirrored write is never undone. This closes the races with the application's
   deletes and updates between the scroll and the write: no resurrection, no lost update.

:func:`run_partition` overlaps the steps: a producer scrolls and starts ``prepare`` tasks, at
most ``concurrency`` ahead; the consumer writes them in id order and checkpoints after each,
so a kill at any instant loses at most the batches in flight, never a point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.backfill.partitions import HOT, Partition, PointId, norm, truncate
from switchyard.backfill.samples import Reservoir, pair
from switchyard.backfill.texts import Fault, TextFetcher
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, content_of, source_digest, vector_repr
from switchyard.proxy.embedders import Embedder
from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.records import META_APPROXIMATE

_FOREIGN = (UnexpectedResponse, ResponseHandlingException)


@dataclass(frozen=True, slots=True)

class Batch:
    records: Sequence[models.Record]
    next_cursor: PointId | None  # None: the partition ends with this batch



def _carries(digest: str) -> models.FieldCondition:
    return models.FieldCondition(key=DIGEST_FIELD, match=models.MatchValue(value=digest))


def digest_guard(expected: str) -> models.Filter:
    """The condition of a write that may only replace a point still carrying ``expected``."""
    return models.Filter(must=[_carries(expected)])


def delete_guard(ids: Sequence[PointId], ours: Mapping[PointId, str | None]) -> models.Filter:
    """A filter selecting ``ids``; those with a digest in ``ours`` only while it still matches
    (a point rewritten since it was read is left alone)."""
    clauses: list[models.Condition] = []
    for i in ids:
        must: list[models.Condition] = [models.HasIdCondition(has_id=[i])]
        digest = ours.get(i)
        if digest is not None:
            must.append(_carries(digest))
        clauses.append(models.Filter(must=must))
    return models.Filter(should=clauses)


@dataclass(slots=True)
class Prepared:
    batch: Batch
    points: list[models.PointStruct]
    digests: dict[PointId, str]
    no_text: int = 0


@dataclass(slots=True)
class Stats:
    written: int = 0
    vanished: int = 0
    redone: int = 0
    no_text: int = 0
    embedded: int = 0

    def add(self, other: Stats) -> None:
        for name in ("written", "vanished", "redone", "no_text", "embedded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def digest_of(m: Migration, record: models.Record) -> str:
    """The source digest of ``record`` under ``m`` (vector bytes count in copy-vectors mode)."""
    vec = vector_repr(record.vector) if m.copy_vectors else None
    return source_digest(record.payload, vec)


def target_vector(m: Migration, record: models.Record, embedded: np.ndarray | None) -> Any:
    """The target point's vector(s), as the migration's kind transforms the source point's
    (``switchyard.proxy.migration.kinds``; ``reembed``: :func:`reembed_vector`)."""
    from switchyard.proxy.migration import kinds

    return kinds.of(m).transform(m, record.vector, embedded)


def reembed_vector(m: Migration, vector: Any, embedded: np.ndarray | None) -> Any:
    """B's embedding under the bound name (other named vectors copied), or the source's
    vectors unchanged in copy-vectors mode (or when nothing was embedded)."""
    if m.copy_vectors or embedded is None:
        return vector
    vec = [float(x) for x in embedded]
    if not m.vector:
        return vec
    others = dict(vector) if isinstance(vector, Mapping) else {}
    others[m.vector] = vec
    return others


def bound_vector(m: Migration, record: models.Record) -> Any:
    v = record.vector
    return v.get(m.vector) if isinstance(v, Mapping) else (v if not m.vector else None)


class Copier:
    """Copies batches of ``m.source`` into ``m.target`` (see the module docstring)."""

    def __init__(self, client: AsyncQdrantClient, m: Migration, meta: Mapping[str, Any],
                 embedder: Embedder | None, texts: TextFetcher, *, fault: Fault | None = None,
                 reservoir: Reservoir | None = None,
                 on_latency: Callable[[float], None] | None = None) -> None:
        self.client, self.m, self.meta, self.embedder, self.texts = client, m, dict(meta), embedder, texts
        self.fault, self.reservoir, self.on_latency = fault, reservoir, on_latency
        # source vectors are read only where the target needs them: copied (copy-vectors mode)
        # or kept beside B's (named vectors); re-embedding a single vector needs the text alone,
        # and the samples' A vectors are fetched for the sampled points only
        self.with_vectors = bool(m.copy_vectors or m.vector)

    async def _call(self, what: str, coro: Awaitable[Any]) -> Any:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            return await coro
        except _FOREIGN as exc:
            raise UpstreamError(f"{what} failed: {exc}") from exc
        finally:
            if self.on_latency is not None:
                self.on_latency(loop.time() - t0)

    async def scroll(self, p: Partition, cursor: PointId, limit: int) -> Batch:
        if p.kind == HOT:
            return await self.hot_batch(p, int(cursor), limit)
        records, nxt = await self._call("scrolling the source", self.client.scroll(
            self.m.source, offset=cursor, limit=limit, with_payload=True,
            with_vectors=self.with_vectors))
        n = truncate(p, [norm(r.id) for r in records])
        if n < len(records) or nxt is None or p.past_end(norm(nxt)):
            return Batch(records[:n], None)
        return Batch(records, norm(nxt))

    async def hot_batch(self, p: Partition, at: int, limit: int) -> Batch:
        """The next ``limit`` hot ids from position ``at`` (ids gone from the source are
        simply absent); the cursor is the next position, ``None`` past the list's end."""
        chunk = list(p.ids[at: at + max(1, limit)])
        records = await self._call("reading hot points from the source", self.client.retrieve(
            self.m.source, chunk, with_payload=True, with_vectors=self.with_vectors)) if chunk else []
        nxt = at + len(chunk)
        return Batch(list(records), nxt if nxt < len(p.ids) else None)

    async def prepare(self, batch: Batch) -> Prepared:
        return await self.prepare_records(batch, batch.records)

    async def current_in_target(self, digests: Mapping[PointId, str]) -> set[PointId]:
        """Ids whose target point already carries this source digest: nothing to redo for them.

        This is what keeps re-runs and restarts after a kill from embedding again what was
        written but not yet checkpointed. A point holding an adapter image (flagged
        ``embedding_approximate`` by a mirrored upsert without text) is never current: its text,
        once found, replaces the approximation."""
        if not digests:
            return set()
        found = await self._call("reading target digests", self.client.retrieve(
            self.m.target, list(digests), with_payload=[DIGEST_FIELD, META_APPROXIMATE], with_vectors=False))
        return {norm(r.id) for r in found
                if (r.payload or {}).get(DIGEST_FIELD) == digests.get(norm(r.id))
                and (r.payload or {}).get(META_APPROXIMATE) is not True}

    async def prepare_records(self, batch: Batch, records: Sequence[models.Record]) -> Prepared:
        """Target points for ``records``: text -> B embedding (or copied vectors) + payload.

        Records whose target point is already current (same source digest) are skipped."""
        all_digests = {norm(r.id): digest_of(self.m, r) for r in records}
        current = await self.current_in_target(all_digests)
        records = [r for r in records if norm(r.id) not in current]
        vectors: list[Any]
        if self.m.copy_vectors or self.embedder is None:
            keep, vectors, no_text = list(records), [None] * len(records), 0
        else:
            texts = await self.texts(records)
            keep = [r for r, t in zip(records, texts, strict=True) if t is not None]
            wanted = [t for t in texts if t is not None]
            no_text = len(records) - len(keep)
            matrix = await self.embedder.embed(wanted) if wanted else np.zeros((0, 0), np.float32)
            vectors = list(matrix)
            if self.reservoir is not None:
                await self.sample(keep, wanted, vectors)
        digests = dict(all_digests)
        points = []
        for r, v in zip(keep, vectors, strict=True):
            d = digests[norm(r.id)]
            payload = {**content_of(r.payload), **self.meta, DIGEST_FIELD: d}
            points.append(models.PointStruct(id=r.id, vector=target_vector(self.m, r, v), payload=payload))
        return Prepared(batch, points, digests, no_text)

    async def sample(self, records: Sequence[models.Record], texts: Sequence[str],
                     vectors: Sequence[Any]) -> None:
        """Offer (text, A vector, B vector) of ``records`` to the reservoir; the A vectors of
        the kept ones are read from the source when the scroll did not bring them."""
        assert self.reservoir is not None
        kept = [(slot, i) for i in range(len(records)) if (slot := self.reservoir.slot()) is not None]
        need = [records[i].id for _, i in kept if bound_vector(self.m, records[i]) is None]
        fetched: dict[PointId, Any] = {}
        if need:
            try:
                # only reached for a single unnamed vector (named ones came with the scroll)
                found = await self._call("reading source vectors for samples", self.client.retrieve(
                    self.m.source, need, with_payload=False, with_vectors=True))
                fetched = {norm(r.id): bound_vector(self.m, r) for r in found}
            except UpstreamError:  # a sample without its A vector beats a failed batch
                fetched = {}
        for slot, i in kept:
            r = records[i]
            a = bound_vector(self.m, r)
            a = a if a is not None else fetched.get(norm(r.id))
            self.reservoir.put(slot, pair(norm(r.id), texts[i], a, vectors[i]))

    async def write(self, prep: Prepared) -> Stats:
        """Insert-only write, then re-read the source and fix vanished and changed ids."""
        stats = Stats(written=len(prep.points), no_text=prep.no_text,
                      embedded=0 if self.m.copy_vectors else len(prep.points))
        if self.fault is not None:
            await self.fault(prep.batch.records)
        if prep.points:
            await self._call("writing the target", self.client.upsert(
                self.m.target, prep.points, wait=True, update_mode=models.UpdateMode.INSERT_ONLY))
        ids = [norm(r.id) for r in prep.batch.records]
        if ids:
            fixed = await self.reconcile(ids, prep.digests)
            stats.vanished, stats.redone = fixed.vanished, fixed.redone
            stats.embedded += fixed.embedded
        return stats

    async def reconcile(self, ids: Sequence[PointId], ours: Mapping[PointId, str]) -> Stats:
        """Re-read ``ids`` from the source; delete from the target those gone, redo those whose
        digest is not ``ours``, each only where the target still carries ``ours`` (or nothing)."""
        current = await self.read_source(ids)
        gone = [i for i in ids if i not in current and i in ours]
        changed = [current[i] for i in ids if i in current and digest_of(self.m, current[i]) != ours.get(i)]
        stats = Stats(vanished=len(gone), redone=len(changed))
        if gone:
            await self.delete_if(gone, ours)
        if changed:
            prep = await self.prepare_records(Batch(changed, None), changed)
            stats.embedded = 0 if self.m.copy_vectors else len(prep.points)
            for point in prep.points:
                old = ours.get(norm(point.id))
                await self.overwrite([point], old)
        return stats

    async def read_source(self, ids: Sequence[PointId]) -> dict[PointId, models.Record]:
        found = await self._call("re-reading the source", self.client.retrieve(
            self.m.source, list(ids), with_payload=True, with_vectors=self.with_vectors))
        return {norm(r.id): r for r in found}

    async def overwrite(self, points: list[models.PointStruct], expected: str | None) -> None:
        """Upsert ``points``; with ``expected``, only over a target point still carrying that
        digest (a missing point is inserted)."""
        flt = None
        if expected is not None:
            flt = digest_guard(expected)
        await self._call("redoing in the target", self.client.upsert(
            self.m.target, points, wait=True, update_filter=flt))

    async def delete_if(self, ids: Sequence[PointId], ours: Mapping[PointId, str | None]) -> None:
        """Delete ``ids`` from the target; those with a digest in ``ours`` only if it still matches."""
        await self._call("deleting from the target", self.client.delete(
            self.m.target, models.FilterSelector(filter=delete_guard(ids, ours)), wait=True))

    async def redo(self, ids: Sequence[PointId]) -> Stats:
        """Repair ``ids`` unconditionally from the source's current state (repair log, verify)."""
        current = await self.read_source(ids)
        gone = [i for i in ids if i not in current]
        present = [current[i] for i in ids if i in current]
        stats = Stats(vanished=len(gone), redone=len(present))
        if gone:
            await self.delete_if(gone, {})
        if present:
            prep = await self.prepare_records(Batch(present, None), present)
            stats.no_text, stats.embedded = prep.no_text, len(prep.points)
            if prep.points:
                await self.overwrite(prep.points, None)
        return stats


def copier_for(m: Migration) -> type[Copier]:
    """The copier of ``m``'s kind: in-place migrations fill a vector in the one collection
    (``in_place_copier``); every other kind copies into its target."""
    if m.kind == "split":  # one source, a target per split key
        from switchyard.backfill.split_copier import SplitCopier

        return SplitCopier
    if m.kind == "named-vector":
        from switchyard.backfill.in_place_copier import InPlaceCopier

        return InPlaceCopier
    return Copier


@dataclass(slots=True)
class PartitionRun:
    """What :func:`run_partition` needs from the daemon: knobs and the checkpoint."""

    batch_size: Callable[[], int]
    concurrency: int
    gate: Callable[[int], Awaitable[None]]
    checkpoint: Callable[[PointId | None, Stats], Awaitable[None]]
    stats: Stats = field(default_factory=Stats)
    #: the budget of prepared batches, shared by partitions copied at once (default: own)
    slots: asyncio.Semaphore | None = None
    #: called once the partition is scrolled to its end (only writes are left)
    on_scrolled: Callable[[], None] | None = None


async def run_partition(copier: Copier, p: Partition, start: PointId, run: PartitionRun) -> Stats:
    """Copy ``p`` from ``start`` to its end; ``run.checkpoint`` after each written batch.

    At most ``run.concurrency`` batches are being prepared or wait prepared for the writer
    (memory is bounded by ``(concurrency + 1) * batch_size`` points). An exception from the checkpoint (a lost
    lease) or anywhere else cancels the producer and the in-flight preparations.
    """
    ordered: asyncio.Queue[asyncio.Task[Prepared] | None] = asyncio.Queue()
    # at most `concurrency` batches are being embedded or wait embedded for the writer: what a
    # kill can throw away (the batch being written is skipped on restart by its digests)
    slots = run.slots or asyncio.Semaphore(max(1, run.concurrency))
    held = 0  # slots this partition holds: given back however it ends, as the budget is shared

    def give_back() -> None:
        nonlocal held
        held -= 1
        slots.release()

    try:
        async with asyncio.TaskGroup() as tg:
            async def produce() -> None:
                nonlocal held
                cursor: PointId | None = start
                while cursor is not None:
                    await slots.acquire()
                    held += 1
                    batch = await copier.scroll(p, cursor, run.batch_size())
                    await ordered.put(tg.create_task(copier.prepare(batch)))
                    cursor = batch.next_cursor
                await ordered.put(None)
                if run.on_scrolled is not None:
                    run.on_scrolled()

            tg.create_task(produce())
            while (task := await ordered.get()) is not None:
                prep = await task
                give_back()
                await run.gate(len(prep.batch.records))
                stats = await copier.write(prep)
                await run.checkpoint(prep.batch.next_cursor, stats)
                run.stats.add(stats)
    finally:
        while held:
            give_back()
    return run.stats

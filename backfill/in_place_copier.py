"""The backfill of a ``named-vector`` (in place) migration: fill model B's vector in the one
collection, race-free, and verify it.

:class:`InPlaceCopier` is the :class:`~switchyard.backfill.pipeline.Copier` of in-place
migrations (same partitions, leases, checkpoints, throttle and outage handling; the daemon and
verify pick it by the migration's kind through :func:`switchyard.backfill.pipeline.copier_for`):

1. ``scroll`` reads the points of the partition that still lack the new vector (``must_not
   has_vector``), with their payload;
2. ``prepare`` embeds their texts with model B;
3. ``write`` re-reads the ids (points deleted meanwhile are dropped: Qdrant answers 404 for an
   update of a missing point) and sends one batch update: per point an ``update_vectors``
   whose ``update_filter`` says the point still lacks the new vector and still has the text
   that was embedded (so a value a client wrote meanwhile, through the proxy or itself, is
   never overwritten, and a text changed meanwhile is not given a vector of the old text),
   then its digest, under the same condition (``in_place.fill_operations``). A point deleted
   between the re-read and the update makes Qdrant refuse the batch: it is re-read and sent
   again, at most :data:`RETRIES` times.

Nothing is ever deleted and no point is ever created: an update never resurrects a point.
``redo`` (repair log, verify repair) re-embeds points whose new vector is missing or stale,
conditioned on the text alone. Verify (:func:`diff`) scans the collection: a point without the
new vector is *missing*, one whose digest is not its text's is *stale*; there are no extras.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from switchyard.backfill.partitions import Partition, PointId, norm, truncate
from switchyard.backfill.pipeline import Batch, Copier, Prepared, Stats
from switchyard.proxy.dataplane import in_place
from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.migration.record import Migration

RETRIES = 3


def settings(m: Migration) -> in_place.InPlace:
    return in_place.InPlace(new=str(m.options.get("vector") or ""),
                            old=str(m.options.get("old_vector") or m.vector), text_field=m.text_field)


class InPlaceCopier(Copier):
    """Fills ``m``'s new vector in ``m.source`` (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = settings(self.m)
        self.with_vectors = False
        self.meta: dict[str, Any] = {}  # the collection stays bound to A until complete: no B metadata

    async def scroll(self, p: Partition, cursor: PointId, limit: int) -> Batch:
        records, nxt = await self._call("scrolling the collection", self.client.scroll(
            self.m.source, offset=cursor, limit=limit, with_payload=True, with_vectors=False,
            scroll_filter=in_place.lacks_new(self.cfg.new)))
        n = truncate(p, [norm(r.id) for r in records])
        if n < len(records) or nxt is None or p.past_end(norm(nxt)):
            return Batch(records[:n], None)
        return Batch(records, norm(nxt))

    async def prepare_records(self, batch: Batch, records: Sequence[models.Record]) -> Prepared:
        """B's vector for each record with a text (the text kept beside it, for the write's
        condition)."""
        texts = await self.texts(records) if self.embedder is not None else [None] * len(records)
        keep = [(r, t) for r, t in zip(records, texts, strict=True) if t is not None]
        matrix: Any = await self.embedder.embed([t for _, t in keep]) if keep and self.embedder else []
        points = [models.PointStruct(id=r.id, vector={self.cfg.new: [float(x) for x in v]},
                                     payload={self.cfg.text_field: t})
                  for (r, t), v in zip(keep, matrix, strict=True)]
        digests = {norm(r.id): in_place.text_digest(t) for r, t in keep}
        if self.reservoir is not None and keep:
            await self.sample([r for r, _ in keep], [t for _, t in keep], list(matrix))
        return Prepared(batch, points, digests, len(records) - len(keep))

    async def write(self, prep: Prepared) -> Stats:
        stats = Stats(no_text=prep.no_text)
        if self.fault is not None:
            await self.fault(prep.batch.records)
        written = await self.fill(prep.points, lacking_only=True)
        stats.written = stats.embedded = written
        stats.vanished = len(prep.points) - written
        return stats

    async def fill(self, points: Sequence[models.PointStruct], *, lacking_only: bool) -> int:
        """Send the conditional fills of ``points`` for the ids that still exist; how many were
        sent (a deleted point is skipped, never re-created)."""
        todo = list(points)
        for _ in range(RETRIES + 1):
            if not todo:
                return 0
            present = await self._present([p.id for p in todo])
            todo = [p for p in todo if norm(p.id) in present]
            ops = _operations(self.cfg, todo, lacking_only)
            if not ops:
                return 0
            try:
                await self._call("filling the new vector", self.client.batch_update_points(
                    self.m.source, ops, wait=True))
                return len(todo)
            except UpstreamError as exc:
                if "not found" not in str(exc).lower() and "404" not in str(exc):
                    raise
        raise UpstreamError(f"filling the new vector: points kept vanishing after {RETRIES} re-reads")

    async def _present(self, ids: Sequence[Any]) -> set[PointId]:
        found = await self._call("re-reading the collection", self.client.retrieve(
            self.m.source, list(ids), with_payload=False, with_vectors=False))
        return {norm(r.id) for r in found}

    async def current_in_target(self, digests: Mapping[PointId, str]) -> set[PointId]:
        return set()  # the scroll only brings points lacking the new vector

    async def reconcile(self, ids: Sequence[PointId], ours: Mapping[PointId, str]) -> Stats:
        return Stats()  # nothing was created or deleted: nothing to level

    async def redo(self, ids: Sequence[PointId]) -> Stats:
        """Re-embed ``ids`` from their current text (missing or stale new vectors)."""
        current = await self.read_source(ids)
        records = [current[i] for i in ids if i in current]
        stats = Stats(vanished=len(ids) - len(records), redone=len(records))
        if records:
            prep = await self.prepare_records(Batch(records, None), records)
            stats.no_text = prep.no_text
            stats.embedded = await self.fill(prep.points, lacking_only=False)
        return stats


def _operations(cfg: in_place.InPlace, points: Sequence[models.PointStruct], lacking_only: bool) -> list[Any]:
    """Per point, its conditional vector update and digest (``lacking_only``: only where the new
    vector is still missing, as the backfill; otherwise wherever the text is unchanged)."""
    fills: list[tuple[Any, list[float], str]] = []
    for p in points:
        vector = p.vector.get(cfg.new) if isinstance(p.vector, dict) else None
        text = (p.payload or {}).get(cfg.text_field)
        if isinstance(vector, list) and isinstance(text, str):
            fills.append((p.id, [float(x) for x in vector], text))  # type: ignore[arg-type]
    return in_place.fill_operations(cfg, fills, lacking_only=lacking_only)


def _verdicts(m: Migration, records: Sequence[models.Record], d: Any) -> None:
    cfg = settings(m)
    for r in records:
        names = list(r.vector) if isinstance(r.vector, dict) else []
        verdict, _ = in_place.check_point(names, r.payload, cfg)
        if verdict == in_place.MISSING:
            d.missing.append(norm(r.id))
        elif verdict == in_place.STALE:
            d.stale.append(norm(r.id))


async def diff(client: AsyncQdrantClient, m: Migration, page: int = 256,
               gate: Callable[[int], Awaitable[None]] | None = None) -> Any:
    """Every point checked (``in_place.check_point``): a ``verify.Diff`` with ``missing`` (no
    new vector) and ``stale`` (digest not its text's); ``extra`` stays empty (one collection)."""
    from switchyard.backfill.verify import Diff

    d, offset = Diff(), None
    new = settings(m).new
    while True:
        records, nxt = await client.scroll(m.source, offset=offset, limit=page, with_payload=True,
                                           with_vectors=[new])
        if gate is not None:
            await gate(len(records))
        _verdicts(m, records, d)
        d.source += len(records)
        d.target += len(records)
        if nxt is None:
            return d
        offset = nxt


async def confirm(copier: Copier, m: Migration, d: Any) -> Any:
    """Re-check each difference now (a write in flight shows up once and is gone)."""
    from switchyard.backfill.verify import Diff

    out = Diff(d.source, d.target)
    ids = [*d.missing, *d.stale]
    for k in range(0, len(ids), 256):
        found = await copier.client.retrieve(m.source, ids[k:k + 256], with_payload=True,
                                             with_vectors=[settings(m).new])
        _verdicts(m, found, out)
    return out

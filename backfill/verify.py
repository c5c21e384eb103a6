"""Verification: a merge-join of source and target in id order, comparing ids and digests.

Both collections are scrolled page by page from the same cursor; ids only in the source are
*missing*, ids only in the target are *extra*, ids in both whose target digest is not the
source's digest are *stale*. Differences are confirmed by a second look at the end (a write
in flight between the proxy's two legs shows up once and is gone on the re-check), so a
verify that runs while the application writes reports only lasting differences. With
``repair`` they are fixed (missing and stale redone from the source, extra deleted) and
re-checked. The cursor and the counts so far are checkpointed (kind ``verify``, key the
migration id, see :mod:`proxy.migration.verify_state`), so a killed verify resumes; every page
and every chunk confirmed or repaired rewrites the record with its stage and the number of
points checked, so status shows a verify's progress. Pages go through the same throttle gate
as the backfill.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from backfill.partitions import PointId, norm
from backfill.pipeline import Copier, digest_of
from proxy.dataplane.digest import DIGEST_FIELD
from proxy.migration.record import Migration
from proxy.migration.verify_state import KIND
from proxy.state.store import StateStore

SAMPLE_IDS = 10
#: Differences held for confirmation; beyond this a verify reports without confirming more.
MAX_HELD = 100_000


def order_key(point_id: PointId) -> tuple[int, int | str]:
    """Qdrant's id order: every integer before every UUID, UUIDs by canonical text."""
    return (1, str(point_id)) if isinstance(point_id, str) else (0, point_id)


@dataclass(slots=True)
class Diff:
    """Counts and the differing ids (all of them up to :data:`MAX_HELD`)."""

    source: int = 0
    target: int = 0
    missing: list[PointId] = field(default_factory=list)
    extra: list[PointId] = field(default_factory=list)
    stale: list[PointId] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.stale)

    def counts(self) -> dict[str, int]:
        return {"source": self.source, "target": self.target, "missing": len(self.missing),
                "extra": len(self.extra), "stale": len(self.stale)}

    def samples(self) -> dict[str, list[PointId]]:
        return {k: list(getattr(self, k)[:SAMPLE_IDS]) for k in ("missing", "extra", "stale")}

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "missing": self.missing,
                "extra": self.extra, "stale": self.stale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diff:
        return cls(int(d.get("source") or 0), int(d.get("target") or 0), list(d.get("missing") or []),
                   list(d.get("extra") or []), list(d.get("stale") or []))


def join_page(src: list[tuple[PointId, str]], tgt: list[tuple[PointId, str | None]],
              diff: Diff) -> None:
    """Merge one aligned window of (id, digest) pairs (both sorted by :func:`order_key`) into
    ``diff``. Pure; the caller guarantees both lists cover the same id range."""
    i = j = 0
    while i < len(src) or j < len(tgt):
        if j >= len(tgt) or (i < len(src) and order_key(src[i][0]) < order_key(tgt[j][0])):
            _hold(diff.missing, src[i][0])
            i += 1
        elif i >= len(src) or order_key(tgt[j][0]) < order_key(src[i][0]):
            _hold(diff.extra, tgt[j][0])
            j += 1
        else:
            if src[i][1] != tgt[j][1]:
                _hold(diff.stale, src[i][0])
            i, j = i + 1, j + 1
    diff.source += len(src)
    diff.target += len(tgt)


def _hold(ids: list[PointId], point_id: PointId) -> None:
    if len(ids) < MAX_HELD:
        ids.append(point_id)


async def _pages(client: AsyncQdrantClient, collection: str, start: PointId | None, limit: int,
                 with_vectors: bool) -> AsyncIterator[tuple[list[models.Record], PointId | None]]:
    offset = start
    while True:
        records, nxt = await client.scroll(collection, offset=offset, limit=limit, with_payload=True,
                                           with_vectors=with_vectors)
        following = None if nxt is None else norm(nxt)
        yield records, following
        if following is None:
            return
        offset = following


Tick = Callable[[int, int], Awaitable[None]]


def _progress(store: StateStore, m: Migration, extra: Mapping[str, Any], stage: str,
              checked: int) -> Tick:
    """A tick that rewrites the ``verify`` record with ``stage`` and its done/total."""
    async def tick(done: int, total: int) -> None:
        await store.upsert(KIND, m.id, {**extra, "stage": stage, "checked": checked, "finished": True,
                                        "stage_done": done, "stage_total": total, "at": time.time()})
    return tick


async def diff(client: AsyncQdrantClient, store: StateStore, m: Migration, *, page: int = 256,
               gate: Callable[[int], Awaitable[None]] | None = None, resume: bool = True,
               extra: Mapping[str, Any] | None = None) -> Diff:
    """The merge-join over both collections (checkpointed with ``extra`` merged into every
    write; resumes an unfinished one)."""
    saved = await store.get(KIND, m.id) if resume else None
    d, cursor = Diff(), None
    if saved is not None and not saved.data.get("finished"):
        d, cursor = Diff.from_dict(saved.data.get("diff") or {}), saved.data.get("cursor")
    src_pages = _pages(client, m.source, cursor, page, m.copy_vectors)
    tgt_buffer: list[tuple[PointId, str | None]] = []
    tgt_pages = _pages(client, m.target, cursor, page, False)
    tgt_done = False
    async for records, nxt in src_pages:
        if gate is not None:
            await gate(len(records))
        src = [(norm(r.id), digest_of(m, r)) for r in records]
        bound = None if nxt is None else order_key(nxt)  # window: ids before the next source page
        while not tgt_done and (bound is None or not tgt_buffer or order_key(tgt_buffer[-1][0]) < bound):
            try:
                t_records, _ = await anext(tgt_pages)
            except StopAsyncIteration:
                tgt_done = True
                break
            tgt_buffer.extend((norm(r.id), (r.payload or {}).get(DIGEST_FIELD)) for r in t_records)
            if not t_records:
                tgt_done = True
        if bound is None:
            window, tgt_buffer = tgt_buffer, []
        else:
            cut = next((k for k, (tid, _) in enumerate(tgt_buffer) if order_key(tid) >= bound), len(tgt_buffer))
            window, tgt_buffer = tgt_buffer[:cut], tgt_buffer[cut:]
        join_page(src, window, d)
        await store.upsert(KIND, m.id, {**(extra or {}), "stage": "scan", "cursor": nxt,
                                        "diff": d.to_dict(), "finished": nxt is None,
                                        "checked": d.source, "at": time.time()})
        if nxt is None:
            break
    return d


async def confirm(copier: Copier, m: Migration, d: Diff, tick: Tick | None = None) -> Diff:
    """Re-check each difference against both collections now; keep only the lasting ones."""
    out = Diff(d.source, d.target)
    ids = [*d.missing, *d.extra, *d.stale]
    for k in range(0, len(ids), 256):
        chunk = ids[k:k + 256]
        if tick is not None:
            await tick(k, len(ids))
        src = await copier.read_source(chunk)
        tgt = {norm(r.id): r for r in await copier.client.retrieve(m.target, chunk, with_payload=True,
                                                              with_vectors=False)}
        for i in chunk:
            if i in src and i not in tgt:
                out.missing.append(i)
            elif i in tgt and i not in src:
                out.extra.append(i)
            elif i in src and (tgt[i].payload or {}).get(DIGEST_FIELD) != digest_of(m, src[i]):
                out.stale.append(i)
    return out


async def verify(copier: Copier, store: StateStore, m: Migration, *, repair: bool = False,
                 page: int = 256, gate: Callable[[int], Awaitable[None]] | None = None,
                 resume: bool = True, extra: Mapping[str, Any] | None = None,
                 ) -> tuple[Diff, Diff | None]:
    """(differences found, differences left after repair or ``None`` without repair).

    ``extra`` (who runs it, with or without repair) is merged into every record write."""
    extra = extra or {}
    scanned = await diff(copier.client, store, m, page=page, gate=gate, resume=resume, extra=extra)
    found = await confirm(copier, m, scanned, _progress(store, m, extra, "confirm", scanned.source))
    if not repair or found.clean:
        return found, None
    ids = [*found.missing, *found.extra, *found.stale]
    tick = _progress(store, m, extra, "repair", found.source)
    for k in range(0, len(ids), page):
        chunk = ids[k:k + page]
        await tick(k, len(ids))
        if gate is not None:
            await gate(len(chunk))
        await copier.redo(chunk)
    return found, await confirm(copier, m, found, _progress(store, m, extra, "recheck", found.source))


async def run_for_service(store: StateStore, client: AsyncQdrantClient, m: Migration,
                          repair: bool, extra: Mapping[str, Any] | None = None,
                          ) -> tuple[Diff, Diff | None]:
    """Verification as the migration service runs it: a fresh pass, repairs with model B."""
    from backfill.texts import make_fetcher
    from proxy import registry
    from proxy.embedders import make_embedder
    from proxy.intercept.planner import metadata_for

    spec_b = await registry.get_model(store, m.model_b)
    embedder = make_embedder(spec_b) if repair and not m.copy_vectors else None
    copier = Copier(client, m, metadata_for(spec_b), embedder,
                    make_fetcher(None, m.text_field, m.doc_key))
    try:
        return await verify(copier, store, m, repair=repair, resume=False, extra=extra)
    finally:
        if embedder is not None:
            await embedder.aclose()

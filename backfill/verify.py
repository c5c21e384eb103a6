"""Verification: a merge-join of source and target in id order, comparing ids and digests.

Both collections are scrolled page by page from the same cursor; ids only in the source are
*missing*, ids only in the target are *extra*, ids in both whose target digest is not the
source's digest are *stale*; target points flagged ``embedding_approximate`` (a mirrored upsert
without text, given the query adapter's image of its A vector: ``proxy/dataplane/adapter_points.py``)
are *approximate*, counted apart: not a content difference (their digest is the source's), but not
a real embedding either, so a verify with any of them is not clean (``verified`` waits for the
backfill, or ``--repair``, to re-embed them from a text). Differences are confirmed by a second look at the end (a write
in flight between the proxy's two legs shows up once and is gone on the re-check), so a
verify that runs while the application writes reports only lasting differences. With
``repair`` they are fixed (missing and stale redone from the source, extra deleted) and
re-checked (an approximate point whose text still cannot be found stays approximate). Each run writes only its own record (a :class:`~switchyard.proxy.migration.verify_state.Run`,
kind ``verify_run``): the cursor and the counts so far (``resume`` continues them), and on
every page and every chunk confirmed or repaired its stage and the number of points checked,
so status shows each verify's progress apart from any other running at the same time. Without
a run nothing is recorded. Pages go through the same throttle gate as the backfill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from switchyard.backfill.partitions import PointId, norm
from switchyard.backfill.pipeline import Copier, digest_of
from switchyard.proxy.dataplane.digest import DIGEST_FIELD
from switchyard.proxy.migration import verify_state
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.verify_state import Run
from switchyard.proxy.state.records import META_APPROXIMATE
from switchyard.proxy.state.store import StateStore

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
    #: target points holding an adapter image instead of a real embedding (module docstring)
    approximate: list[PointId] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.stale or self.approximate)

    def differing(self) -> list[PointId]:
        """Every id a repair redoes, once each."""
        return list({norm(i): i for i in (*self.missing, *self.extra, *self.stale, *self.approximate)}.values())

    def counts(self) -> dict[str, int]:
        return {"source": self.source, "target": self.target, "missing": len(self.missing),
                "extra": len(self.extra), "stale": len(self.stale), "approximate": len(self.approximate)}

    def samples(self) -> dict[str, list[PointId]]:
        return {k: list(getattr(self, k)[:SAMPLE_IDS]) for k in ("missing", "extra", "stale", "approximate")}

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "missing": self.missing,
                "extra": self.extra, "stale": self.stale, "approximate": self.approximate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diff:
        return cls(int(d.get("source") or 0), int(d.get("target") or 0), list(d.get("missing") or []),
                   list(d.get("extra") or []), list(d.get("stale") or []), list(d.get("approximate") or []))


def approximate_reason(d: Diff) -> str:
    """Why ``verified`` waits for ``d``'s approximate points ("" when there are none)."""
    if not d.approximate:
        return ""
    return (f"{len(d.approximate)} points carry approximate vectors (adapter); run the backfill's repair / "
            f"verify --repair (sample ids {d.approximate[:SAMPLE_IDS]})")


def refusal_reason(d: Diff, differences: str) -> str:
    """The refusal of a verify that is not clean: ``differences`` (the service's text on missing,
    extra and stale points) when there are any, and the approximate points' reason."""
    parts = [differences if d.missing or d.extra or d.stale else "", approximate_reason(d)]
    return "; ".join(p for p in parts if p)


def is_approximate(record: models.Record) -> bool:
    return (record.payload or {}).get(META_APPROXIMATE) is True


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


def _progress(store: StateStore, run: Run | None, stage: str, checked: int) -> Tick:
    """A tick that rewrites ``run``'s record with ``stage`` and its done/total."""
    async def tick(done: int, total: int) -> None:
        await verify_state.progress(store, run, {"stage": stage, "checked": checked, "finished": True,
                                                 "stage_done": done, "stage_total": total})
    return tick


async def diff(client: AsyncQdrantClient, store: StateStore, m: Migration, *, page: int = 256,
               gate: Callable[[int], Awaitable[None]] | None = None, resume: bool = True,
               run: Run | None = None) -> Diff:
    """The merge-join over both collections (checkpointed in ``run``'s record; with
    ``resume``, continues that record's unfinished checkpoint)."""
    if m.kind == "named-vector":  # one collection: every point checked in place
        from switchyard.backfill import in_place_copier

        return await in_place_copier.diff(client, m, page, gate)  # type: ignore[no-any-return]
    saved = await verify_state.checkpoint(store, run) if resume else None
    d, cursor = Diff(), None
    if saved is not None and not saved.get("finished") and saved.get("stage") == "scan":
        d, cursor = Diff.from_dict(saved.get("diff") or {}), saved.get("cursor")
    src_pages = _pages(client, m.source, cursor, page, m.copy_vectors)
    tgt_buffer: list[tuple[PointId, str | None, bool]] = []
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
            tgt_buffer.extend((norm(r.id), (r.payload or {}).get(DIGEST_FIELD), is_approximate(r))
                              for r in t_records)
            if not t_records:
                tgt_done = True
        if bound is None:
            window, tgt_buffer = tgt_buffer, []
        else:
            cut = next((k for k, (tid, _, _) in enumerate(tgt_buffer) if order_key(tid) >= bound), len(tgt_buffer))
            window, tgt_buffer = tgt_buffer[:cut], tgt_buffer[cut:]
        join_page(src, [(tid, digest) for tid, digest, _ in window], d)
        for tid, _, approximate in window:
            if approximate:
                _hold(d.approximate, tid)
        await verify_state.progress(store, run, {"stage": "scan", "cursor": nxt, "diff": d.to_dict(),
                                                 "finished": nxt is None, "checked": d.source})
        if nxt is None:
            break
    return d


async def confirm(copier: Copier, m: Migration, d: Diff, tick: Tick | None = None) -> Diff:
    """Re-check each difference against both collections now; keep only the lasting ones."""
    if m.kind == "named-vector":
        from switchyard.backfill import in_place_copier

        return await in_place_copier.confirm(copier, m, d)  # type: ignore[no-any-return]
    out = Diff(d.source, d.target)
    ids = d.differing()
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
            if i in tgt and is_approximate(tgt[i]):
                out.approximate.append(i)
    return out


async def verify(copier: Copier, store: StateStore, m: Migration, *, repair: bool = False,
                 page: int = 256, gate: Callable[[int], Awaitable[None]] | None = None,
                 resume: bool = True, run: Run | None = None,
                 ) -> tuple[Diff, Diff | None]:
    """(differences found, differences left after repair or ``None`` without repair).

    Progress goes to ``run``'s record (none without a run)."""
    async with verify_state.kept_alive(store, run):  # a slow embedder must not look like death
        return await _verify(copier, store, m, repair, page, gate, resume, run)


async def _verify(copier: Copier, store: StateStore, m: Migration, repair: bool, page: int,
                  gate: Callable[[int], Awaitable[None]] | None, resume: bool, run: Run | None,
                  ) -> tuple[Diff, Diff | None]:
    if m.kind == "split":  # per target (split_copier.split_verify)
        from switchyard.backfill.split_copier import split_verify

        return await split_verify(copier, m, repair=repair, gate=gate, page=page)  # type: ignore[no-any-return]
    scanned = await diff(copier.client, store, m, page=page, gate=gate, resume=resume, run=run)
    found = await confirm(copier, m, scanned, _progress(store, run, "confirm", scanned.source))
    if not repair or found.clean:
        return found, None
    ids = found.differing()
    tick = _progress(store, run, "repair", found.source)
    for k in range(0, len(ids), page):
        chunk = ids[k:k + page]
        await tick(k, len(ids))
        if gate is not None:
            await gate(len(chunk))
        await copier.redo(chunk)
    return found, await confirm(copier, m, found, _progress(store, run, "recheck", found.source))


async def daemon_pass(copier: Copier, store: StateStore, m: Migration, owner: str,
                      gate: Callable[[int], Awaitable[None]] | None = None) -> tuple[Diff, Diff | None]:
    """The backfill daemon's full verify pass with repair, as a run of its own (``starter``
    ``daemon``, never blocking nor blocked by an operator's verify), its outcome recorded:
    ``clean`` when nothing is left after repair, else ``failed`` with what is left."""
    run = await verify_state.claim(store, m.id, owner, True, time.time(), starter="daemon")
    try:
        found, left = await verify(copier, store, m, repair=True, gate=gate, resume=False, run=run)
    except asyncio.CancelledError:
        await verify_state.finish_quietly(store, run, "cancelled", "stopped before it finished")
        raise
    except Exception as exc:
        await verify_state.finish_quietly(store, run, "failed", str(exc))
        raise
    final = left if left is not None else found
    counts = {**found.counts(), "repaired": len(found.differing())}
    if final.clean:
        await verify_state.finish(store, run, "clean", "repaired" if left is not None else "",
                                  counts, time.time())
    else:
        c = final.counts()
        await verify_state.finish(store, run, "failed", f"differences left after repair: missing="
                                  f"{c['missing']}, extra={c['extra']}, stale={c['stale']}, "
                                  f"approximate={c['approximate']}", counts, time.time())
    return found, left


async def run_for_service(store: StateStore, client: AsyncQdrantClient, m: Migration,
                          repair: bool, run: Run | None = None,
                          ) -> tuple[Diff, Diff | None]:
    """Verification as the migration service runs it: a fresh pass, repairs with model B."""
    from switchyard.backfill.texts import make_fetcher
    from switchyard.proxy import registry
    from switchyard.proxy.embedders import make_embedder
    from switchyard.proxy.intercept.planner import metadata_for

    spec_b = await registry.get_model(store, m.model_b)
    embedder = make_embedder(spec_b) if repair and not m.copy_vectors else None
    from switchyard.backfill.pipeline import copier_for

    copier = copier_for(m)(client, m, metadata_for(spec_b), embedder,
                    make_fetcher(None, m.text_field, m.doc_key))
    try:
        return await verify(copier, store, m, repair=repair, resume=False, run=run)
    finally:
        if embedder is not None:
            await embedder.aclose()

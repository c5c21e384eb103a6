"""The backfill of a ``split`` migration: every source point into the target its key selects.

:class:`SplitCopier` keeps the shared :class:`~switchyard.backfill.pipeline.Copier`'s protocol
(scroll, prepare, write, reconcile, redo; checkpoints, leases, throttle and kills are the
daemon's, unchanged) and applies it per target:

* ``prepare`` groups a batch by target (``split_routing.SplitLayout.target_of``); each group is
  embedded with its target's model (or its vectors copied, for targets on the source's model)
  and skipped where the target already holds the same source digest. A source point without a
  routable key is skipped and counted as ``no_text`` (verify reports it as *unroutable*);
* ``write`` inserts each group into its target with ``insert_only`` (a mirrored write that got
  there first is newer and wins), then re-reads the batch from the source: ids that vanished
  are deleted from the target we wrote, while it still holds our digest; ids whose digest or
  target changed are removed from our target (same condition) and redone into their current
  target, only over a point carrying our digest or none -- so a newer mirrored write is never
  undone, in any target;
* ``redo`` (repair log, verify ``--repair``) levels ids unconditionally: written to their target,
  deleted from every other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import models

from switchyard.backfill.partitions import PointId, norm
from switchyard.backfill.pipeline import Batch, Copier, Prepared, Stats, delete_guard, digest_guard, digest_of
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, content_of
from switchyard.proxy.dataplane.split_routing import SplitLayout
from switchyard.proxy.embedders import Embedder
from switchyard.proxy.intercept.planner import metadata_for
from switchyard.proxy.modelspec import ModelSpec


class SplitCopier(Copier):
    """Copies ``m.source`` into the split targets (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from switchyard.proxy.migration.kinds.split import derived_of, split_layout

        self.layout: SplitLayout = split_layout(self.m)
        self.specs: dict[str, ModelSpec | None] = {
            t["name"]: ModelSpec.from_dict(t["spec"], strict=False) if t.get("spec") else None
            for t in derived_of(self.m.options).get("targets") or ()}
        self.embedders: dict[str, Embedder] = {}
        self.with_vectors = True  # copied targets need them; re-embedded ones ignore them
        # where each prepared point went, by id (one batch at a time per id: write order)
        self.placed: dict[PointId, str] = {}

    def _embedder(self, name: str) -> Embedder | None:
        spec = self.specs.get(name)
        if spec is None:
            return None
        if name not in self.embedders:
            from switchyard.proxy.embedders import make_embedder

            self.embedders[name] = make_embedder(spec)
        return self.embedders[name]

    async def aclose(self) -> None:
        for e in self.embedders.values():
            await e.aclose()

    def home(self, record: models.Record) -> str | None:
        return self.layout.target_of(record.payload or {})[0]

    async def _current(self, name: str, digests: Mapping[PointId, str]) -> set[PointId]:
        if not digests:
            return set()
        found = await self._call("reading target digests", self.client.retrieve(
            name, list(digests), with_payload=[DIGEST_FIELD], with_vectors=False))
        return {norm(r.id) for r in found if (r.payload or {}).get(DIGEST_FIELD) == digests.get(norm(r.id))}

    async def prepare_records(self, batch: Batch, records: Sequence[models.Record]) -> Prepared:
        digests = {norm(r.id): digest_of(self.m, r) for r in records}
        groups: dict[str, list[models.Record]] = {}
        unroutable = 0
        for r in records:
            name = self.home(r)
            if name is None:
                unroutable += 1
            else:
                groups.setdefault(name, []).append(r)
        points: list[models.PointStruct] = []
        no_text = unroutable
        for name, group in sorted(groups.items()):
            current = await self._current(name, {norm(r.id): digests[norm(r.id)] for r in group})
            group = [r for r in group if norm(r.id) not in current]
            built, lacking = await self._build(name, group, digests)
            points += built
            no_text += lacking
        return Prepared(batch, points, digests, no_text)

    async def _build(self, name: str, group: Sequence[models.Record],
                     digests: Mapping[PointId, str]) -> tuple[list[models.PointStruct], int]:
        spec = self.specs.get(name)
        embedder = self._embedder(name)
        meta = metadata_for(spec) if spec is not None else self.meta
        vectors: list[Any]
        if embedder is None:
            keep, vectors = list(group), [r.vector for r in group]
        else:
            texts = await self.texts(list(group))
            keep = [r for r, t in zip(group, texts, strict=True) if t is not None]
            wanted = [t for t in texts if t is not None]
            matrix = await embedder.embed(wanted) if wanted else np.zeros((0, 0), np.float32)
            vectors = [_place(list(map(float, v)), self.m.vector) for v in matrix]
        out = []
        for r, v in zip(keep, vectors, strict=True):
            self.placed[norm(r.id)] = name
            payload = {**content_of(r.payload), **meta, DIGEST_FIELD: digests[norm(r.id)]}
            out.append(models.PointStruct(id=r.id, vector=v, payload=payload))
        return out, len(group) - len(keep)

    async def write(self, prep: Prepared) -> Stats:
        stats = Stats(written=len(prep.points), no_text=prep.no_text, embedded=len(prep.points))
        if self.fault is not None:
            await self.fault(prep.batch.records)
        by_target: dict[str, list[models.PointStruct]] = {}
        for p in prep.points:
            by_target.setdefault(self.placed[norm(p.id)], []).append(p)
        for name, pts in sorted(by_target.items()):
            await self._call("writing the target", self.client.upsert(
                name, pts, wait=True, update_mode=models.UpdateMode.INSERT_ONLY))
        ids = [norm(r.id) for r in prep.batch.records]
        wrote = {norm(p.id): self.placed[norm(p.id)] for p in prep.points}
        if ids:
            fixed = await self._reconcile(ids, prep.digests, wrote)
            stats.vanished, stats.redone = fixed.vanished, fixed.redone
            stats.vanished += await self._sweep(prep.batch.records)
        return stats

    async def _sweep(self, records: Sequence[models.Record]) -> int:
        """Remove, from every target, copies in the batch's id range that the source no longer
        puts there: gone from the source, or now keyed to another target. This is what a kill
        between a batch's insert and its re-read leaves behind (the restarted run scrolls the same
        range from the checkpoint). Each delete is conditional on the digest seen, so a copy a
        newer mirrored write put there meanwhile is kept."""
        lo, hi = norm(records[0].id), norm(records[-1].id)
        if type(lo) is not type(hi):
            return 0
        held: dict[str, list[tuple[PointId, Any]]] = {}
        for name in self.layout.collections:
            points, _ = await self._call("scrolling the target", self.client.scroll(
                name, offset=lo, limit=2 * len(records) + 8, with_payload=[DIGEST_FIELD], with_vectors=False))
            held[name] = [(norm(p.id), (p.payload or {}).get(DIGEST_FIELD)) for p in points
                          if type(norm(p.id)) is type(lo) and norm(p.id) <= hi]  # type: ignore[operator]
        wanted = sorted({i for pts in held.values() for i, _ in pts}, key=str)
        if not wanted:
            return 0
        current = await self.read_source(wanted)
        removed = 0
        for name, pts in held.items():
            for i, digest in pts:
                rec = current.get(i)
                if digest is not None and (rec is None or self.home(rec) != name):
                    await self._delete_if(name, [i], {i: digest})
                    removed += 1
        return removed

    async def _reconcile(self, ids: Sequence[PointId], ours: Mapping[PointId, str],
                         wrote: Mapping[PointId, str]) -> Stats:
        current = await self.read_source(ids)
        stats = Stats()
        for i in ids:
            where = wrote.get(i) or self.placed.get(i)
            rec = current.get(i)
            if rec is None:
                if where is not None:
                    stats.vanished += 1
                    await self._delete_if(where, [i], {i: ours.get(i)})
                continue
            home = self.home(rec)
            if digest_of(self.m, rec) == ours.get(i) and home == where:
                continue
            stats.redone += 1
            if where is not None and where != home:
                await self._delete_if(where, [i], {i: ours.get(i)})
            if home is not None:
                built, _ = await self._build(home, [rec], {i: digest_of(self.m, rec)})
                for point in built:
                    await self._overwrite(home, point, ours.get(i))
        return stats

    async def _overwrite(self, name: str, point: models.PointStruct, expected: str | None) -> None:
        """Upsert over a point still carrying ``expected`` (or none: a missing point is inserted)."""
        flt = None
        if expected is not None:
            flt = digest_guard(expected)
        await self._call("redoing in the target", self.client.upsert(name, [point], wait=True, update_filter=flt))

    async def _delete_if(self, name: str, ids: Sequence[PointId], ours: Mapping[PointId, str | None]) -> None:
        await self._call("deleting from the target", self.client.delete(
            name, models.FilterSelector(filter=delete_guard(ids, ours)), wait=True))

    async def redo(self, ids: Sequence[PointId]) -> Stats:
        """Level ``ids`` unconditionally from the source's current state: each written to its
        target and deleted from every other target (gone ids: from all)."""
        current = await self.read_source(ids)
        stats = Stats(vanished=sum(1 for i in ids if i not in current), redone=len(current))
        for name in self.layout.collections:
            elsewhere = [i for i in ids if i not in current or self.home(current[i]) != name]
            if elsewhere:
                await self._call("deleting from the target", self.client.delete(
                    name, models.PointIdsList(points=list(elsewhere)), wait=True))
            mine = [current[i] for i in ids if i in current and self.home(current[i]) == name]
            if mine:
                built, lacking = await self._build(name, mine, {norm(r.id): digest_of(self.m, r) for r in mine})
                stats.no_text += lacking
                stats.embedded += len(built)
                if built:
                    await self._call("redoing in the target", self.client.upsert(name, built, wait=True))
        stats.no_text += sum(1 for r in current.values() if self.home(r) is None)
        return stats


def _place(vector: list[float], name: str) -> Any:
    return {name: vector} if name else vector


def _pid(key: str) -> PointId:
    return int(key) if key.isdigit() else key


async def split_verify(copier: Copier, m: Any, *, repair: bool = False,
                       gate: Any = None, page: int = 256) -> tuple[Any, Any]:
    """Verify per target (``split_level.compare``) as the shared ``verify`` answers: missing
    (and unroutable) ids, extra ids (gone from the source, or held by a wrong target) and stale
    payloads; with ``repair``, those ids are levelled (:meth:`SplitCopier.redo`) and checked again."""
    from switchyard.backfill.verify import Diff
    from switchyard.proxy.dataplane import split_level

    async def look() -> Diff:
        layout = SplitLayout.from_dict((m.options.get("derived") or {}).get("layout") or {"fields": ["?"]})
        d = await split_level.verify(copier.client, m.source, layout)
        return Diff(d.checked, 0, [_pid(i) for i in d.missing + d.unroutable],
                    [_pid(e.rsplit("/", 1)[1]) for e in d.extra] + [_pid(i) for i in d.wrong_target],
                    [_pid(i) for i in d.stale])

    found = await look()
    if not repair or found.clean:
        return found, None
    ids = list(dict.fromkeys([*found.missing, *found.extra, *found.stale]))
    for k in range(0, len(ids), page):
        if gate is not None:
            await gate(len(ids[k:k + page]))
        await copier.redo(ids[k:k + page])
    return found, await look()

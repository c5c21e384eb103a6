"""Merged and shadow similarity reads during a migration, and proxy-side query inference.

:class:`MergedReader` is what the executor calls for a similarity read (``query_codec``'s
``is_similarity_*``) on a logical name whose route says ``merge`` or ``shadow``:

* **merge**: decode the read once; per sub-request decide each side's query vector
  (``query_vectors``), embedding inference-object text with each side's model (``EmbedderPool``);
  fan out to target and source in parallel, each asked for ``limit + offset`` hits from offset 0
  with the doc-key payload field; look the source hits' documents up in the target (so a
  document the target holds is never ranked by its source version, even when the target did not
  return it) by the migration's ``lookup`` mode (``exact``: by doc key; ``ids``: by point id);
  merge (``merge.merge`` / ``group_merge.merge_groups``); answer in Qdrant's shape with
  ``x-switchyard-merge: <report>; lookup=<mode>`` (REST header, gRPC initial metadata). A failing or
  timed-out source is skipped with its reason; a failing target (the primary) is returned as is.
* **source** (read mode ``source``): the source answers alone, inference objects naming either
  model of the migration embedded with A (``plan_inference`` with ``also``).
* **shadow**: forward to the source and return its reply untouched; the merged read runs in an
  owned background task with its own deadline, bounded in number (its source side reuses the
  served read's embedding of the query text instead of embedding it again), and records overlap@k and
  rank correlations (``shadow``); the inference texts compared go to a bounded sample
  (``query_sample``) that ``migrate eval`` draws from without ``--queries``.
* **inference** (``resolve_inference_*``): outside a migration, inference objects naming the
  model bound to the collection are embedded by the proxy and sent as dense vectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from switchyard.proxy.dataplane import in_place_reads
from switchyard.proxy.dataplane import shadow as shadow_metrics
from switchyard.proxy.dataplane.adapter_store import AdapterCache, Loaded
from switchyard.proxy.dataplane.hot_counts import HotCounts
from switchyard.proxy.dataplane.query_sample import QuerySamples
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.fanout import Embedded, FanOut, fan_out, points
from switchyard.proxy.dataplane.group_merge import GroupHits, merge_groups
from switchyard.proxy.dataplane.merge import Hit, MergeReport, merge
from switchyard.proxy.dataplane.query_codec import Rewrite, SimilarityRead, decode_rest
from switchyard.proxy.dataplane.query_codec_grpc import decode_grpc
from switchyard.proxy.dataplane.query_vectors import inference_texts, plan_inference
from switchyard.proxy.dataplane.read_transport import GrpcTransport, RestTransport, doc_key, header_safe
from switchyard.proxy.intercept.inference import check_bounds
from switchyard.proxy.intercept.routes import rest_target
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.routing import Route
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, RestCall, RestForward, RestReply

log = logging.getLogger("switchyard.reads")
Transport: TypeAlias = RestTransport | GrpcTransport
_LOWER_IS_BETTER = ("Euclid", "Manhattan")


@dataclass
class _Merged:
    body: bytes
    header: str
    keys: list[list[str]]  # per sub, canonical point ids of the merged page in order


class MergedReader:
    """Merged / shadow similarity reads; owns its shadow tasks (``aclose`` drains them)."""

    def __init__(self, pool: EmbedderPool, *, side_timeout: float = 10.0,
                 shadow_deadline: float = 5.0, shadow_max_in_flight: int = 32,
                 adapters: AdapterCache | None = None, hot: HotCounts | None = None,
                 queries: QuerySamples | None = None) -> None:
        self._pool = pool
        self._adapters = adapters  # query adapters and score calibrations (issue 15)
        self.hot = hot  # which points merged reads return (hot documents first, issue 15)
        self.queries = queries  # shadow-compared query texts, sampled by ``migrate eval``
        self.side_timeout = side_timeout
        self.shadow_deadline = shadow_deadline
        self.shadow_max_in_flight = shadow_max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    # -- entry points

    async def rest(self, call: RestCall, route: Route, migration: Migration,
                   snap: StateSnapshot, forward: RestForward) -> RestReply:
        read = decode_rest(call.method, call.path, call.body)
        if read is None:  # not decodable: the read authority answers, as without a merge
            return await RestTransport(call, _stub(call.path), forward).passthrough(route.authority)
        self._check_bounds(read, snap)
        out = await self._serve(RestTransport(call, read, forward), route, migration, snap)
        assert isinstance(out, RestReply)
        return out

    async def grpc(self, call: GrpcCall, route: Route, migration: Migration,
                   snap: StateSnapshot, forward: GrpcForward) -> GrpcReply:
        read = decode_grpc(call.method, call.request)
        if read is None:
            return await GrpcTransport(call, _stub(""), forward).passthrough(route.authority)
        self._check_bounds(read, snap)
        out = await self._serve(GrpcTransport(call, read, forward), route, migration, snap)
        assert isinstance(out, GrpcReply)
        return out

    async def resolve_inference_rest(self, call: RestCall, collection: str, snap: StateSnapshot,
                                     forward: RestForward) -> RestReply:
        read = decode_rest(call.method, call.path, call.body)
        if read is None:
            return await forward(call)
        self._check_bounds(read, snap)
        body = await self._inference_body(RestTransport(call, read, forward), collection, snap)
        return await forward(call if body is None else call.with_body(body))

    async def resolve_inference_grpc(self, call: GrpcCall, collection: str, snap: StateSnapshot,
                                     forward: GrpcForward) -> GrpcReply:
        read = decode_grpc(call.method, call.request)
        if read is None:
            return await forward(call)
        self._check_bounds(read, snap)
        body = await self._inference_body(GrpcTransport(call, read, forward), collection, snap)
        return await forward(call if body is None else call.with_request(body))

    async def in_place_rest(self, call: RestCall, m: Migration, snap: StateSnapshot,
                            forward: RestForward) -> RestReply:
        """An unmerged similarity read of in-place migration ``m``: ranked by the new vector from
        ``switch-reads`` on, by the old one before (``in_place_reads.switched_plan``)."""
        read = decode_rest(call.method, call.path, call.body)
        if read is None:
            return await forward(call)
        self._check_bounds(read, snap)
        out = await self._switched(RestTransport(call, read, forward), m, snap)
        assert isinstance(out, RestReply)
        return out

    async def in_place_grpc(self, call: GrpcCall, m: Migration, snap: StateSnapshot,
                            forward: GrpcForward) -> GrpcReply:
        read = decode_grpc(call.method, call.request)
        if read is None:
            return await forward(call)
        self._check_bounds(read, snap)
        out = await self._switched(GrpcTransport(call, read, forward), m, snap)
        assert isinstance(out, GrpcReply)
        return out

    async def _switched(self, t: Transport, m: Migration, snap: StateSnapshot) -> Any:
        cfg = in_place_reads.config(m, snap.models)
        a, b = snap.models.get(m.model_a), snap.models.get(m.model_b)
        plans = [in_place_reads.switched_plan(sub.slots, cfg, a, b, m.phase, snap.models) for sub in t.read.subs]
        vectors = {i: await self._embed_fills(snap.models[p.model], p.fills)
                   for i, p in enumerate(plans) if p.fills and p.model in snap.models}
        body = in_place_reads.switched_body(t.read, t.codec, cfg, plans, vectors, m.source)
        reply: Any = (await t.send(m.source, body))[2]
        said = "; ".join(f"[{i}] ranked by `{p.to}`" + (f" ({p.kept})" if p.kept else "")
                         for i, p in enumerate(plans))
        return t.annotate(reply, header_safe(f"in place: {said}"))

    async def aclose(self) -> None:
        """Wait for (then cancel the stragglers of) the shadow comparisons in flight."""
        if self.hot is not None:
            await self.hot.aclose()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.shadow_deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.queries is not None:
            await self.queries.aclose()

    def _check_bounds(self, read: SimilarityRead, snap: StateSnapshot) -> None:
        """400 before any embedding when the read's inference text is over the pool's limits."""
        check_bounds((t for sub in read.subs for t in inference_texts(sub.slots, snap.models)),
                     self._pool.limits)

    # -- inference outside migrations

    async def _inference_body(self, t: Transport, collection: str, snap: StateSnapshot) -> bytes | None:
        found = snap.binding_for(collection)
        spec = found[1] if found else None
        if spec is None:
            return None
        fills = [plan_inference(sub.slots, spec, snap.models) for sub in t.read.subs]
        parts = [(i, Rewrite(vectors=v)) for i, v in enumerate(await self._embed_subs(spec, fills))]
        if not any(rw.vectors for _, rw in parts):
            return None
        return t.codec.side_body(t.read, parts, t.read.collection)

    async def _embed_fills(self, spec: ModelSpec, fills: Sequence[tuple[int, str]]) -> dict[int, list[float]]:
        return (await self._embed_subs(spec, [fills]))[0]

    async def _embed_subs(self, spec: ModelSpec, fills: Sequence[Sequence[tuple[int, str]]],
                          into: Embedded | None = None) -> list[dict[int, list[float]]]:
        """Per sub-request, slot -> ``spec``'s vector of its text, from one embedding call for the
        distinct texts of all of them (a batch repeating a query embeds it once); ``into`` also
        gets the vectors by ``(spec.id, text)``."""
        texts = sorted({text for sub in fills for _, text in sub})
        if not texts:
            return [{} for _ in fills]
        vectors = await self._pool.embed(spec, texts)
        by_text = {text: vectors[i].tolist() for i, text in enumerate(texts)}
        if into is not None:
            into.update(((spec.id, text), v) for text, v in by_text.items())
        return [{slot: by_text[text] for slot, text in sub} for sub in fills]

    # -- merge and shadow

    async def _serve(self, t: Transport, route: Route, m: Migration, snap: StateSnapshot) -> Any:
        if not t.read.mergeable:  # ordered by a payload field or sampled: like any other read
            return await t.passthrough(route.authority)
        if not (route.merge or route.shadow):  # read mode source: the source answers alone
            return await self._serve_source(t, m, snap)
        if route.shadow:
            embedded: Embedded = {}
            served = await self._serve_source(t, m, snap, embedded)
            if served.ok:  # the shadow's source side reuses the served read's A embedding
                self._start_shadow(t, served, m, snap, embedded)
            return served
        merged = await self._merged(t, m, snap)
        if isinstance(merged, _Merged):
            return t.reply(merged.body, merged.header)
        return merged

    async def _serve_source(self, t: Transport, m: Migration, snap: StateSnapshot,
                            embedded: Embedded | None = None) -> Any:
        """What read mode ``source`` serves: the client's read on the source, inference resolved
        (the vectors also go into ``embedded``)."""
        spec, spec_b = snap.models.get(m.model_a), snap.models.get(m.model_b)
        if spec is None:
            return await t.passthrough(m.source)
        fills = [plan_inference(sub.slots, spec, snap.models, also=spec_b) for sub in t.read.subs]
        parts = [(i, Rewrite(v)) for i, v in enumerate(await self._embed_subs(spec, fills, embedded))]
        if not any(rw.vectors for _, rw in parts):
            return await t.passthrough(m.source)
        body = t.codec.side_body(t.read, parts, m.source)
        return (await t.send(m.source, body))[2]

    async def _merged(self, t: Transport, m: Migration, snap: StateSnapshot,
                      embedded: Embedded | None = None) -> _Merged | Any:
        """The merged answer, or the target's error reply (the primary failed); texts already
        embedded (``embedded``, by model id and text) are not embedded again."""
        started = time.perf_counter()
        if in_place_reads.is_in_place(m):  # two sides of one collection (``in_place_reads``)
            t, m = in_place_reads.sides(t, m, snap.models)
        read = t.read
        fitted = await self._adapters.get(m.id) if self._adapters is not None else None
        sides = await fan_out(t, m, snap, self._pool, self.side_timeout, m.lookup, fitted, embedded)
        if sides.error is not None:
            return t.annotate(sides.error, "target (primary) failed: its error is returned")
        spec_b = snap.models.get(m.model_b)
        higher = spec_b is None or spec_b.distance not in _LOWER_IS_BETTER
        results: list[Any] = []
        headers: list[str] = []
        keys: list[list[str]] = []
        for i in range(len(read.subs)):
            page, report, page_keys = self._merge_sub(t, i, sides, m, higher, fitted)
            results.append(page)
            headers.append(report.header() + (f"; {sides.adapted[i]}" if i in sides.adapted else ""))
            keys.append(page_keys)
        served = "+".join(s.name for s in (sides.target, sides.source)
                          if len(s.skipped) < len(read.subs))
        shadow_metrics.MERGED_READS.labels(read.protocol, served or "none").inc()
        header = headers[0] if len(headers) == 1 else " | ".join(
            f"[{i}] {h}" for i, h in enumerate(headers))
        header += f"; lookup={'in_place' if m.target == in_place_reads.NEW_SIDE else m.lookup}"
        body = t.codec.encode(read, results, time.perf_counter() - started)
        if self.hot is not None:
            self.hot.record(m.id, (k for page in keys for k in page))
        return _Merged(body, header_safe(header, limit=None), keys)

    def _merge_sub(self, t: Transport, i: int, sides: FanOut, m: Migration, higher: bool,
                   fitted: Loaded | None = None) -> tuple[Any, MergeReport, list[str]]:
        codec, read = t.codec, t.read
        sub = read.subs[i]
        target, source = sides.target, sides.source
        skipped = {s.name: s.skipped[i] for s in (target, source) if i in s.skipped}
        t_res, s_res = target.results[i] or [], source.results[i] or []
        in_target = sides.in_target if target.results[i] is not None else set()
        coverage = sides.coverage[i]

        def hits(points: Sequence[Any], side: str) -> list[Hit]:
            return [Hit(doc_key(codec, p, m.doc_key), codec.score(p), p, side) for p in points]

        def out(h: Hit) -> Any:
            return codec.prune(codec.with_score(h.point, h.score), sub, m.doc_key)

        if read.shape != "groups":
            calibration = fitted.usable_calibration() if fitted is not None and higher else None
            page, report = merge(
                hits(t_res, "target"), hits(s_res, "source"), in_target=in_target,
                limit=sub.limit, offset=sub.offset, score_threshold=sub.score_threshold,
                higher_is_better=higher, coverage=coverage, skipped=skipped, calibration=calibration,
                placement_reason=_placement_reason(fitted, higher))
            return [out(h) for h in page], report, [codec.point_id(h.point) for h in page]
        wires: dict[str, Any] = {}

        def groups(res: Sequence[Any], side: str) -> list[GroupHits]:
            made = []
            for g in res:
                key, points = codec.group_parts(g)
                wires.setdefault(key, g)
                made.append(GroupHits(key, hits(points, side), g))
            return made

        merged, report = merge_groups(
            groups(t_res, "target"), groups(s_res, "source"), in_target=in_target,
            limit=sub.limit, group_size=sub.group_size, higher_is_better=higher,
            coverage=coverage, skipped=skipped)
        threshold = sub.score_threshold
        if threshold is not None:
            kept = [(k, [h for h in hs if (h.score >= threshold if higher else h.score <= threshold)])
                    for k, hs in merged]
            merged = [(k, hs) for k, hs in kept if hs]
        page = [codec.make_group(wires[k], [out(h) for h in hs]) for k, hs in merged]
        return page, report, [codec.point_id(h.point) for _, hs in merged for h in hs]

    # -- shadow

    def _start_shadow(self, t: Transport, served: Any, m: Migration, snap: StateSnapshot,
                      embedded: Embedded) -> None:
        if len(self._tasks) >= self.shadow_max_in_flight:
            shadow_metrics.SHADOW_DONE.labels(m.logical, "dropped_full").inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(t, served, m, snap, embedded))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow(self, t: Transport, served: Any, m: Migration, snap: StateSnapshot,
                      embedded: Embedded) -> None:
        try:
            async with asyncio.timeout(self.shadow_deadline):
                merged = await self._merged(t, m, snap, embedded)
        except TimeoutError:
            shadow_metrics.SHADOW_DONE.labels(m.logical, "deadline").inc()
            return
        except Exception:  # noqa: BLE001 - a shadow read must never surface
            log.exception("shadow read on %s failed", m.logical)
            shadow_metrics.SHADOW_DONE.labels(m.logical, "failed").inc()
            return
        if not isinstance(merged, _Merged):
            shadow_metrics.SHADOW_DONE.labels(m.logical, "failed").inc()
            return
        body = served.body if isinstance(served, RestReply) else served.response
        try:
            served_pages = t.codec.parse(t.read, body or b"")
        except Exception:  # noqa: BLE001 - an answer the codec cannot read is not comparable
            log.warning("shadow read on %s: served answer not comparable", m.logical)
            shadow_metrics.SHADOW_DONE.labels(m.logical, "failed").inc()
            return
        for i, result in enumerate(served_pages):
            keys = [t.codec.point_id(p) for p in points(t, result)]
            k = len(keys) or t.read.subs[i].limit
            shadow_metrics.record(m.logical, keys, merged.keys[i], k)
        if self.queries is not None:  # the texts compared, for `migrate eval` without --queries
            self.queries.record(m.id, (s.text for sub in t.read.subs for s in sub.slots
                                       if s.is_document and s.text))


def _placement_reason(fitted: Loaded | None, higher: bool) -> str:
    """Why source hits were placed as they were (the merge header's ``placement_reason``)."""
    if fitted is None or fitted.calibration is None:
        return "no calibration fitted"
    if not fitted.enabled:
        return "adapter and calibration turned off"
    if not higher:
        return "calibration is fitted on similarities, this metric is a distance"
    return fitted.calibration.reason


def _stub(path: str) -> SimilarityRead:
    """A read with only the REST path suffix, for passing undecodable reads through."""
    found = rest_target("POST", path) if path else None
    return SimilarityRead("", "", "", "", [], None, found[1] if found else "")

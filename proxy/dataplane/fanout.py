"""The fan-out of a merged read: query vectors per side, parallel side calls, target lookups.

:func:`fan_out` returns, per sub-request and side, the hits (or why the side was skipped) and
the doc keys the target holds among the source hits. Sides are fetched in rounds: the first
asks each side for about ``limit + offset`` hits (``fetch_plan.initial_limits``); a sub-request
whose merged page is not yet exact (``fetch_plan.exact_prefix``) is fetched again with a
doubled limit on the side that limits it, at most :data:`MAX_ROUNDS` times in all.

A raw query vector of the other model is mapped by the migration's adapter when one is usable
(``adapter_store.Loaded``; ``FanOut.adapted`` says which side got an image, for the header).

A failing or timed-out source is skipped (reason recorded); a target error reply is returned
to the caller as the answer (the target is the primary of a merged read); an exception raised
by the target's forward propagates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from switchyard.proxy.dataplane import shadow as metrics
from switchyard.proxy.dataplane.adapter_store import Loaded
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.fetch_plan import COVERAGE_SAMPLE, estimate_coverage, exact_prefix, initial_limits
from switchyard.proxy.dataplane.query_codec import Rewrite
from switchyard.proxy.dataplane.query_vectors import SidePlan, find_model, plan_sides
from switchyard.proxy.dataplane.read_transport import GrpcTransport, RestTransport, doc_key, header_safe
from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.snapshot import StateSnapshot

Transport: TypeAlias = RestTransport | GrpcTransport
#: Vectors already computed for this read, by ``(model spec id, text)`` (a shadow read's served half).
Embedded: TypeAlias = dict[tuple[str, str], list[float]]
MAX_ROUNDS = 4
SIDES = ("target", "source")


@dataclass
class Side:
    """One side: per-sub results (``None`` where skipped), skip reasons, requested limits."""

    name: str
    results: list[Any]
    limits: list[int]
    skipped: dict[int, str] = field(default_factory=dict)
    vectors: dict[int, dict[int, list[float]]] = field(default_factory=dict)


@dataclass
class FanOut:
    target: Side
    source: Side
    in_target: set[str]
    coverage: list[float | None] = field(default_factory=list)  # per sub, for the merge
    error: Any = None  # the target's error reply
    adapted: dict[int, str] = field(default_factory=dict)  # sub -> header note on the adapter used


def coverage_of(m: Migration) -> float | None:
    """Share of documents in the target, from the backfill's counters (``None``: unknown)."""
    if m.backfill == "done":
        return 1.0
    total = m.counter("backfill_total")
    return min(1.0, m.counter("backfill_done") / total) if total > 0 else None


def _plans(t: Transport, m: Migration, snap: StateSnapshot,
           adapters: Loaded | None = None) -> list[tuple[SidePlan, SidePlan]]:
    a, b = snap.models.get(m.model_a), snap.models.get(m.model_b)
    if a is None or b is None:
        why = f"model spec {m.model_a if a is None else m.model_b} is not registered"
        return [(SidePlan("target", m.model_b, (), why), SidePlan("source", m.model_a, ()))
                for _ in t.read.subs]
    adaptable = (adapters is not None and adapters.usable_adapter("target") is not None,
                 adapters is not None and adapters.usable_adapter("source") is not None)
    return [plan_sides(sub.slots, a, b, m.phase, snap.models, adaptable) for sub in t.read.subs]


def _map(t: Transport, out: FanOut, plans: list[tuple[SidePlan, SidePlan]], adapters: Loaded | None) -> None:
    """Put the adapter's image of each mapped raw vector into its side's vectors."""
    if adapters is None:
        return
    for side, k in ((out.target, 0), (out.source, 1)):
        ad = adapters.usable_adapter(side.name)
        if ad is None:
            continue
        for i, plan in enumerate(p[k] for p in plans):
            if plan.skip is not None or not plan.mapped:
                continue
            slots = t.read.subs[i].slots
            for slot in plan.mapped:
                vector = slots[slot].vector
                assert vector is not None  # plan_side maps only slots that carry one
                side.vectors.setdefault(i, {})[slot] = ad.apply(np.asarray(vector, np.float32)).tolist()
            out.adapted[i] = (f"adapter={side.name}({ad.kind}, held-out cosine {ad.fit.mean_cosine:.2f})")


async def _embed(pool: EmbedderPool, side: Side, plans: list[SidePlan], snap: StateSnapshot,
                 embedded: Embedded) -> None:
    """Fill ``side.vectors`` (one embedding call per side, none for texts in ``embedded``) or
    record the skip reasons."""
    texts = sorted({text for p in plans if p.skip is None for _, text in p.fills})
    for i, plan in enumerate(plans):
        if plan.skip is not None:
            side.skipped[i] = plan.skip
    spec = find_model(plans[0].model_id, snap.models) if plans else None
    if not texts or spec is None:
        return
    by_text = {text: embedded[(spec.id, text)] for text in texts if (spec.id, text) in embedded}
    todo = [text for text in texts if text not in by_text]
    try:
        vectors = await pool.embed(spec, todo) if todo else None
    except SwitchyardError as exc:
        metrics.SIDE_SKIPPED.labels(side.name, "embedding").inc()
        for i, plan in enumerate(plans):
            if plan.fills and i not in side.skipped:
                side.skipped[i] = header_safe(f"embedding with {spec.id} failed: {exc}")
        return
    if vectors is not None:
        by_text.update((text, vectors[k].tolist()) for k, text in enumerate(todo))
    for i, plan in enumerate(plans):
        side.vectors[i] = {slot: by_text[text] for slot, text in plan.fills}


async def _send(t: Transport, side: Side, collection: str, subs: list[int], m: Migration,
                timeout: float | None) -> Any:
    """Fetch ``subs`` from one side; returns the error reply of a failed target, else None."""
    parts = [(i, Rewrite(side.vectors.get(i, {}), side.limits[i], side.name == "source", m.doc_key))
             for i in subs if i not in side.skipped]
    if not parts:
        return None
    try:
        async with asyncio.timeout(timeout):
            ok, body, reply = await t.send(collection, t.codec.side_body(t.read, parts, collection))
    except (SwitchyardError, OSError, TimeoutError) as exc:
        if side.name == "target":
            raise
        _skip(side, parts, f"{type(exc).__name__}: {exc}")
        return None
    if not ok:
        if side.name == "target":
            return reply
        _skip(side, parts, f"upstream error {_status(reply)}")
        return None
    for (i, _), result in zip(parts, t.codec.parse(t.read, body)):
        side.results[i] = result
    return None


def _skip(side: Side, parts: list[tuple[int, Rewrite]], why: str) -> None:
    metrics.SIDE_SKIPPED.labels(side.name, "failed").inc()
    for i, _ in parts:
        side.results[i] = None
        side.skipped[i] = header_safe(why)


def _status(reply: Any) -> str:
    return str(reply.status) if hasattr(reply, "status") else f"{reply.code} {reply.details}"


def points(t: Transport, result: Any) -> list[Any]:
    """The hits of one sub-request's result (groups flattened)."""
    if result is None:
        return []
    if t.read.shape != "groups":
        return list(result)
    return [p for g in result for p in t.codec.group_parts(g)[1]]


async def _source_then_lookup(t: Transport, m: Migration, out: FanOut, subs: list[int],
                              asked: set[str], timeout: float | None, lookup: str) -> None:
    """Fetch the source side, then look its hits' documents up in the target at once.

    The lookup runs while the target query may still be running (it does not depend on it),
    so it adds latency only when it is slower than the target query. Documents the target query
    already returned (when it answered first, see :func:`_target`) are not asked for again, and
    when that leaves nothing to ask the lookup call is not made.
    """
    await _send(t, out.source, m.source, subs, m, timeout)
    served = [i for i in subs if i not in out.target.skipped and out.source.results[i] is not None]
    candidates: dict[str, Any] = {}
    for i in served:
        for p in points(t, out.source.results[i]):
            candidates.setdefault(doc_key(t.codec, p, m.doc_key), p)
    missing = [p for k, p in candidates.items() if k not in out.in_target and k not in asked]
    if not missing:
        return
    asked |= set(candidates)
    try:
        out.in_target |= await t.lookup(m.target, m.doc_key, missing, by_ids=lookup == "ids")
    except (SwitchyardError, OSError, LookupError, TimeoutError) as exc:
        # without the lookup a migrated document could be ranked by its source version:
        # serve the target alone rather than break that rule
        for i in served:
            out.source.results[i] = None
            out.source.skipped[i] = header_safe(f"target lookup failed: {exc}")


async def _target(t: Transport, out: FanOut, subs: list[int], m: Migration) -> Any:
    """Fetch the target side; its hits' doc keys go into ``out.in_target`` as soon as it answers.

    Returns the target's error reply, else None.
    """
    error = await _send(t, out.target, m.target, subs, m, None)
    if error is None:
        for i in subs:
            out.in_target |= {doc_key(t.codec, p, m.doc_key) for p in points(t, out.target.results[i])}
    return error


def _needs_more(t: Transport, out: FanOut, i: int, m: Migration, known: float | None) -> bool:
    """Grow the limiting side's limit if sub ``i``'s page is not exact yet; False when done.

    Also fixes the sub's coverage for the merge (estimated from its source hits).
    """
    sub = t.read.subs[i]
    tr, sr = out.target.results[i], out.source.results[i]
    if tr is None or sr is None:
        return False
    source_keys = [doc_key(t.codec, p, m.doc_key) for p in points(t, sr)]
    out.coverage[i] = estimate_coverage(source_keys, out.in_target, known)
    if t.read.shape == "groups":
        return False
    exact = exact_prefix(
        [doc_key(t.codec, p, m.doc_key) for p in tr], source_keys,
        in_target=out.in_target, coverage=out.coverage[i],
        target_exhausted=len(tr) < out.target.limits[i], source_exhausted=len(sr) < out.source.limits[i])
    if exact.final >= sub.limit + sub.offset or not (exact.more_target or exact.more_source):
        return False
    if exact.more_target:
        out.target.limits[i] *= 2
    if exact.more_source:
        out.source.limits[i] *= 2
    return True


async def fan_out(t: Transport, m: Migration, snap: StateSnapshot, pool: EmbedderPool,
                  side_timeout: float | None, lookup: str = "exact",
                  adapters: Loaded | None = None, embedded: Embedded | None = None) -> FanOut:
    """Both sides' hits for every sub-request, and the doc keys known to be in the target.

    ``lookup`` (the migration's): ``"exact"`` finds source hits' documents in the target by a ``MatchAny`` on
    the doc-key field (any point of the document counts); ``"ids"`` retrieves the source hits'
    own point ids from the target (one cheap call; right when a document's points reach the
    target together, as mirrored writes and the backfill do per point id). ``embedded``: vectors
    this read already has, by ``(model spec id, text)``; those texts are not embedded again.
    """
    n = len(t.read.subs)
    coverage = coverage_of(m)
    limits = [
        (sub.limit, max(sub.limit, COVERAGE_SAMPLE)) if t.read.shape == "groups"
        else initial_limits(sub.limit + sub.offset, coverage) for sub in t.read.subs
    ]
    out = FanOut(Side("target", [None] * n, [lim[0] for lim in limits]),
                 Side("source", [None] * n, [lim[1] for lim in limits]), set(), [coverage] * n)
    plans = _plans(t, m, snap, adapters)
    known = embedded or {}
    await asyncio.gather(_embed(pool, out.target, [p[0] for p in plans], snap, known),
                         _embed(pool, out.source, [p[1] for p in plans], snap, known))
    _map(t, out, plans, adapters)
    pending, asked = list(range(n)), set[str]()
    for _ in range(MAX_ROUNDS):
        error, _ = await asyncio.gather(
            _target(t, out, pending, m),
            _source_then_lookup(t, m, out, pending, asked, side_timeout, lookup))
        if error is not None:
            out.error = error
            return out
        pending = [i for i in pending if _needs_more(t, out, i, m, coverage)]
        if not pending:
            break
    return out

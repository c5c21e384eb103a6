"""Similarity reads of a ``named-vector`` (in place) migration: merged inside one collection,
and rewritten to the new vector after ``switch-reads``.

**Merged** (before ``switch-reads``, read mode ``merged`` / ``shadow``): the shared fan-out
(``fanout.fan_out``) runs unchanged over a *view* of the migration whose target and source are
two sides of the one collection: the target side ranks by the new vector among the points that
have it (``has_vector: new``), the source side by the old vector over every point.
:class:`SidesTransport` turns each side's request into that (the codec rewrites ``using`` and
the filter of every sub-request and prefetch) and sends it to the real collection; its lookup
finds which of the source side's hits have the new vector (one scroll by id with
``has_vector``), so the merge drops them and places the rest by their rank in the whole
collection, exactly as for two collections. (Restricting the source side to ``must_not
has_vector: new`` instead makes the two sides disjoint, but then an old-side rank counts only
the unmigrated share and the merge over-promotes it: measured on pydocs-faq at 25 % migrated,
nDCG@10 0.410 against 0.508 source-only.)

**Switched** (``reads_switched`` and later): :func:`switched_plan` decides per sub-request
whether it is ranked by the new vector (no ``using``, or the old name: rewritten to the new
one; inference objects of registered models embedded with model B) or by the old one (a raw
vector of model A: the old vector still holds A's vectors until cleanup; the reason goes to
the ``x-switchyard-merge`` header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from qdrant_client import grpc as pb

from switchyard.proxy.dataplane.in_place import InPlace, rewrite_grpc, rewrite_rest
from switchyard.proxy.dataplane.read_transport import doc_key
from switchyard.proxy.dataplane.query_codec import ReadCodec, Rewrite, SimilarityRead
from switchyard.proxy.dataplane.query_vectors import SlotInfo, find_model, raw_vector_model
from switchyard.proxy.migration.record import COMPLETE, DUAL_WRITE, READS_SWITCHED, VERIFIED, WRITES_SWITCHED, Migration
from switchyard.proxy.migration.routing import governing
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.snapshot import StateSnapshot

KIND = "named-vector"
#: The names the sides of an in-place merged read go by inside the fan-out.
NEW_SIDE, OLD_SIDE = "\x00in-place:new", "\x00in-place:old"
SWITCHED_PHASES = frozenset({READS_SWITCHED, WRITES_SWITCHED, COMPLETE})
#: Phases in which every upsert through the proxy gets model B's vector.
WRITE_PHASES = frozenset({DUAL_WRITE, VERIFIED, READS_SWITCHED, WRITES_SWITCHED, COMPLETE})


def is_in_place(m: Migration | None) -> bool:
    return m is not None and getattr(m, "kind", "") == KIND


def config(m: Migration, models: Mapping[str, ModelSpec], *, fill_old: bool = False,
           require_old: bool = False) -> InPlace:
    """The planning settings of in-place migration ``m`` (pure): vector names from its options
    (``vector``: the new one; ``old_vector``, else the record's bound ``vector``)."""
    opts = dict(getattr(m, "options", {}) or {})
    a, b = models.get(m.model_a), models.get(m.model_b)
    names = lambda spec, mid: tuple(n for n in (mid, spec.model if spec else None) if n)  # noqa: E731
    return InPlace(new=str(opts.get("vector") or ""), old=str(opts.get("old_vector") or m.vector),
                   text_field=m.text_field, model_b=names(b, m.model_b), model_a=names(a, m.model_a),
                   fill_old=fill_old, require_old=require_old)


def write_config(m: Migration | None, models: Mapping[str, ModelSpec]) -> InPlace | None:
    """The in-place settings when upserts to ``m``'s collection must get B's vector (pure):
    from ``dual_write`` on. Until ``complete`` a point that lacks A's vector gets it too (from
    its text), so a rollback finds it on every point, also after ``switch-writes --back`` while
    clients still send B's vector alone; in ``writes_switched`` a point that lacks it and has no
    text is refused."""
    if not is_in_place(m) or m is None or m.phase not in WRITE_PHASES:
        return None
    return config(m, models, fill_old=m.phase != COMPLETE, require_old=m.phase == WRITES_SWITCHED)


def governing_in_place(snap: StateSnapshot, name: str) -> Migration | None:
    """The in-place migration governing logical name ``name``, if that is what governs it."""
    m = governing(snap.migrations.values(), name) if snap.migrations else None
    return m if is_in_place(m) else None


def write_migration(snap: StateSnapshot, name: str) -> tuple[Migration, InPlace] | None:
    """The in-place migration and settings when upserts to ``name`` must get B's vector (pure)."""
    m = governing_in_place(snap, name)
    cfg = write_config(m, snap.models)
    return None if m is None or cfg is None else (m, cfg)


def switched_migration(snap: StateSnapshot, name: str) -> Migration | None:
    """The in-place migration whose reads of ``name`` are ranked by the new vector (pure)."""
    m = governing_in_place(snap, name)
    return m if m is not None and m.phase in SWITCHED_PHASES else None


def merged_view(m: Migration) -> Migration:
    """``m`` as the shared fan-out sees an in-place merged read: two sides of one collection."""
    return replace(m, target=NEW_SIDE, source=OLD_SIDE)


def sides(t: Any, m: Migration, models: Mapping[str, ModelSpec]) -> tuple[Any, Migration]:
    """The transport and migration view a merged read of in-place migration ``m`` runs on."""
    return SidesTransport(t, config(m, models), m.source), merged_view(m)


class SidesCodec:
    """A :class:`ReadCodec` whose side bodies are the in-place sides of the real collection."""

    def __init__(self, inner: ReadCodec, cfg: InPlace, collection: str) -> None:
        self.inner, self.cfg, self.collection = inner, cfg, collection

    def side_read(self, read: SimilarityRead, side: str) -> SimilarityRead:
        """The new side: points having the new vector, ranked by it; the old side: every point
        ranked by the old vector (its hits that have the new one are then dropped by the lookup,
        so the merge places old-side hits by their rank in the whole collection, as for two
        collections; restricted to points lacking the new vector, that rank is off by the
        migrated share and bench/in_place_quality.py measured merged reads below source-only)."""
        new = side == NEW_SIDE
        to = self.cfg.new if new else self.cfg.old
        rewrite = rewrite_grpc if read.protocol == "grpc" else rewrite_rest
        subs = [replace(sub, body=rewrite(read.family, sub.body, self.cfg, to, True if new else None))
                for sub in read.subs]
        return replace(read, subs=subs)

    def side_body(self, read: SimilarityRead, parts: list[tuple[int, Rewrite]], collection: str) -> bytes:
        if collection in (NEW_SIDE, OLD_SIDE):
            return self.inner.side_body(self.side_read(read, collection), parts, self.collection)
        return self.inner.side_body(read, parts, collection)

    def __getattr__(self, name: str) -> Any:  # parse, encode, point_id, score, ...: the inner codec's
        return getattr(self.inner, name)


class SidesTransport:
    """A read transport (``read_transport``) for an in-place merged read: side names map to
    the one real collection; the lookup of source hits in the target is empty (disjoint sides)."""

    def __init__(self, inner: Any, cfg: InPlace, collection: str) -> None:
        self.inner, self.read, self.collection = inner, inner.read, collection
        self.codec = SidesCodec(inner.codec, cfg, collection)

    def _real(self, name: str) -> str:
        return self.collection if name in (NEW_SIDE, OLD_SIDE) else name

    async def send(self, collection: str, body: bytes) -> Any:
        return await self.inner.send(self._real(collection), body)

    async def passthrough(self, collection: str) -> Any:
        return await self.inner.passthrough(self._real(collection))

    async def lookup(self, collection: str, field: str, points: Sequence[Any], *, by_ids: bool = False) -> set[str]:
        """Doc keys of the old side's hits whose point has the new vector (one scroll by id)."""
        if not points:
            return set()
        new = self.codec.cfg.new
        if self.read.protocol == "grpc":
            msg = pb.ScrollPoints(
                collection_name=self.collection, limit=len(points),
                filter=pb.Filter(must=[pb.Condition(has_id=pb.HasIdCondition(has_id=[p.id for p in points])),
                                       pb.Condition(has_vector=pb.HasVectorCondition(has_vector=new))]),
                with_payload=pb.WithPayloadSelector(include=pb.PayloadIncludeSelector(fields=[field])),
                with_vectors=pb.WithVectorsSelector(enable=False))
            found: Any = (await self.inner._unary("Scroll", msg, pb.ScrollResponse)).result
        else:
            body = {"filter": {"must": [{"has_id": [p.get("id") for p in points]}, {"has_vector": new}]},
                    "limit": len(points), "with_payload": [field], "with_vector": False}
            found = (await self.inner._post(self.collection, "/points/scroll", body))["points"]
        return {doc_key(self.inner.codec, p, field) for p in found}

    def reply(self, body: bytes, header: str) -> Any:
        return self.inner.reply(body, header)

    def annotate(self, reply: Any, header: str) -> Any:
        return self.inner.annotate(reply, header)


# ---------------------------------------------------------------- after switch-reads


@dataclass(frozen=True, slots=True)
class SwitchedSub:
    """One sub-request of a single-vector read: ranked by vector ``to`` (of model ``model``),
    with ``model``'s embedding of these (slot, text) fills; ``kept`` says why it is not ranked
    by the phase's vector (empty when it is)."""

    to: str
    model: str
    fills: tuple[tuple[int, str], ...] = ()
    kept: str = ""


def switched_plan(slots: Sequence[SlotInfo], cfg: InPlace, a: ModelSpec | None, b: ModelSpec | None,
                  phase: str, models: Mapping[str, ModelSpec]) -> SwitchedSub:
    """How a sub-request with these vector slots is served when it is not merged (pure): by the
    new vector from ``switch-reads`` on, by the old one before; a raw query vector is ranked by
    the vector of its own model (A's until cleanup, B's where present); inference objects of
    registered models get the chosen vector's model's embedding of their text."""
    to_new, kept = phase in SWITCHED_PHASES, ""
    for slot in slots:
        if slot.is_document or slot.dims is None or a is None or b is None:
            continue
        owner_new = raw_vector_model(slot.dims, a, b, phase) == b.id
        if owner_new != to_new:
            to_new = owner_new
            name = cfg.new if owner_new else cfg.old
            kept = f"raw query vector of model {b.id if owner_new else a.id} ({slot.dims} dims): ranked by `{name}`"
        break
    fills = tuple((i, s.text or "") for i, s in enumerate(slots)
                  if s.is_document and find_model(s.model, models) is not None)
    model = (b.id if b else "") if to_new else (a.id if a else "")
    return SwitchedSub(cfg.new if to_new else cfg.old, model, fills, kept)


def read_migration(snap: StateSnapshot, name: str) -> Migration | None:
    """The in-place migration whose unmerged similarity reads of ``name`` the proxy ranks by
    one vector (``switched_plan``): every phase but merged / shadow reads (pure)."""
    return governing_in_place(snap, name)


def switched_body(read: SimilarityRead, codec: ReadCodec, cfg: InPlace, plans: Sequence[SwitchedSub],
                  vectors: Mapping[int, Mapping[int, list[float]]], collection: str) -> bytes:
    """The client's read with every sub-request ranked per its plan (``vectors``: per sub, the
    embedded fills), for the physical ``collection``."""
    rewrite = rewrite_grpc if read.protocol == "grpc" else rewrite_rest
    subs = [replace(sub, body=rewrite(read.family, sub.body, cfg, plan.to)) for sub, plan in zip(read.subs, plans)]
    parts = [(i, Rewrite(vectors=dict(vectors.get(i, {})))) for i in range(len(subs))]
    return codec.side_body(replace(read, subs=subs), parts, collection)

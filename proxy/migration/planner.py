"""``migrate plan``: validation and estimates as pure functions over gathered facts.

The service gathers :class:`PlanFacts` (collection info, a sample of source points, the
registry, the active migrations, an optional embedder probe, the doctor's bounded scan of the
source); :func:`validate` returns every reason to refuse and :func:`estimate` the numbers an
operator decides on. Nothing here does I/O.

Shared plan options (every kind; kept in the record's ``options`` beside the kind's own, see
:data:`SHARED_OPTIONS`): ``order`` (the backfill's visiting order, :func:`plan_order`),
``require_eval`` / ``eval_max_age`` (``switch-reads`` needs a fresh GO, ``eval_guard``).

The doctor's findings (:func:`doctor_findings`) **block** the plan, unless ``force``, when they
make the migration give wrong answers without anything failing (a mixed index: points of
another model or of several, another fingerprint, vectors of the wrong size) or keep it from
finishing (points without the text a re-embedding needs: the backfill skips them and verify
finds them missing); everything else **degrades** (reported, the plan proceeds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from switchyard.proxy.dataplane.hot_docs import ORDERS, Order, backfill_order
from switchyard.proxy.migration.phases import active_limit
from switchyard.proxy.migration.record import LOOKUP_MODES, Migration
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.registry import vector_misfit
from switchyard.proxy.state.records import Binding

#: Rough bytes per token for the cost and volume estimate (English text, BPE tokenizers).
BYTES_PER_TOKEN = 4.0
#: Plan options of every kind, stored in the record's ``options`` beside the kind's own.
SHARED_OPTIONS = ("order", "require_eval", "eval_max_age")
#: Doctor findings that block a plan (module docstring); ``no_text`` only for embedding plans.
BLOCKING = ("other_model", "mixed_models", "wrong_fingerprint", "wrong_size", "no_text")
#: Kinds that re-embed every point from its text (a split re-embeds only the targets on another
#: model and copies the rest: missing text there degrades, it does not block)
TEXT_KINDS = ("reembed", "named-vector")


@dataclass(frozen=True, slots=True)
class PlanRequest:
    logical: str
    to_model: str = ""  # model B (kinds that carry vectors over default to A)
    target: str | None = None
    doc_key: str = "doc_id"
    text_field: str = "text"
    copy_vectors: bool = False
    mirror: str = "sync"
    lookup: str = "exact"  # merged reads' doc-key lookup: exact (by doc key) or ids
    text_fetcher: str | None = None
    throttle: float | None = None  # points per second; None: unthrottled, 0: paused
    dry_run: bool = False
    #: the migration kind (``switchyard.proxy.migration.kinds``) and its options (a JSON map)
    kind: str = "reembed"
    options: Mapping[str, Any] = field(default_factory=dict)
    #: shared options (module docstring): the backfill order (None: hot when counts exist),
    #: whether switch-reads needs a fresh GO eval and how fresh (seconds; None: the default)
    order: str | None = None
    require_eval: bool = False
    eval_max_age: float | None = None
    #: plan despite the doctor's blocking findings (they are then reported as forced)
    force: bool = False

    def __post_init__(self) -> None:
        """Shared options given inside ``options`` (gRPC's Struct, ``--option order=id``) move
        to their own fields, so ``options`` holds only the kind's."""
        if isinstance(self.options, Mapping) and any(k in self.options for k in SHARED_OPTIONS):
            for key in SHARED_OPTIONS:
                if key in self.options and getattr(self, key) in (None, False):
                    object.__setattr__(self, key, self.options[key])
            object.__setattr__(self, "options", {k: v for k, v in self.options.items()
                                                 if k not in SHARED_OPTIONS})

    def shared_options(self) -> dict[str, Any]:
        """The shared options as the record keeps them (only those set)."""
        out: dict[str, Any] = {}
        if self.order is not None:
            out["order"] = self.order
        if self.require_eval:
            out["require_eval"] = True
        if self.eval_max_age is not None:
            out["eval_max_age"] = float(self.eval_max_age)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanRequest:
        names = set(cls.__dataclass_fields__)
        out = cls(**{k: v for k, v in data.items() if k in names and v is not None})
        if not isinstance(out.options, Mapping):
            raise TypeError(f"options must be an object, got {out.options!r}")
        return out


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """The source as seen by the service. ``vectors`` is ``params.vectors`` of its config."""

    collection: str
    is_alias: bool
    exists: bool
    vectors: Any = None
    points: int = 0
    sampled: int = 0
    missing_text: int = 0
    text_bytes: int = 0
    info: Any = None  # the source's CollectionInfo (its layout, for the kinds)


@dataclass(frozen=True, slots=True)
class PlanFacts:
    request: PlanRequest
    source: SourceFacts
    binding: Binding | None
    model_a: ModelSpec | None
    model_b: ModelSpec | None
    target: str
    target_exists: bool
    active: Sequence[Migration] = ()
    max_active: int = 3
    throughput: float | None = None  # texts per second of B's embedder, from a probe
    #: the doctor's report on the source (``Report.to_dict()``); None: it did not run
    doctor: Mapping[str, Any] | None = None
    #: hot-document counts the new migration starts with (earlier migrations of the source)
    hot_counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Estimate:
    points: int
    sampled: int
    missing_text: int
    missing_share: float
    text_bytes: int
    tokens: int
    throughput: float | None
    rate: float | None
    eta_seconds: float | None
    cost: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_target(source: str, model_b: str) -> str:
    """``<source>__<model id>`` with characters Qdrant names dislike replaced by ``_``."""
    return f"{source}__{re.sub(r'[^A-Za-z0-9_-]+', '_', model_b)}"


def validate(f: PlanFacts) -> list[str]:
    """Every reason to refuse the plan, in a stable order (empty: the plan may proceed): the
    shared ones (source, binding, knobs, target name, activity) and the kind's own."""
    from switchyard.proxy.migration import kinds

    r, reasons = f.request, []
    if r.kind not in kinds.KINDS:
        return [f"unknown migration kind {r.kind!r} (one of {', '.join(sorted(kinds.KINDS))})"]
    if not f.source.exists:
        return [f"collection `{r.logical}` doesn't exist"]
    kind = kinds.get(r.kind)
    if f.binding is None or f.model_a is None:
        reasons.append(f"`{r.logical}` is not bound to a model; run `switchyard bind` first")
    reasons += _knob_reasons(r)
    reasons += kind.option_reasons(r.options)
    reasons += _target_reasons(f)
    reasons += kind.plan_reasons(f)
    reasons += _activity_reasons(f)
    if not r.force:  # the sample's missing-text reason (above) already covers what it saw
        reasons += [d["text"] + "; pass --force to plan anyway" for d in doctor_findings(f)
                    if d["severity"] == "blocks" and not (d["code"] == "no_text" and f.source.missing_text)]
    return reasons


def reembed_reasons(f: PlanFacts) -> list[str]:
    """The ``reembed`` kind's reasons: B registered and different from A, the bound vector
    mappable, texts present (or vectors copied / a text fetcher)."""
    r, reasons = f.request, []
    if not r.to_model:
        reasons.append(f"kind {r.kind} needs --to-model")
    elif f.model_b is None:
        reasons.append(f"model `{r.to_model}` is not registered")
    if f.model_a is not None and f.model_b is not None and f.model_a.id == f.model_b.id:
        reasons.append(f"`{r.logical}` is already on model `{f.model_b.id}`")
    return reasons + _vector_reasons(f) + _text_reasons(f)


def _knob_reasons(r: PlanRequest) -> list[str]:
    out, t = [], r.throttle
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0):
        out.append(f"throttle must be a number >= 0 points per second (0 pauses), or absent for "
                   f"unthrottled; got {t!r}")
    if r.lookup not in LOOKUP_MODES:
        out.append(f"lookup must be one of {', '.join(LOOKUP_MODES)}, got {r.lookup!r}")
    if r.order is not None and r.order not in ORDERS:
        out.append(f"order must be one of {', '.join(ORDERS)} (omit it for hot when counts exist), "
                   f"got {r.order!r}")
    if not isinstance(r.require_eval, bool):
        out.append(f"require_eval must be true or false, got {r.require_eval!r}")
    a = r.eval_max_age
    if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or a <= 0):
        out.append(f"eval_max_age must be a number of seconds > 0, got {a!r}")
    return out


def _target_reasons(f: PlanFacts) -> list[str]:
    from switchyard.proxy.migration import kinds

    if getattr(kinds.KINDS.get(f.request.kind), "in_place", False):  # target is the source
        return [] if f.target == f.source.collection else [
            f"kind {f.request.kind} works in place: the target is `{f.source.collection}` itself"]
    if f.target.startswith("_switchyard"):
        return [f"target name `{f.target}` is reserved"]
    if f.target in (f.source.collection, f.request.logical):
        return [f"target `{f.target}` is the source itself"]
    if f.target_exists:
        return [f"target collection `{f.target}` already exists; pass another --target"]
    return []


def _vector_reasons(f: PlanFacts) -> list[str]:
    if f.binding is None or f.model_a is None:
        return []
    vectors = f.source.vectors
    params = vectors.get(f.binding.vector) if isinstance(vectors, dict) else vectors
    if params is not None and getattr(params, "multivector_config", None) is not None:
        return [f"vector `{f.binding.vector}` is a multivector; only dense vectors can be mapped"]
    why = vector_misfit(vectors, f.binding, f.model_a)
    if why:
        return [f"source vectors cannot be mapped: {why}"]
    if f.request.copy_vectors and f.model_b is not None and f.model_a.space() != f.model_b.space():
        return [f"--copy-vectors needs model `{f.model_b.id}` to share the vector space of "
                f"`{f.model_a.id}` ({f.model_b.space()} vs {f.model_a.space()})"]
    return []


def _text_reasons(f: PlanFacts) -> list[str]:
    """The sample's missing texts (the doctor's scan, from the same first points, may find more:
    :func:`validate` adds its reason only when the sample found none)."""
    s, r = f.source, f.request
    if not s.missing_text or r.copy_vectors or r.text_fetcher or r.force:
        return []
    share = s.missing_text / s.sampled
    ids: list[Any] = next((d["sample_ids"] for d in doctor_findings(f) if d["code"] == "no_text"), [])
    seen = f" (sample ids {', '.join(map(str, ids))})" if ids else ""
    return [f"{s.missing_text} of {s.sampled} sampled points ({share:.0%}) lack the text field "
            f"`{r.text_field}`{seen}; pass --copy-vectors or configure a text fetcher"]


def _activity_reasons(f: PlanFacts) -> list[str]:
    names = {f.request.logical, f.source.collection, f.target}
    out = [f"migration `{m.id}` ({m.phase}) is already active on `{m.logical}`"
           for m in f.active if m.active and names & {m.logical, m.source, m.target}]
    why = active_limit(sum(1 for m in f.active if m.active), f.max_active)
    return out + ([why] if why else [])


def estimate(f: PlanFacts) -> Estimate:
    """Points, text volume (sample average times count), tokens, rate, ETA and cost."""
    s = f.source
    with_text = max(s.sampled - s.missing_text, 0)
    avg = s.text_bytes / with_text if with_text else 0.0
    text_bytes = int(avg * s.points * (with_text / s.sampled)) if s.sampled else 0
    tokens = int(text_bytes / BYTES_PER_TOKEN)
    throttle = f.request.throttle if isinstance(f.request.throttle, (int, float)) else None
    limits = [x for x in (throttle, f.throughput or None) if x is not None]
    rate = min(limits) if limits else None  # 0: paused by the plan's throttle, no ETA
    eta = s.points / rate if rate else (0.0 if s.points == 0 else None)
    price = f.model_b.price_per_million_tokens if f.model_b else None
    from switchyard.proxy.migration import kinds

    embeds = f.request.kind in kinds.KINDS and kinds.get(f.request.kind).embeds
    cost = None if price is None or f.request.copy_vectors or not embeds else tokens / 1e6 * price
    share = s.missing_text / s.sampled if s.sampled else 0.0
    return Estimate(s.points, s.sampled, s.missing_text, share, text_bytes, tokens,
                    f.throughput, rate, eta, cost)


def plan_order(requested: str | None, kind: str, counts: Mapping[str, int]) -> Order:
    """The backfill order a plan asks for (``None``: the default) and what it gives now (pure):
    the decision the backfill takes when it plans its partitions (``hot_docs.backfill_order``,
    ``backfill.leases.visiting_order``), worded for the plan and for status. ``--order hot``
    without counts is accepted: id order until there are."""
    if kind not in ("reembed", "copy"):  # in place and split have their own copiers
        return Order("id", (), f"id order: kind {kind} copies in id order")
    if requested not in (None, *ORDERS):
        return Order("id", (), f"id order: unknown order {requested!r}")
    got = backfill_order(requested, counts)
    if got.order == "hot" or requested == "id":
        return got
    asked = "--order hot asked, but " if requested == "hot" else ""
    return Order("id", (), f"id order: {asked}no hot-document counts yet; id order until there are "
                           "(the backfill decides when it plans its partitions)")


def doctor_findings(f: PlanFacts) -> list[dict[str, Any]]:
    """The doctor's findings on the source as this plan sees them (pure; module docstring):
    each with ``code``, ``severity`` (``blocks`` or ``degrades``; info findings are left out),
    ``count``, ``sample_ids`` and a sentence naming what the migration would suffer."""
    d = f.doctor
    if not d:
        return []
    r = f.request
    from switchyard.proxy.migration import kinds

    kind = kinds.KINDS.get(r.kind)
    reads_text = bool(kind is not None and kind.embeds and not r.copy_vectors and not r.text_fetcher)
    scope = "" if d.get("complete") else f" of {d.get('points', 0)} scanned"
    out = []
    for x in d.get("findings") or ():
        code, count, ids = str(x.get("code")), int(x.get("count") or 0), list(x.get("sample_ids") or ())
        if not count or x.get("severity") == "info" or (code == "no_text" and not reads_text):
            continue
        sample = ", ".join(map(str, ids))
        if code == "no_text":
            text = (f"{count}{scope} point(s) lack the text field `{r.text_field}`: they cannot be "
                    f"re-embedded (sample ids {sample}); add the text, pass --copy-vectors or "
                    "configure a text fetcher")
        elif code == "mixed_models":
            models = ", ".join(f"{m} ({n})" for m, n in sorted(dict(d.get("models") or {}).items()))
            text = (f"mixed index: {count} models' metadata in `{d.get('collection')}` ({models}): "
                    "merged reads, the adapter, calibration and the eval would compare scores of "
                    "different models")
        elif code == "other_model":
            text = (f"mixed index: {count}{scope} point(s) stamped by another model than "
                    f"`{d.get('model')}` (sample ids {sample}): {x.get('advice')}")
        else:
            text = f"{count}{scope} {x.get('title')} (sample ids {sample}): {x.get('advice')}"
        blocks = code in BLOCKING and (code != "no_text" or r.kind in TEXT_KINDS)
        severity = "blocks" if blocks else "degrades"
        out.append({"code": code, "severity": severity, "count": count, "sample_ids": ids, "text": text})
    return out

"""Merging mixed-version search results by document: the target version wins.

Pure functions, no I/O. During a migration a similarity read fans out to the source (model A)
and the target (model B). The merged answer keeps, per document (the doc key, or the point id
when the doc key is the id):

1. a document present in the target is ranked only by its target version: source hits of such
   documents are dropped, even when the target did not return them (the executor looks their
   keys up in the target and passes them as ``in_target``);
2. source-only hits are placed on the target's score scale, by a :class:`Calibration` learned
   during the backfill when one exists, else by *estimated global rank*: while only a share
   ``coverage`` of the documents is in the target, the target's i-th hit stands for about rank
   ``(i + 1) / coverage`` of the whole corpus, and the source's j-th hit (counted before any
   drops) for rank ``j + 1``. A target hit among the target's first :data:`ESTIMATE_DEPTH` that
   the source returned too is placed by the better of two estimates: its own, and the source's
   rank discounted by the share not yet migrated, ``(j + 1) / (1 - coverage)`` (model A has
   judged the whole corpus, B only ``coverage`` of it, so A's opinion of a migrated document
   counts while B's view is partial and fades as the target fills; at full coverage B alone
   decides). The depth is fixed and the reader always fetches at least that many target hits
   (``fetch_plan``), so a document is placed the same way on every page of a query: without
   it, a document the target ranks deep would move up once a later page fetched it. Both lists are interleaved on that common
   axis, and each source hit, and each target hit moved up by A's estimate, gets a score
   interpolated between the target hits around it, so the page stays sorted by score. ``coverage`` is the backfill's progress when known, else estimated from the share of
   source hits whose documents are already in the target. (Interleaving rank for rank instead
   over-promotes a sparsely filled target: measured on pydocs-faq at 25 % migrated it fell
   below source-only quality; see ``docs/quality.md``);
3. then ordering (higher is better, or lower for distance metrics), ``score_threshold``,
   ``offset`` and ``limit``.

Each merge also reports what it did (:class:`MergeReport`) for the debug header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


#: Target hits this deep or deeper keep their own rank estimate (module docstring, 2).
ESTIMATE_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Hit:
    """One scored point: ``key`` is its document key (canonical id string when none)."""

    key: str
    score: float
    point: Any = None  # the wire form of the point, returned as is
    side: str = "target"  # "target" | "source"


class Calibration(Protocol):
    def to_target(self, score: float) -> float: ...


@dataclass(frozen=True, slots=True)
class LinearCalibration:
    """``target ≈ a * source + b``, fitted on sampled (source, target) score pairs."""

    a: float
    b: float

    def to_target(self, score: float) -> float:
        return self.a * score + self.b


@dataclass(frozen=True, slots=True)
class MergeReport:
    target_hits: int
    source_hits: int
    source_dropped_in_target: int
    source_duplicates: int
    placement: str  # "calibration" | "rank"
    returned: int
    skipped: dict[str, str] = field(default_factory=dict)  # side -> reason
    placement_reason: str = ""  # why this placement (a calibration's fit, or why none)

    def header(self) -> str:
        parts = [
            f"target={self.target_hits}", f"source={self.source_hits}",
            f"source_dropped={self.source_dropped_in_target}", f"placement={self.placement}",
            f"returned={self.returned}",
        ]
        if self.placement_reason:
            parts.append(f"placement_reason={self.placement_reason}")
        parts += [f"skipped_{side}={reason}" for side, reason in sorted(self.skipped.items())]
        return "; ".join(parts)


def fetch_limit(limit: int, offset: int) -> int:
    """How many hits to ask each side for, so the merged page is exact after dedup and drops."""
    return limit + offset


def merge(
    target: Sequence[Hit],
    source: Sequence[Hit],
    *,
    in_target: Iterable[str] = (),
    limit: int,
    offset: int = 0,
    score_threshold: float | None = None,
    higher_is_better: bool = True,
    calibration: Calibration | None = None,
    coverage: float | None = None,
    skipped: dict[str, str] | None = None,
    placement_reason: str = "",
) -> tuple[list[Hit], MergeReport]:
    """Merge two ranked lists (each best first); returns the page and what happened."""
    target = _dedup(target)
    target_keys = {h.key for h in target} | set(in_target)
    unique_source = _dedup(source)
    survivors = [(j, h) for j, h in enumerate(unique_source) if h.key not in target_keys]
    if calibration is not None:
        placed = [replace(h, score=calibration.to_target(h.score), side="source") for _, h in survivors]
        merged = sorted(
            [*target, *placed],
            # ties: the target version first, then the original order
            key=lambda h: (-h.score if higher_is_better else h.score, h.side != "target"),
        )
    else:
        share = coverage if coverage is not None else _coverage(unique_source, target_keys)
        rank = {h.key: j for j, h in enumerate(unique_source)}
        merged = _interleave(target, survivors, share, higher_is_better, rank)
    if score_threshold is not None:
        merged = [h for h in merged if _passes(h.score, score_threshold, higher_is_better)]
    page = merged[offset: offset + limit]
    report = MergeReport(
        target_hits=len(target),
        source_hits=len(source),
        source_dropped_in_target=len(unique_source) - len(survivors),
        source_duplicates=len(source) - len(unique_source),
        placement="calibration" if calibration is not None else "rank",
        returned=len(page),
        skipped=dict(skipped or {}),
        placement_reason=placement_reason,
    )
    return page, report


def _dedup(hits: Sequence[Hit]) -> list[Hit]:
    """Keep each document's best (first) hit: a document can have several points (chunks)."""
    seen: set[str] = set()
    out: list[Hit] = []
    for hit in hits:
        if hit.key not in seen:
            seen.add(hit.key)
            out.append(hit)
    return out


def _coverage(source: list[Hit], in_target: set[str]) -> float:
    """Share of documents already in the target, estimated from the source's hits (smoothed)."""
    found = sum(1 for h in source if h.key in in_target)
    return (found + 0.5) / (len(source) + 1.0)


def target_rank(i: int, j: int | None, share: float) -> float:
    """The estimated global rank of the target's ``i``-th hit, which the source returned at
    ``j`` (``None``: not among the source's hits), while ``share`` of the documents are in the
    target (module docstring, 2; ``fetch_plan.exact_prefix`` counts with it too)."""
    own = (i + 1) / share
    if j is None or i >= ESTIMATE_DEPTH or share >= 1.0:
        return own
    return min(own, (j + 1) / (1.0 - share))


def _interleave(
    target: list[Hit], survivors: list[tuple[int, Hit]], coverage: float, higher_is_better: bool,
    source_rank: dict[str, int] | None = None,
) -> list[Hit]:
    """Order both lists by estimated global rank (module docstring, 2); give source hits, and
    target hits placed by the source's estimate, interpolated target scores."""
    share = min(1.0, max(coverage, 1e-6))
    ranked: list[tuple[float, int, Hit, bool]] = []
    for i, h in enumerate(target):
        at = target_rank(i, (source_rank or {}).get(h.key), share)
        ranked.append((at, 0, h, at == (i + 1) / share))  # anchored: placed by its own score
    ranked += [(j + 1.0, 1, h, False) for j, h in survivors]
    ranked.sort(key=lambda item: (item[0], item[1]))
    if not target:
        return [replace(h, side="source") for _, _, h, _ in ranked]
    return _rescore([h for _, _, h, _ in ranked], [a for _, _, _, a in ranked], _step(target, higher_is_better))


def _rescore(ordered: list[Hit], anchored: list[bool], step: float) -> list[Hit]:
    """Hits that are not anchors (source hits, and target hits moved up by the source's
    estimate) take a score between the anchors around them (monotone page); anchors are the
    target hits at their own estimate, whose order is their score order. A hit keeps its side:
    a moved target hit is still the target's version."""
    out: list[Hit] = []
    anchors = [i for i, a in enumerate(anchored) if a]
    if not anchors:  # every target hit moved up: the best placed one keeps its score
        anchors = [next(i for i, h in enumerate(ordered) if h.side == "target")]
        anchored = [i == anchors[0] for i in range(len(ordered))]
    for i, hit in enumerate(ordered):
        if anchored[i]:
            out.append(hit)
            continue
        before = [k for k in anchors if k < i]
        after = [k for k in anchors if k > i]
        if before and after:
            lo, hi = ordered[before[-1]], ordered[after[0]]
            frac = (i - before[-1]) / (after[0] - before[-1])
            score = lo.score + (hi.score - lo.score) * frac
        elif after:
            score = ordered[after[0]].score + step * (after[0] - i)
        else:
            score = ordered[before[-1]].score - step * (i - before[-1])
        out.append(replace(hit, score=score, side=hit.side if hit.side == "target" else "source"))
    return out


def _step(target: list[Hit], higher_is_better: bool) -> float:
    """A small, direction-aware score decrement for source hits ranked past the target's end."""
    spread = abs(target[0].score - target[-1].score)
    magnitude = (spread / len(target)) if spread > 0 else 1e-6
    return magnitude if higher_is_better else -magnitude


def _passes(score: float, threshold: float, higher_is_better: bool) -> bool:
    return score >= threshold if higher_is_better else score <= threshold

"""Merging mixed-version search results by document: the target version wins.

Pure functions, no I/O. During a migration a similarity read fans out to the source (model A)
and the target (model B). The merged answer keeps, per document (the doc key, or the point id
when the doc key is the id):

1. a document present in the target is ranked only by its target version: source hits of such
   documents are dropped, even when the target did not return them (the executor looks their
   keys up in the target and passes them as ``in_target``);
2. source-only hits are placed on the target's score scale, by a :class:`Calibration` learned
   during the backfill when one exists, else by rank: the i-th surviving source hit takes the
   score of the target list at the same rank (below the last target hit when it runs out), so
   the two lists interleave by rank;
3. then ordering (higher is better, or lower for distance metrics), ``score_threshold``,
   ``offset`` and ``limit``.

Each merge also reports what it did (:class:`MergeReport`) for the debug header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


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

    def header(self) -> str:
        parts = [
            f"target={self.target_hits}", f"source={self.source_hits}",
            f"source_dropped={self.source_dropped_in_target}", f"placement={self.placement}",
            f"returned={self.returned}",
        ]
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
    skipped: dict[str, str] | None = None,
) -> tuple[list[Hit], MergeReport]:
    """Merge two ranked lists (each best first); returns the page and what happened."""
    target = _dedup(target)
    target_keys = {h.key for h in target} | set(in_target)
    unique_source = _dedup(source)
    survivors = [h for h in unique_source if h.key not in target_keys]
    placed = _place(survivors, target, calibration, higher_is_better)
    merged = sorted(
        [*target, *placed],
        # ties: the target version first, then the original order
        key=lambda h: (-h.score if higher_is_better else h.score, h.side != "target"),
    )
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


def _place(
    survivors: list[Hit], target: list[Hit], calibration: Calibration | None,
    higher_is_better: bool,
) -> list[Hit]:
    if calibration is not None:
        return [replace(h, score=calibration.to_target(h.score), side="source") for h in survivors]
    if not target:
        return [replace(h, side="source") for h in survivors]
    step = _step(target, higher_is_better)
    placed = []
    for rank, hit in enumerate(survivors):
        if rank < len(target):
            score = target[rank].score
        else:
            score = target[-1].score - step * (rank - len(target) + 1)
        placed.append(replace(hit, score=score, side="source"))
    return placed


def _step(target: list[Hit], higher_is_better: bool) -> float:
    """A small, direction-aware score decrement for source hits ranked past the target's end."""
    spread = abs(target[0].score - target[-1].score)
    magnitude = (spread / len(target)) if spread > 0 else 1e-6
    return magnitude if higher_is_better else -magnitude


def _passes(score: float, threshold: float, higher_is_better: bool) -> bool:
    return score >= threshold if higher_is_better else score <= threshold

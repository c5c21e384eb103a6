"""Merging grouped search results (``.../groups``) with the same rules as ``merge.merge`` (pure).

A group is ``(group key, hits best first)``. Groups of both sides are flattened into hits keyed
by ``(group, document)`` and merged by :func:`switchyard.proxy.dataplane.merge.merge`, with every document
known to be in the target (returned by it, or found by the executor's lookup) marked in the
target for *every* group, so a source hit never represents a document the target holds, even
when the target file placed it in another group. The merged hits are then regrouped: groups
ordered by their best hit, each keeping at most ``group_size`` hits, at most ``limit`` groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from switchyard.proxy.dataplane.merge import Calibration, Hit, MergeReport, merge

_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class GroupHits:
    key: str
    hits: Sequence[Hit]  # best first, keys are document keys
    wire: Any = None


def _flatten(groups: Sequence[GroupHits], higher_is_better: bool) -> list[Hit]:
    flat = [Hit(f"{g.key}{_SEP}{h.key}", h.score, (g.key, h), h.side) for g in groups for h in g.hits]
    flat.sort(key=lambda h: -h.score if higher_is_better else h.score)
    return flat


def merge_groups(
    target: Sequence[GroupHits],
    source: Sequence[GroupHits],
    *,
    in_target: Iterable[str] = (),
    limit: int,
    group_size: int,
    higher_is_better: bool = True,
    calibration: Calibration | None = None,
    coverage: float | None = None,
    skipped: dict[str, str] | None = None,
) -> tuple[list[tuple[str, list[Hit]]], MergeReport]:
    """Merged groups ``(key, hits)`` (hits carry their rescored scores) and the report."""
    group_keys = {g.key for g in (*target, *source)}
    docs = {h.key for g in target for h in g.hits} | set(in_target)
    marked = {f"{g}{_SEP}{d}" for g in group_keys for d in docs}
    flat_t, flat_s = _flatten(target, higher_is_better), _flatten(source, higher_is_better)
    total = len(flat_t) + len(flat_s)
    merged, report = merge(
        flat_t, flat_s, in_target=marked, limit=max(total, 1), higher_is_better=higher_is_better,
        calibration=calibration, coverage=coverage, skipped=skipped,
    )
    out: dict[str, list[Hit]] = {}
    for hit in merged:
        gkey, original = hit.point
        bucket = out.setdefault(gkey, [])
        if len(bucket) < group_size:
            bucket.append(Hit(original.key, hit.score, original.point, hit.side))
    page = list(out.items())[:limit]
    returned = sum(len(hits) for _, hits in page)
    return page, MergeReport(
        report.target_hits, report.source_hits, report.source_dropped_in_target,
        report.source_duplicates, report.placement, returned, report.skipped,
    )

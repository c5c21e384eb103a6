"""How many hits to fetch per side so a merged page is exact (pure).

``merge.merge`` places source-only hits by estimated global rank: the target's i-th hit stands
for rank ``(i + 1) / coverage``, the source's j-th (deduplicated, drops counted) for ``j + 1``,
and a target hit within ``merge.ESTIMATE_DEPTH`` that the source returned at j for the better of
that and ``(j + 1) / (1 - coverage)``; the target side is always asked for at least that depth,
so every page of a query places a document alike.
Fetching ``limit + offset`` from each side is therefore not always enough: when many source
hits are dropped (their documents are in the target), fewer than ``limit + offset`` merged
items are known to precede every hit not fetched yet, and a later page could then repeat or
skip a document. :func:`exact_prefix` counts the merged items that are final (no unfetched hit
of either side can rank before them); the reader fetches more from the limiting side until the
page is covered or a side is exhausted. The rank formulas mirror ``merge._interleave``; keep the
two in step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from switchyard.proxy.dataplane.merge import ESTIMATE_DEPTH, target_rank


def _unique(keys: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for key in keys:
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


#: Source hits the coverage estimate looks at: a fixed number, so every page of one query
#: uses the same estimate (the source side always fetches at least this many).
COVERAGE_SAMPLE = 16


def initial_limits(needed: int, coverage: float | None) -> tuple[int, int]:
    """(target, source) first fetch: ``needed`` each (the target at least ``ESTIMATE_DEPTH``),
    a margin more from the source."""
    share = 0.5 if coverage is None else coverage
    return max(needed, ESTIMATE_DEPTH), max(COVERAGE_SAMPLE, needed + math.ceil(needed * share / 2) + 2)


def estimate_coverage(source: Sequence[str], in_target: Iterable[str], known: float | None) -> float:
    """Share of documents in the target for placing source hits.

    Estimated from the first :data:`COVERAGE_SAMPLE` distinct source hits (the share whose
    documents the target holds, smoothed like ``merge``'s own estimate), and never below
    ``known`` (the backfill's progress): the counters do not see mirrored writes, so alone they
    understate a target that clients have been writing to.
    """
    sample = _unique(source)[:COVERAGE_SAMPLE]
    held = set(in_target)
    estimate = (sum(1 for k in sample if k in held) + 0.5) / (len(sample) + 1.0)
    return max(estimate, known or 0.0)


@dataclass(frozen=True, slots=True)
class Exactness:
    final: int  # leading merged items that are final
    more_target: bool  # fetching more target hits would extend the final prefix
    more_source: bool


def exact_prefix(
    target: Sequence[str], source: Sequence[str], *, in_target: Iterable[str],
    coverage: float | None, target_exhausted: bool, source_exhausted: bool,
) -> Exactness:
    """Final merged items for rank placement, and which side limits them."""
    ut, us = _unique(target), _unique(source)
    known = set(ut) | set(in_target)
    if coverage is None:
        found = sum(1 for k in us if k in known)
        coverage = (found + 0.5) / (len(us) + 1.0)
    share = min(1.0, max(coverage, 1e-6))
    bound_t = math.inf if target_exhausted else (len(ut) + 1) / share
    bound_s = math.inf if source_exhausted else len(us) + 1.0
    bound = min(bound_t, bound_s)
    rank = {k: j for j, k in enumerate(us)}
    # a target hit whose source rank is not fetched yet has it at >= bound_s: its estimate is
    # its own whenever that is below the bound, so counting by the known estimate is exact
    final = sum(1 for i, k in enumerate(ut) if target_rank(i, rank.get(k), share) < bound)
    final += sum(1 for j, k in enumerate(us) if k not in known and j + 1 < bound)
    return Exactness(final, bound_t <= bound_s and not target_exhausted,
                     bound_s <= bound_t and not source_exhausted)

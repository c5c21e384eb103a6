"""Shadow-mode comparison: how far the merged answer is from the served source answer.

Pure comparison functions (overlap@k, Spearman's rho and Kendall's tau over the documents both
rankings contain) and the Prometheus metrics they feed (default registry, served with the
proxy's own metrics). A comparison with fewer than two shared documents has no defined rank
correlation: only the overlap is recorded then.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Histogram

_UNIT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
_CORR = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

SHADOW_OVERLAP = Histogram(
    "switchyard_shadow_overlap_at_k",
    "Shadow reads: share of the served (source) top-k documents also in the merged top-k.",
    ["collection"], buckets=_UNIT,
)
SHADOW_SPEARMAN = Histogram(
    "switchyard_shadow_spearman",
    "Shadow reads: Spearman rank correlation of shared documents (served vs merged).",
    ["collection"], buckets=_CORR,
)
SHADOW_KENDALL = Histogram(
    "switchyard_shadow_kendall",
    "Shadow reads: Kendall rank correlation of shared documents (served vs merged).",
    ["collection"], buckets=_CORR,
)
SHADOW_DONE = Counter(
    "switchyard_shadow_reads_total",
    "Shadow comparisons by outcome (compared, dropped_full, deadline, failed).",
    ["collection", "outcome"],
)
MERGED_READS = Counter(
    "switchyard_merged_reads_total",
    "Merged similarity reads served, by protocol and by which sides answered.",
    ["protocol", "sides"],
)
SIDE_SKIPPED = Counter(
    "switchyard_merged_side_skipped_total",
    "Sides of merged reads that were skipped (no query vector, error, timeout).",
    ["side", "why"],
)


def overlap_at_k(served: Sequence[str], merged: Sequence[str], k: int) -> float:
    """|top-k served ∩ top-k merged| / k (1.0 when both are empty)."""
    if k <= 0:
        return 1.0
    a, b = set(served[:k]), set(merged[:k])
    if not a and not b:
        return 1.0
    return len(a & b) / float(k)


def _shared_ranks(served: Sequence[str], merged: Sequence[str]) -> tuple[list[int], list[int]]:
    pos = {key: i for i, key in reversed(list(enumerate(merged)))}
    seen: set[str] = set()
    xs: list[int] = []
    ys: list[int] = []
    for i, key in enumerate(served):
        if key in pos and key not in seen:
            seen.add(key)
            xs.append(i)
            ys.append(pos[key])
    return _ranks(xs), _ranks(ys)


def _ranks(values: list[int]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0] * len(values)
    for rank, i in enumerate(order):
        out[i] = rank
    return out


def spearman(served: Sequence[str], merged: Sequence[str]) -> float | None:
    """Spearman's rho over the documents in both lists; ``None`` with fewer than two."""
    xs, ys = _shared_ranks(served, merged)
    n = len(xs)
    if n < 2:
        return None
    d2 = sum((x - y) ** 2 for x, y in zip(xs, ys))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def kendall(served: Sequence[str], merged: Sequence[str]) -> float | None:
    """Kendall's tau (no ties possible) over the documents in both lists; ``None`` with fewer than two."""
    xs, ys = _shared_ranks(served, merged)
    n = len(xs)
    if n < 2:
        return None
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += 1 if (xs[i] - xs[j]) * (ys[i] - ys[j]) > 0 else -1
    return score / (n * (n - 1) / 2)


def record(collection: str, served: Sequence[str], merged: Sequence[str], k: int) -> None:
    """Observe one comparison in the histograms."""
    SHADOW_OVERLAP.labels(collection).observe(overlap_at_k(served, merged, k))
    rho, tau = spearman(served, merged), kendall(served, merged)
    if rho is not None:
        SHADOW_SPEARMAN.labels(collection).observe(rho)
    if tau is not None:
        SHADOW_KENDALL.labels(collection).observe(tau)
    SHADOW_DONE.labels(collection, "compared").inc()

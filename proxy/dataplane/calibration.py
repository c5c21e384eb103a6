"""Score calibration: a monotone map that puts model A's scores on model B's scale.

Two models' similarity scores are not on one scale (one model's 0.6 may be the other's 0.3),
so a merged answer cannot sort source-only hits among target hits by raw score. Fitted on pairs
of scores of the same (query, document) pairs under both models, an isotonic (monotone
non-decreasing) regression maps a source score to the target score it would likely have; it
keeps each list's own order, which is all a merge may rely on.

The fit is pool-adjacent-violators on scores sorted by the source score (exact, ``O(n)`` after
the sort), stored as breakpoints and applied by linear interpolation (``np.interp``), so using
it costs microseconds per merged read. Its quality is Spearman's rank correlation of the mapped
scores with the true target scores on held-out pairs; below ``MIN_SPEARMAN`` the merge falls
back to rank placement and says why (the reason is :attr:`Calibration.reason`).

Why the gate is high (0.9): measured on pydocs-faq (``bench/migration_quality.py``, columns (f)
and (g), ``docs/quality.md``), calibrated placement ranks below rank placement at every migrated
share, whether fitted on document-document pairs (Spearman 0.54-0.59) or on query-document
pairs as merged reads see them (0.45-0.67). A monotone map predicts a source hit's *typical*
target score given its source score, but the target's own hits are selected for their high
target scores, so a map of middling fit sets source hits below target hits that are no more
likely relevant (regression to the mean). Only a map close to exact, as between two versions of
one model, is trusted; otherwise rank placement, which the same bench shows at or above
source-only quality from 25 % on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_PAIRS = 50
MIN_SPEARMAN = 0.9
MAX_BREAKPOINTS = 256


@dataclass(frozen=True)
class Calibration:
    """Breakpoints ``(xs, ys)`` of the monotone map and its held-out rank correlation."""

    xs: np.ndarray
    ys: np.ndarray
    spearman: float
    pairs: int

    @property
    def usable(self) -> bool:
        return self.spearman >= MIN_SPEARMAN

    @property
    def reason(self) -> str:
        if self.usable:
            return f"calibrated (held-out Spearman {self.spearman:.2f} over {self.pairs} score pairs)"
        return (f"calibration too weak (held-out Spearman {self.spearman:.2f} < {MIN_SPEARMAN}); "
                "source hits placed by rank")

    def apply(self, scores: Any) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.xs, self.ys)

    def to_target(self, score: float) -> float:
        """One source score on the target's scale (``merge.Calibration``'s protocol)."""
        return float(np.interp(score, self.xs, self.ys))

    def to_dict(self) -> dict[str, Any]:
        return {"xs": self.xs.tolist(), "ys": self.ys.tolist(), "spearman": self.spearman, "pairs": self.pairs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(np.asarray(d["xs"], float), np.asarray(d["ys"], float), float(d["spearman"]), int(d["pairs"]))


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators: the non-decreasing step fit of ``y`` on ``x``, as breakpoints
    (block means at each block's mean ``x``)."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
    means: list[float] = []
    weights: list[float] = []
    centers: list[float] = []
    for xi, yi in zip(xs, ys):
        means.append(yi)
        weights.append(1.0)
        centers.append(xi)
        while len(means) > 1 and means[-2] > means[-1]:
            w = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            centers[-2] = (centers[-2] * weights[-2] + centers[-1] * weights[-1]) / w
            weights[-2] = w
            del means[-1], weights[-1], centers[-1]
    bx, by = np.asarray(centers), np.asarray(means)
    if len(bx) > MAX_BREAKPOINTS:
        pick = np.linspace(0, len(bx) - 1, MAX_BREAKPOINTS).round().astype(int)
        bx, by = bx[pick], by[pick]
    return bx, by


def fit(source: Any, target: Any, *, seed: int = 0) -> Calibration:
    """Fit on 80 % of the score pairs, score on the rest, refit on all (module docstring)."""
    s, t = np.asarray(source, float), np.asarray(target, float)
    if len(s) != len(t) or len(s) < MIN_PAIRS:
        raise ValueError(f"a calibration needs at least {MIN_PAIRS} score pairs (got {min(len(s), len(t))})")
    order = np.random.default_rng(seed).permutation(len(s))
    cut = max(2, len(s) // 5)
    test, train = order[:cut], order[cut:]
    bx, by = isotonic(s[train], t[train])
    rho = spearman(np.interp(s[test], bx, by), t[test])
    xs, ys = isotonic(s, t)
    return Calibration(xs, ys, rho, len(s))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), float)
    ranks[order] = np.arange(len(x), dtype=float)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def score_pairs(a: np.ndarray, b: np.ndarray, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired scores from paired vectors: random (query, document) pairs among the sampled texts,
    scored by dot product in each model's space (both normalised first)."""
    na = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    nb = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(a), count), rng.integers(0, len(a), count)
    keep = i != j
    i, j = i[keep], j[keep]
    return np.sum(na[i] * na[j], axis=1), np.sum(nb[i] * nb[j], axis=1)

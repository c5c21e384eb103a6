"""The quality gate before cutover: compare source, target and merged answers; GO or NO-GO (pure).

``switchyard migrate eval`` runs a set of queries against the source, the target and the merged
read and hands the ranked document keys to :func:`evaluate`. Per query it measures

* **overlap@k** of the target's and the merged answer's top k with the source's (how much the
  answers change; a better model changes them, so overlap alone never blocks unless it is
  implausibly low, a sign of a broken target such as wrong vectors or a wrong model);
* **rank correlation** (Spearman over the documents both lists hold, 0 when fewer than two);
* **nDCG@k** against judgements when the query file has them (graded, several relevant
  documents per query allowed).

Each mean comes with a percentile bootstrap confidence interval (seeded: the same inputs give
the same verdict). The verdict is **GO** when every check passes: with judgements, the lower
bound of the paired difference target - source in nDCG@k is at least ``-max_ndcg_drop``;
always, the lower bound of the target's overlap@k with the source is at least ``min_overlap``.
Every failed check is named in the reasons, which ``status`` and ``switch-reads
--require-eval`` show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KIND = "eval"
BOOTSTRAP = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Set in the plan (``migrate plan --eval-min-overlap/--eval-max-ndcg-drop``)."""

    k: int = 10
    min_overlap: float = 0.2
    max_ndcg_drop: float = 0.02

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "min_overlap": self.min_overlap, "max_ndcg_drop": self.max_ndcg_drop}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Thresholds:
        d = d or {}
        return cls(int(d.get("k", 10)), float(d.get("min_overlap", 0.2)), float(d.get("max_ndcg_drop", 0.02)))


@dataclass(frozen=True, slots=True)
class Answers:
    """One query's ranked document keys per side, and its judgements (key -> grade) if any."""

    source: Sequence[str]
    target: Sequence[str]
    merged: Sequence[str] = ()
    judged: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": round(self.mean, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


@dataclass(frozen=True, slots=True)
class Verdict:
    go: bool
    reasons: tuple[str, ...]
    metrics: dict[str, Interval]
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": "GO" if self.go else "NO-GO", "reasons": list(self.reasons), "queries": self.queries,
                "metrics": {k: v.to_dict() for k, v in self.metrics.items()}}


def overlap(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """|top-k(a) & top-k(b)| / k."""
    return len(set(a[:k]) & set(b[:k])) / k if k > 0 else 0.0


def rank_correlation(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Spearman's rho over the documents both top-k lists hold (0 when fewer than two)."""
    shared = [x for x in a[:k] if x in set(b[:k])]
    if len(shared) < 2:
        return 0.0
    pos_b = {x: i for i, x in enumerate(b[:k])}
    rb = np.argsort(np.argsort([pos_b[x] for x in shared])).astype(float)
    ra = np.arange(len(shared), dtype=float)
    if rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ndcg(ranked: Sequence[str], judged: Mapping[str, float], k: int) -> float:
    """nDCG@k with graded gains (``grade`` as gain, log2 discount); every relevant document
    counts, so a query with several relevant documents is scored against its ideal ranking."""
    gains = [float(judged.get(d, 0.0)) for d in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def bootstrap(values: Sequence[float], *, seed: int = 0, rounds: int = BOOTSTRAP) -> Interval:
    """Mean and percentile bootstrap interval at :data:`CONFIDENCE`."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Interval(0.0, 0.0, 0.0)
    means = x[np.random.default_rng(seed).integers(0, len(x), (rounds, len(x)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return Interval(float(x.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))


def evaluate(answers: Sequence[Answers], thresholds: Thresholds = Thresholds(), *, seed: int = 0) -> Verdict:
    """GO / NO-GO over ``answers`` (module docstring)."""
    if not answers:
        return Verdict(False, ("no queries to evaluate",), {}, 0)
    k = thresholds.k
    metrics = {
        "overlap_target_source": bootstrap([overlap(q.target, q.source, k) for q in answers], seed=seed),
        "rank_corr_target_source": bootstrap([rank_correlation(q.target, q.source, k) for q in answers], seed=seed),
    }
    if any(q.merged for q in answers):
        metrics["overlap_merged_source"] = bootstrap([overlap(q.merged, q.source, k) for q in answers], seed=seed)
    reasons: list[str] = []
    ov = metrics["overlap_target_source"]
    if ov.low < thresholds.min_overlap:
        reasons.append(f"overlap@{k} of target with source {ov.mean:.2f} (CI low {ov.low:.2f}) "
                       f"< {thresholds.min_overlap}: the target answers unlike the source")
    judged = [q for q in answers if q.judged]
    if judged:
        src = [ndcg(q.source, q.judged, k) for q in judged]
        tgt = [ndcg(q.target, q.judged, k) for q in judged]
        metrics["ndcg_source"] = bootstrap(src, seed=seed)
        metrics["ndcg_target"] = bootstrap(tgt, seed=seed)
        if any(q.merged for q in judged):
            metrics["ndcg_merged"] = bootstrap([ndcg(q.merged, q.judged, k) for q in judged], seed=seed)
        diff = bootstrap([t - s for t, s in zip(tgt, src)], seed=seed)
        metrics["ndcg_target_minus_source"] = diff
        if diff.low < -thresholds.max_ndcg_drop:
            reasons.append(f"nDCG@{k} target - source {diff.mean:+.3f} (CI low {diff.low:+.3f}) "
                           f"< -{thresholds.max_ndcg_drop}: the target may answer worse")
    if not reasons:
        reasons.append(f"all checks passed over {len(answers)} queries ({len(judged)} judged)")
        return Verdict(True, tuple(reasons), metrics, len(answers))
    return Verdict(False, tuple(reasons), metrics, len(answers))

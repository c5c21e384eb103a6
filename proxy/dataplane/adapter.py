"""A query adapter between two models' spaces, fitted on pairs of vectors of the same texts.

Drift-Adapter (EMNLP 2025) shows that a small map between an old and a new embedding space,
fitted on (old, new) vectors of the same texts, recovers most of a full re-embedding's recall
at microseconds per query. Two maps are fitted here, both closed-form and deterministic:

- **orthogonal Procrustes**: ``W = U V^T`` from the SVD of ``A^T B`` (both sides zero-padded to
  the larger dimension when they differ). A rotation preserves norms and angles, so it cannot
  overfit a small sample, and it stays robust across dimension changes, where affine maps
  were seen to collapse (384 -> 768, 384 -> 1024);
- **low-rank affine**: ridge regression ``B ~ A M + c``, ``M`` truncated to rank ``r`` by SVD;
  more expressive, kept only when it measures better.

Both are scored on held-out pairs (mean cosine of the mapped vector to its true partner, and
top-1 retrieval among the held-out partners) and the better one is kept, with its scores, so
operators see how good an approximation is before it serves anything. Fitting costs an SVD of a
``d x d`` matrix (milliseconds at 384): run it off the event loop. Applying one is a
matrix-vector product (``bench/migration_quality.py`` measures it per query).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_PAIRS = 32
HOLDOUT = 0.2
RIDGE = 1e-2


@dataclass(frozen=True)
class Fit:
    """How well a map does on pairs it was not fitted on."""

    mean_cosine: float
    top1: float  # share of held-out pairs whose mapped vector is nearest its own partner
    pairs: int  # fitted on
    held_out: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean_cosine": round(self.mean_cosine, 4), "top1": round(self.top1, 4),
                "pairs": self.pairs, "held_out": self.held_out}


@dataclass(frozen=True)
class Adapter:
    """``x_a -> x_b``: ``(pad(x_a) @ matrix)[:dims_out] + bias``, normalised when ``normalize``."""

    kind: str  # "procrustes" | "affine"
    matrix: np.ndarray
    bias: np.ndarray
    dims_in: int
    dims_out: int
    normalize: bool
    fit: Fit

    def __post_init__(self) -> None:
        # padding the input with zeros only multiplies zeros: use the rows and columns that
        # matter, contiguous float32, so a query costs one small matrix-vector product
        used = np.ascontiguousarray(self.matrix[:self.dims_in, :self.dims_out], dtype=np.float32)
        object.__setattr__(self, "_used", used)
        object.__setattr__(self, "_biased", bool(np.any(self.bias)))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Map one vector (``(d_in,)``) or a batch (``(n, d_in)``) into the other space."""
        y = np.asarray(vectors, dtype=np.float32) @ self._used  # type: ignore[attr-defined]
        if self._biased:  # type: ignore[attr-defined]
            y = y + self.bias
        if self.normalize and y.ndim == 1:  # one query: the hot path of a merged read
            norm = float(np.sqrt(y.dot(y)))
            return y / norm if norm else y
        if self.normalize:
            norms = np.sqrt(np.einsum("...i,...i->...", y, y))[..., None]
            y = y / np.where(norms == 0, 1, norms)
        return np.asarray(y, dtype=np.float32)

    def inverse(self) -> Adapter:
        """The map back (``x_b -> x_a``); exact for Procrustes (a rotation's inverse is its
        transpose), so only Procrustes adapters have one."""
        if self.kind != "procrustes":
            raise ValueError("only an orthogonal adapter has an exact inverse")
        return Adapter("procrustes", self.matrix.T.copy(), np.zeros(self.dims_in, np.float32), self.dims_out,
                       self.dims_in, self.normalize, self.fit)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "matrix": self.matrix.astype(np.float32).tolist(),
                "bias": self.bias.astype(np.float32).tolist(), "dims_in": self.dims_in,
                "dims_out": self.dims_out, "normalize": self.normalize, "fit": self.fit.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Adapter:
        fit = Fit(**d["fit"])
        return cls(d["kind"], np.asarray(d["matrix"], np.float32), np.asarray(d["bias"], np.float32),
                   int(d["dims_in"]), int(d["dims_out"]), bool(d["normalize"]), fit)


def procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal ``W`` minimising ``|pad(A) W - pad(B)|`` (both padded to one dimension)."""
    d = max(a.shape[1], b.shape[1])
    pa, pb = _pad(a, d), _pad(b, d)
    u, _, vt = np.linalg.svd(pa.T.astype(np.float64) @ pb.astype(np.float64))
    return np.asarray(u @ vt, dtype=np.float32)


def low_rank_affine(a: np.ndarray, b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge ``B ~ A M + c`` with ``M`` truncated to ``rank``; returns ``(M, c)``."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ma, mb = a64.mean(axis=0), b64.mean(axis=0)
    ca, cb = a64 - ma, b64 - mb
    m = np.linalg.solve(ca.T @ ca + RIDGE * len(a) * np.eye(a.shape[1]), ca.T @ cb)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r = max(1, min(rank, len(s)))
    m = (u[:, :r] * s[:r]) @ vt[:r]
    return np.asarray(m, np.float32), np.asarray(mb - ma @ m, np.float32)


def fit(a: np.ndarray, b: np.ndarray, *, normalize: bool = True, rank: int = 64, seed: int = 0) -> Adapter:
    """The better of Procrustes and low-rank affine on held-out pairs (module docstring)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if len(a) != len(b) or len(a) < MIN_PAIRS:
        raise ValueError(f"an adapter needs at least {MIN_PAIRS} pairs of vectors (got {min(len(a), len(b))})")
    order = np.random.default_rng(seed).permutation(len(a))
    cut = max(1, int(len(a) * HOLDOUT))
    test, train = order[:cut], order[cut:]
    w = procrustes(a[train], b[train])
    candidates = [Adapter("procrustes", w, np.zeros(b.shape[1], np.float32), a.shape[1], b.shape[1], normalize,
                          _score(w, np.zeros(b.shape[1], np.float32), a, b, train, test, normalize))]
    if len(train) > a.shape[1]:  # an affine map needs more pairs than dimensions to mean anything
        m, c = low_rank_affine(a[train], b[train], rank)
        candidates.append(Adapter("affine", m, c, a.shape[1], b.shape[1], normalize,
                                  _score(m, c, a, b, train, test, normalize)))
    best = max(candidates, key=lambda ad: (ad.fit.mean_cosine, ad.kind == "procrustes"))
    # refit the winner on every pair; the held-out scores stay as its honest estimate
    if best.kind == "procrustes":
        return Adapter("procrustes", procrustes(a, b), best.bias, best.dims_in, best.dims_out, normalize, best.fit)
    m, c = low_rank_affine(a, b, rank)
    return Adapter("affine", m, c, best.dims_in, best.dims_out, normalize, best.fit)


def _score(matrix: np.ndarray, bias: np.ndarray, a: np.ndarray, b: np.ndarray, train: np.ndarray,
           test: np.ndarray, normalize: bool) -> Fit:
    probe = Adapter("probe", matrix, bias, a.shape[1], b.shape[1], True, Fit(0, 0, 0, 0))
    mapped = probe.apply(a[test])
    truth = b[test] / np.maximum(np.linalg.norm(b[test], axis=1, keepdims=True), 1e-12)
    cosines = np.sum(mapped * truth, axis=1)
    nearest = np.argmax(mapped @ truth.T, axis=1)
    return Fit(float(cosines.mean()), float(np.mean(nearest == np.arange(len(test)))), len(train), len(test))


def _pad(x: np.ndarray, d: int) -> np.ndarray:
    return x if x.shape[1] == d else np.pad(x, ((0, 0), (0, d - x.shape[1])))

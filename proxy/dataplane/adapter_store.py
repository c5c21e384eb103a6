"""Fitted adapters and calibrations, kept per migration in the state store, cached by readers.

One record per migration (kind ``adapter``, key the migration id) holds both adapters (A -> B
and B -> A, each the better of Procrustes and low-rank affine on held-out pairs, see
:mod:`adapter`), the source -> target score :mod:`calibration`, their fit quality, how many
sample pairs they came from, and ``enabled`` (an operator may turn them off with ``switchyard
migrate adapter MIGRATION --off``). :func:`fit_record` is pure (numpy only);
:func:`refit` loads the backfill's sample reservoir and stores a fresh record. The backfill
refits on its own as its reservoir fills (:func:`refit_reason` decides when: the first time it
holds enough pairs, then each time the texts it has seen double, so a migration of ``n`` points
refits about ``log2(n)`` times and the fit follows the sample as it spreads over the corpus).

:class:`AdapterCache` is what the merged reader asks: at most one state-store read per
migration every ``ttl`` seconds (the record is large: two ``d x d`` matrices), never raising
(a failed read keeps the last good record, or none: the merge then does without, and says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchyard.proxy.dataplane import adapter as adapter_fit
from switchyard.proxy.dataplane import calibration as calibration_fit
from switchyard.proxy.dataplane.adapter import Adapter
from switchyard.proxy.dataplane.calibration import Calibration
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.adapter")
KIND = "adapter"
#: Adapters below this held-out mean cosine are kept (for the operator to see) but not used.
#: bench/migration_quality.py mode (e) measured a 0.5-cosine adapter (256 pairs, 384-d) making
#: merged answers worse than leaving the other side out (docs/quality.md), so a usable adapter
#: must map nearly as well as the model itself.
MIN_COSINE = 0.9
SCORE_PAIRS = 20000


@dataclass(frozen=True)
class Loaded:
    """A migration's adapters as the reader uses them (``None`` where unfitted or unusable)."""

    to_target: Adapter | None  # A -> B
    to_source: Adapter | None  # B -> A
    calibration: Calibration | None
    enabled: bool
    reason: str

    def usable_adapter(self, direction: str) -> Adapter | None:
        """``direction`` ``"target"`` (map an A vector into B) or ``"source"``."""
        if not self.enabled:
            return None
        ad = self.to_target if direction == "target" else self.to_source
        return ad if ad is not None and ad.fit.mean_cosine >= MIN_COSINE else None

    def usable_calibration(self) -> Calibration | None:
        c = self.calibration
        return c if self.enabled and c is not None and c.usable else None


def vectors_of(items: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The (A, B) vector pairs of reservoir items that hold both (same dimension each side)."""
    pairs = [(it["a"], it["b"]) for it in items if it.get("a") is not None and it.get("b") is not None]
    if not pairs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    da, db = len(pairs[0][0]), len(pairs[0][1])
    kept = [(a, b) for a, b in pairs if len(a) == da and len(b) == db]
    return np.asarray([a for a, _ in kept], np.float32), np.asarray([b for _, b in kept], np.float32)


def fit_record(a: np.ndarray, b: np.ndarray, *, enabled: bool = True, seed: int = 0) -> dict[str, Any]:
    """The record for pairs ``a[i] ~ b[i]`` (pure). Too few pairs: a record saying so."""
    n = len(a)
    rec: dict[str, Any] = {"enabled": enabled, "pairs": n, "fitted_at": time.time(),
                           "to_target": None, "to_source": None, "calibration": None}
    if n < adapter_fit.MIN_PAIRS:
        rec["reason"] = f"{n} sample pairs, an adapter needs {adapter_fit.MIN_PAIRS}"
        return rec
    rec["to_target"] = adapter_fit.fit(a, b, seed=seed).to_dict()
    rec["to_source"] = adapter_fit.fit(b, a, seed=seed).to_dict()
    s, t = calibration_fit.score_pairs(a, b, SCORE_PAIRS, seed=seed)
    if len(s) >= calibration_fit.MIN_PAIRS:
        rec["calibration"] = calibration_fit.fit(s, t, seed=seed).to_dict()
    rec["reason"] = f"fitted on {n} sample pairs"
    return rec


def load_record(data: dict[str, Any] | None) -> Loaded | None:
    if not data:
        return None
    tt, ts, cal = data.get("to_target"), data.get("to_source"), data.get("calibration")
    return Loaded(Adapter.from_dict(tt) if tt else None, Adapter.from_dict(ts) if ts else None,
                  Calibration.from_dict(cal) if cal else None, bool(data.get("enabled", True)),
                  str(data.get("reason") or ""))


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """What ``migrate adapter`` shows: no matrices, only kinds, dimensions and fit quality."""
    out: dict[str, Any] = {k: data.get(k) for k in ("enabled", "pairs", "fitted_at", "reason")}
    for side in ("to_target", "to_source"):
        ad = data.get(side)
        out[side] = None if not ad else {"kind": ad["kind"], "dims_in": ad["dims_in"],
                                          "dims_out": ad["dims_out"], "fit": ad["fit"],
                                          "used": ad["fit"]["mean_cosine"] >= MIN_COSINE}
    cal = data.get("calibration")
    out["calibration"] = None if not cal else {"spearman": round(cal["spearman"], 4), "pairs": cal["pairs"],
                                               "used": cal["spearman"] >= calibration_fit.MIN_SPEARMAN}
    return out


def refit_reason(record: dict[str, Any] | None, pairs: int, seen: int) -> str | None:
    """Why the backfill should refit now, or ``None`` (pure; module docstring).

    ``record`` is the stored adapter record, ``pairs`` the usable pairs in the daemon's
    reservoir, ``seen`` how many pairs the reservoir has been offered."""
    if pairs < adapter_fit.MIN_PAIRS:
        return None
    if not record or not record.get("to_target"):
        return f"first fit ({pairs} sample pairs)"
    fitted_seen = int(record.get("seen") or 0)
    if seen >= 2 * max(fitted_seen, 1):
        return f"the sample has spread over {seen} texts since the fit over {fitted_seen}"
    return None


async def refit(store: StateStore, migration_id: str, *, seen: int | None = None) -> dict[str, Any]:
    """Fit from the backfill's reservoir (off the event loop) and store; keeps ``enabled``.
    ``seen``: the reservoir's offered count, kept for :func:`refit_reason`."""
    from switchyard.backfill import samples

    items = await samples.load(store, migration_id)
    old = await store.get(KIND, migration_id)
    enabled = bool(old.data.get("enabled", True)) if old is not None else True
    a, b = vectors_of(items)
    rec = await asyncio.to_thread(fit_record, a, b, enabled=enabled)
    if seen is not None:
        rec["seen"] = seen
    elif old is not None and old.data.get("seen") is not None:
        rec["seen"] = old.data["seen"]
    await store.upsert(KIND, migration_id, rec)
    return rec


async def set_enabled(store: StateStore, migration_id: str, enabled: bool) -> dict[str, Any]:
    old = await store.get(KIND, migration_id)
    rec = dict(old.data) if old is not None else {"pairs": 0, "reason": "not fitted yet"}
    rec["enabled"] = enabled
    await store.upsert(KIND, migration_id, rec)
    return rec


class AdapterCache:
    """Per-migration :class:`Loaded`, re-read at most every ``ttl`` seconds (module docstring)."""

    def __init__(self, store: StateStore | None, ttl: float = 30.0) -> None:
        self._store, self.ttl = store, ttl
        self._cache: dict[str, tuple[float, Loaded | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, migration_id: str) -> Loaded | None:
        if self._store is None:
            return None
        now = time.monotonic()
        hit = self._cache.get(migration_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        lock = self._locks.setdefault(migration_id, asyncio.Lock())
        async with lock:
            hit = self._cache.get(migration_id)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            try:
                env = await self._store.get(KIND, migration_id)
                loaded = load_record(env.data if env is not None else None)
            except Exception as exc:  # noqa: BLE001 - a merged read must not fail for this
                log.warning("adapter for %s unreadable: %s", migration_id, exc)
                loaded = hit[1] if hit is not None else None
            self._cache[migration_id] = (time.monotonic(), loaded)
            return loaded

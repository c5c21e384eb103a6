"""The query adapter and the score calibration: pure numpy, checked on synthetic data with a
known answer."""

from __future__ import annotations

import numpy as np
import pytest

from switchyard.proxy.dataplane import adapter, calibration


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("da, db", [(32, 32), (24, 40), (40, 24)])
def test_procrustes_recovers_a_known_rotation(da: int, db: int) -> None:
    """B is an exact rotation of A (padded to the larger space, then cut to B's size when it is
    the smaller one): the fitted map sends held-out A vectors onto their B partners."""
    d = max(da, db)
    a = _unit(400, da, 1)
    rot = _rotation(d, 2)
    b = (np.pad(a, ((0, 0), (0, d - da))) @ rot)[:, :db]
    if db < d:  # information is lost only when B is smaller; keep only the subspace B retains
        a = (np.pad(b, ((0, 0), (0, d - db))) @ rot.T)[:, :da]
    fitted = adapter.fit(a, b, normalize=False)
    assert fitted.kind == "procrustes"
    probe = _unit(50, da, 3)
    if db < d:
        probe = (np.pad((np.pad(probe, ((0, 0), (0, d - da))) @ rot)[:, :db], ((0, 0), (0, d - db))) @ rot.T)[:, :da]
    want = (np.pad(probe, ((0, 0), (0, d - da))) @ rot)[:, :db]
    assert np.allclose(fitted.apply(probe), want, atol=1e-4)
    assert fitted.fit.mean_cosine > 0.999 and fitted.fit.top1 == 1.0
    if da == db:
        back = fitted.inverse().apply(want)
        assert np.allclose(back, probe, atol=1e-4)


def test_affine_is_kept_only_when_it_measures_better() -> None:
    rng = np.random.default_rng(5)
    a = _unit(2000, 16, 6)
    m = rng.standard_normal((16, 16)) * np.linspace(3, 0.1, 16)  # far from a rotation
    b = (a @ m + 0.5).astype(np.float32)
    fitted = adapter.fit(a, b, normalize=False, rank=16)
    assert fitted.kind == "affine" and fitted.fit.mean_cosine > 0.99
    rotated = adapter.fit(a, a @ _rotation(16, 7), normalize=False)
    assert rotated.kind == "procrustes"


def test_adapter_round_trips_through_its_record_and_refuses_few_pairs() -> None:
    a = _unit(100, 8, 8)
    fitted = adapter.fit(a, a @ _rotation(8, 9))
    again = adapter.Adapter.from_dict(fitted.to_dict())
    assert np.allclose(again.apply(a[:3]), fitted.apply(a[:3]), atol=1e-6)
    assert np.allclose(np.linalg.norm(fitted.apply(a[:3]), axis=1), 1.0, atol=1e-5)  # normalised output
    with pytest.raises(ValueError, match="at least 32 pairs"):
        adapter.fit(a[:10], a[:10])


@pytest.mark.parametrize("x, y, bx, by", [
    ([1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]),
    ([1, 2, 3], [3, 2, 1], [2], [2]),                 # one pooled block
    ([1, 2, 3, 4], [1, 3, 2, 4], [1, 2.5, 4], [1, 2.5, 4]),
    ([3, 1, 2], [3, 1, 2], [1, 2, 3], [1, 2, 3]),       # unsorted input
])
def test_pool_adjacent_violators(x: list[float], y: list[float], bx: list[float], by: list[float]) -> None:
    got_x, got_y = calibration.isotonic(np.array(x, float), np.array(y, float))
    assert got_x.tolist() == pytest.approx(bx) and got_y.tolist() == pytest.approx(by)


def test_calibration_learns_a_monotone_map_and_knows_when_it_cannot() -> None:
    rng = np.random.default_rng(11)
    s = rng.uniform(-1, 1, 3000)
    t = 0.3 * s**3 + 0.1 + rng.normal(0, 0.01, 3000)
    cal = calibration.fit(s, t)
    assert cal.usable and cal.spearman > 0.95 and "calibrated" in cal.reason
    grid = np.linspace(-0.9, 0.9, 19)
    assert np.allclose(cal.apply(grid), 0.3 * grid**3 + 0.1, atol=0.02)
    assert np.all(np.diff(cal.apply(grid)) >= 0)  # monotone: each list keeps its order
    noise = calibration.fit(s, rng.normal(0, 1, 3000))
    assert not noise.usable and "placed by rank" in noise.reason
    assert calibration.Calibration.from_dict(cal.to_dict()).apply([0.5]) == pytest.approx(cal.apply([0.5]))


def test_score_pairs_come_from_the_same_text_pairs_in_both_spaces() -> None:
    a = _unit(50, 8, 12)
    b = a @ _rotation(8, 13)
    sa, sb = calibration.score_pairs(a, b, 500)
    assert len(sa) == len(sb) > 400 and np.allclose(sa, sb, atol=1e-5)  # a rotation keeps every score

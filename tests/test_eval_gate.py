"""The quality gate's measures and its GO / NO-GO (pure, tables)."""

from __future__ import annotations

import math

import pytest

from switchyard.proxy.migration.eval_gate import Answers, Thresholds, bootstrap, evaluate, ndcg, overlap, rank_correlation


@pytest.mark.parametrize(("ranked", "judged", "want"), [
    (["a", "b"], {"a": 1}, 1.0),
    (["b", "a"], {"a": 1}, 1 / math.log2(3)),
    (["x", "y"], {"a": 1}, 0.0),
    # two relevant documents: finding one at rank 1 is not a perfect score
    (["a", "x"], {"a": 1, "b": 1}, 1 / (1 + 1 / math.log2(3))),
    (["b", "a"], {"a": 1, "b": 1}, 1.0),
    (["b", "a"], {"a": 2, "b": 1}, (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))),
])
def test_ndcg_table(ranked: list[str], judged: dict[str, float], want: float) -> None:
    assert ndcg(ranked, judged, 10) == pytest.approx(want)


def test_overlap_and_rank_correlation() -> None:
    assert overlap(["a", "b", "c"], ["c", "b", "x"], 3) == pytest.approx(2 / 3)
    assert rank_correlation(["a", "b", "c"], ["a", "b", "c"], 3) == pytest.approx(1.0)
    assert rank_correlation(["a", "b", "c"], ["c", "b", "a"], 3) == pytest.approx(-1.0)
    assert rank_correlation(["a", "b"], ["x", "a"], 2) == 0.0


def test_bootstrap_interval_brackets_the_mean_and_is_seeded() -> None:
    values = [float(i % 7) for i in range(100)]
    iv = bootstrap(values, seed=1)
    assert iv.low < iv.mean < iv.high
    assert bootstrap(values, seed=1) == iv


def _answers(target_rank_of_relevant: int, n: int = 60) -> list[Answers]:
    out = []
    for q in range(n):
        rel = f"d{q}"
        source = [rel] + [f"s{q}_{i}" for i in range(9)]
        target = [f"s{q}_{i}" for i in range(9)]
        target.insert(min(target_rank_of_relevant, 9), rel)
        out.append(Answers(source=source, target=target[:10], judged={rel: 1.0}))
    return out


def test_verdict_flips_when_the_target_is_made_worse() -> None:
    good = evaluate(_answers(0))
    assert good.go, good.reasons
    worse = evaluate(_answers(6))  # the relevant document pushed from rank 1 to rank 7
    assert not worse.go
    assert any("nDCG@10 target - source" in r for r in worse.reasons)
    broken = evaluate([Answers(source=[f"a{i}" for i in range(10)], target=[f"b{i}" for i in range(10)])
                       for _ in range(20)])
    assert not broken.go and "overlap@10" in broken.reasons[0]


def test_no_queries_is_no_go_and_thresholds_round_trip() -> None:
    assert not evaluate([]).go
    t = Thresholds(k=5, min_overlap=0.1, max_ndcg_drop=0.05)
    assert Thresholds.from_dict(t.to_dict()) == t

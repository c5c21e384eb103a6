"""Table tests of the pure mixed-version merge (target version wins)."""

from __future__ import annotations

import pytest

from switchyard.proxy.dataplane.merge import Hit, LinearCalibration, fetch_limit, merge


def t(key: str, score: float) -> Hit:
    return Hit(key, score, point={"id": key, "side": "t"}, side="target")


def s(key: str, score: float) -> Hit:
    return Hit(key, score, point={"id": key, "side": "s"}, side="source")


def keys(hits: list[Hit]) -> list[str]:
    return [f"{h.key}:{h.side[0]}" for h in hits]


CASES = [
    # name, target, source, in_target, kwargs, expected (key:side)
    ("target only", [t("a", .9), t("b", .8)], [], (), {}, ["a:t", "b:t"]),
    ("source only (0% migrated)", [], [s("a", .5), s("b", .4)], (), {}, ["a:s", "b:s"]),
    ("duplicate resolved to target", [t("a", .3)], [s("a", .99), s("b", .2)], (), {}, ["a:t", "b:s"]),
    ("migrated doc never ranked by source version, even unreturned by target",
     [t("b", .9)], [s("a", .99), s("c", .5)], ("a",), {}, ["b:t", "c:s"]),
    ("half migrated: target rank i stands for global rank 2(i+1)",
     [t("a", .9), t("b", .7)], [s("x", .5), s("y", .4), s("z", .3)], (), {"coverage": 0.5},
     ["x:s", "a:t", "y:s", "z:s", "b:t"]),
    ("fully covered: rank for rank", [t("a", .9), t("b", .7)], [s("x", .5), s("y", .4)], (),
     {"coverage": 1.0}, ["a:t", "x:s", "b:t", "y:s"]),
    ("coverage estimated from source hits: a sparse target yields",
     [t("a", .9)], [s("x", .5), s("y", .4), s("z", .3)], (), {}, ["x:s", "y:s", "z:s", "a:t"]),
    ("offset and limit", [t("a", .9), t("b", .7)], [s("x", .5), s("y", .4)], (),
     {"offset": 1, "limit": 2, "coverage": 0.5}, ["a:t", "y:s"]),
    ("score threshold on target scale", [t("a", .9), t("b", .7)], [s("x", .5), s("y", .4)], (),
     {"score_threshold": 0.8, "coverage": 1.0}, ["a:t", "x:s"]),
    ("calibration places source scores", [t("a", .9), t("b", .5)], [s("x", .3)], (),
     {"calibration": LinearCalibration(2.0, 0.0)}, ["a:t", "x:s", "b:t"]),
    ("distance metrics: lower is better", [t("a", 0.1), t("b", 0.5)], [s("x", 3.0), s("y", 4.0)], (),
     {"higher_is_better": False, "coverage": 1.0}, ["a:t", "x:s", "b:t", "y:s"]),
    ("chunks: one hit per document", [t("a", .9), t("a", .8)], [s("b", .5), s("b", .4)], (),
     {"coverage": 1.0},
     ["a:t", "b:s"]),
    ("a migrated hit the source ranks first moves up by the source's estimate (1 / 0.75)",
     [t("a", .9), t("b", .8), t("c", .7)], [s("c", .6), s("x", .5), s("y", .4)], ("c",), {"coverage": 0.25},
     ["c:t", "x:s", "y:s", "a:t", "b:t"]),
    ("A's estimate fades as the target fills: at 0.75 the same hit stays by B's rank",
     [t("a", .9), t("b", .8), t("c", .7)], [s("c", .6), s("x", .5), s("y", .4)], ("c",), {"coverage": 0.75},
     ["a:t", "x:s", "b:t", "y:s", "c:t"]),
    ("full coverage: B alone decides", [t("a", .9), t("b", .8)], [s("b", .99)], ("b",), {"coverage": 1.0},
     ["a:t", "b:t"]),
    ("100% migrated equals target", [t("a", .9), t("b", .8)], [s("b", .99), s("a", .98)], ("a", "b"), {},
     ["a:t", "b:t"]),
]


@pytest.mark.parametrize(("name", "target", "source", "in_target", "kwargs", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_merge_table(name: str, target: list[Hit], source: list[Hit], in_target: tuple[str, ...],
                     kwargs: dict, expected: list[str]) -> None:
    kwargs = {"limit": 10, **kwargs}
    page, report = merge(target, source, in_target=in_target, **kwargs)
    assert keys(page) == expected
    assert report.returned == len(page)


def test_paging_is_exact_across_pages() -> None:
    target = [t(f"t{i}", 1 - i / 100) for i in range(20)]
    source = [s(f"s{i}", 0.5 - i / 100) for i in range(20)] + [s("t3", 0.99)]
    full, _ = merge(target, source, limit=40)
    pages = [merge(target, source, limit=7, offset=o)[0] for o in range(0, 40, 7)]
    assert keys([h for p in pages for h in p]) == keys(full)
    assert len({h.key for h in full}) == len(full) == 40  # no duplicates, t3 by its target version
    assert fetch_limit(7, 14) == 21


def test_report_explains() -> None:
    _, report = merge([t("a", .9)], [s("a", .8), s("a", .7), s("b", .1)], limit=5,
                      skipped={"source": "no query vector for model A"})
    assert report.source_dropped_in_target == 1 and report.source_duplicates == 1
    header = report.header()
    assert "target=1" in header and "source=3" in header and "placement=rank" in header
    assert "skipped_source=no query vector for model A" in header


def test_interleaved_scores_stay_sorted_on_target_scale() -> None:
    target = [t(f"t{i}", 0.9 - i * 0.05) for i in range(5)]
    source = [s(f"s{i}", 0.4 - i * 0.01) for i in range(8)]
    for higher in (True, False):
        tg = target if higher else [t(h.key, 1 - h.score) for h in target]
        page, _ = merge(tg, source, limit=13, coverage=0.4, higher_is_better=higher)
        scores = [h.score for h in page]
        assert scores == sorted(scores, reverse=higher)
        assert [h.key for h in page if h.side == "target"] == [h.key for h in tg]


def test_moved_target_hits_keep_their_side_and_a_sorted_page() -> None:
    target = [t(f"t{i}", 0.9 - i * 0.05) for i in range(6)]
    source = [s("t5", 0.7), s("t4", 0.69)] + [s(f"s{i}", 0.4 - i * 0.01) for i in range(8)]
    for higher in (True, False):
        tg = target if higher else [t(h.key, 1 - h.score) for h in target]
        page, _ = merge(tg, source, limit=14, coverage=0.3, higher_is_better=higher, in_target=("t5", "t4"))
        assert [h.key for h in page[:2]] == ["t5", "t4"]  # the source's top two, migrated: moved up
        assert all(h.side == "target" for h in page if h.key.startswith("t"))
        scores = [h.score for h in page]
        assert scores == sorted(scores, reverse=higher)
        assert len({h.key for h in page}) == len(page) == 14


def test_every_target_hit_moved_up_still_gives_a_sorted_page() -> None:
    page, _ = merge([t("a", 0.5)], [s("a", 0.9), s("x", 0.8)], limit=5, coverage=0.2, in_target=("a",))
    assert keys(page) == ["a:t", "x:s"]
    assert page[0].score == 0.5 and page[1].score < 0.5

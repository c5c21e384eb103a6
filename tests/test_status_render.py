"""``migrate status``: the backfill summary from daemon records, and its human rendering (pure)."""

from __future__ import annotations

from switchyard.proxy.migration.command import render
from switchyard.proxy.migration.progress import summary
from switchyard.proxy.migration.record import Migration


def test_summary_sums_live_daemons_and_flags_silent_ones() -> None:
    now = 1000.0
    records = [
        {"owner": "a", "state": "running", "reason": "", "done": 10, "total": 100, "rate": 40.0, "at": now - 1},
        {"owner": "b", "state": "throttled", "reason": "throttle 20 points/s (operator)", "done": 5,
         "total": 100, "rate": 20.0, "at": now - 2},
        {"owner": "c", "state": "running", "reason": "", "done": 1, "total": 100, "rate": 99.0, "at": now - 300},
    ]
    s = summary(records, 400, 1000, now)
    assert s["rate"] == 60.0 and s["eta"] == 10.0 and s["eta_text"] == "0m10s"
    assert "40.0%" in s["bar"]
    assert [d["silent"] for d in s["daemons"]] == [False, False, True]
    assert summary([], 0, 10, now)["eta"] is None  # not moving: no ETA


def test_status_shows_bar_rate_eta_and_reasons() -> None:
    m = Migration(id="docs-1", logical="docs", source="v1", target="v2", model_a="a", model_b="b",
                  counters={"backfill_done": 400, "backfill_total": 1000, "repair_pending": 3})
    records = [{"owner": "b", "state": "paused", "reason": "paused by operator", "done": 400,
                "total": 1000, "rate": 0.0, "at": 99.0}]
    repair = {"size": 7, "points": 6, "filters": 1,
              "coarse": {"reason": "repair-log appends exceeded 100 records/s", "since": 50.0, "dropped": 9, "at": 60.0}}
    text = render({"migration": m.to_dict(), "proxies": [], "laggards": [], "routes": {},
                   "backfill": summary(records, 400, 1000, 100.0), "repair": repair})
    assert "backfill [############------------------]  40.0% 400/1000 points" in text
    assert "ETA ?" in text
    assert "repair log 7 (6 point(s), 1 filter(s))" in text  # the log itself, not the counter (3)
    assert "COARSE since" in text and "exceeded 100 records/s" in text
    assert "daemon b: paused (paused by operator)" in text

"""The backfill daemon's Prometheus metrics (served with ``switchyard backfill --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POINTS = Counter("switchyard_backfill_points_total", "Points handled by the backfill.",
                 ["migration", "outcome"])
RATE = Gauge("switchyard_backfill_rate", "Backfill points per second (moving window).", ["migration"])
PAUSED = Gauge("switchyard_backfill_paused", "1 while the backfill is paused or throttled to 0.",
               ["migration"])
DONE = Gauge("switchyard_backfill_done_points", "Points copied so far (all daemons).", ["migration"])
TOTAL = Gauge("switchyard_backfill_total_points", "Points to copy (source count).", ["migration"])

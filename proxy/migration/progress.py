"""Progress: done, total, rate, ETA (pure), the per-daemon progress record and the log line.

Shared by the backfill daemon (which writes the records and logs the line) and the control
plane (``migrate status`` aggregates the records and draws the bar).

``total`` is the source's current point count, never below ``done``: points added since the
start raise it, so the ETA stays honest while the application writes. The rate is a moving
window over recent (time, done) observations. Each daemon writes a ``backfill_progress``
record (key ``"<migration>/<owner>"``) with its state and the reason it is slowed or paused.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

KIND = "backfill_progress"


@dataclass(slots=True)
class RateWindow:
    """Points per second over the last ``window`` seconds of observations."""

    window: float = 30.0
    points: deque[tuple[float, int]] = field(default_factory=deque)

    def observe(self, now: float, done: int) -> None:
        self.points.append((now, done))
        while len(self.points) > 2 and now - self.points[0][0] > self.window:
            self.points.popleft()

    def rate(self) -> float:
        if len(self.points) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.points[0], self.points[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


def eta(done: int, total: int, rate: float) -> float | None:
    """Seconds to go at ``rate`` (``None`` when not moving)."""
    left = max(0, total - done)
    if left == 0:
        return 0.0
    return left / rate if rate > 0 else None


def bar(done: int, total: int, width: int = 30) -> str:
    frac = 1.0 if total <= 0 else min(1.0, done / total)
    full = int(frac * width)
    return "[" + "#" * full + "-" * (width - full) + f"] {frac * 100:5.1f}%"


def line(migration: str, done: int, total: int, rate: float, state: str, reason: str) -> str:
    """The daemon's progress log line. Once the backfill is ``done`` every source point is level
    on the target, also those it did not write (already current: written through the proxy's
    mirror while it ran), so the line shows the whole and says how much the backfill wrote."""
    if state == "done" and 0 <= done < total:
        why = f" ({reason})" if reason else ""
        return (f"{migration} {bar(total, total)} {total}/{total} points ({done} written by the backfill, "
                f"{total - done} already current), {rate:.0f} points/s, ETA 0m00s, done{why}")
    left = eta(done, total, rate)
    eta_text = "?" if left is None else _duration(left)
    why = f" ({reason})" if reason else ""
    return (f"{migration} {bar(done, total)} {done}/{total} points, {rate:.0f} points/s, "
            f"ETA {eta_text}, {state}{why}")


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def record(owner: str, state: str, reason: str, done: int, total: int, rate: float,
           partitions: dict[str, Any], now: float) -> dict[str, Any]:
    left = eta(done, total, rate)
    return {"owner": owner, "state": state, "reason": reason, "done": done, "total": total,
            "rate": rate, "eta": left, "partitions": partitions, "at": now}


#: A daemon whose progress record is older than this is shown as silent.
SILENT_AFTER = 30.0


def summary(records: list[dict[str, Any]], done: int, total: int, now: float) -> dict[str, Any]:
    """The migration's backfill at a glance from its daemons' records (pure).

    ``done`` / ``total`` are the migration's counters (every daemon's work); the rate is the sum
    of the live daemons' rates; each daemon keeps its state and the reason it is slowed."""
    live = [r for r in records if now - float(r.get("at") or 0) <= SILENT_AFTER]
    rate = sum(float(r.get("rate") or 0) for r in live)
    # the counters move at checkpoints; a live daemon's own count of the migration is fresher
    done = max([done, *(int(r.get("done") or 0) for r in live if r.get("total") == total)])
    left = eta(done, total, rate)
    daemons = [{**{k: r.get(k) for k in ("owner", "state", "reason", "done", "total", "rate")},
                "silent": r not in live} for r in records]
    return {"done": done, "total": total, "rate": rate, "eta": left, "bar": bar(done, total),
            "eta_text": "?" if left is None else _duration(left), "daemons": daemons}

"""Rate control for the backfill (pure, clock injected): a token bucket, pause, adaptive back-off.

The operator's knobs come from the migration record: ``paused``, and ``throttle`` in points per
second, where ``None`` means "unthrottled" and 0 pauses (records of the older layout, which
stored 0 for both, are migrated on read by ``switchyard.proxy.migration.record.migrate_throttle``). On top of the operator's
rate the daemon backs off on its own when the embedder answers 429/5xx or Qdrant is slower
than a threshold: the effective rate is multiplied by a factor that halves on each such signal
and recovers gradually on success. Every limit carries a reason, which progress reports into
``migrate status``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Rate used as the base for adaptive back-off when the operator set no rate.
UNTHROTTLED = math.inf
MIN_FACTOR = 1 / 64
RECOVERY = 1.25


def operator_rate(throttle: float | None, paused: bool) -> tuple[float, str]:
    """(points per second, reason) from the record: 0 = paused, inf = unthrottled.

    ``throttle`` is the record's: ``None`` unthrottled, 0 paused, else points per second."""
    if paused:
        return 0.0, "paused by operator"
    if throttle is None:
        return UNTHROTTLED, ""
    if throttle > 0:
        return throttle, f"throttled by operator to {throttle:g} points/s"
    return 0.0, "throttle 0 (paused) by operator"


@dataclass(slots=True)
class Backoff:
    """A multiplicative factor in ``[MIN_FACTOR, 1]`` and the reason it is below 1."""

    factor: float = 1.0
    reason: str = ""

    def signal(self, reason: str) -> None:
        """Halve the rate: the embedder said 429/5xx, or Qdrant answered slowly."""
        self.factor = max(MIN_FACTOR, self.factor / 2)
        self.reason = reason

    def success(self) -> None:
        self.factor = min(1.0, self.factor * RECOVERY)
        if self.factor >= 1.0:
            self.reason = ""


def latency_signal(seconds: float, threshold: float) -> str | None:
    """A back-off reason when an upstream call took longer than ``threshold`` (0 disables)."""
    if threshold > 0 and seconds > threshold:
        return f"Qdrant latency {seconds * 1000:.0f} ms above {threshold * 1000:.0f} ms"
    return None


@dataclass(slots=True)
class TokenBucket:
    """Points per second as a virtual schedule (GCRA): each batch of ``n`` points pushes the
    next allowed send ``n / rate`` seconds further.

    A batch goes when the schedule has caught up with the clock, then pays for itself, so the
    long-run rate is exact for any batch size and the error over a window is at most one
    batch. Idle time earns no burst; a rate change keeps the schedule (a pause does not
    forgive debt, a resume grants no burst).
    """

    rate: float = UNTHROTTLED
    next_at: float = -math.inf

    def set_rate(self, rate: float) -> None:
        self.rate = rate

    def delay(self, now: float) -> float:
        """Seconds to wait before the next batch may go; ``inf`` while the rate is 0."""
        if math.isinf(self.rate):
            return 0.0
        if self.rate <= 0:
            return math.inf
        return max(0.0, self.next_at - now)

    def take(self, n: int, now: float) -> None:
        """Record that ``n`` points went at ``now``."""
        if math.isinf(self.rate) or self.rate <= 0:
            return
        self.next_at = max(self.next_at, now) + n / self.rate

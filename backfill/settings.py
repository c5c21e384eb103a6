"""The backfill daemon's settings: :class:`DaemonConfig` (validated at construction) and the
migration-record counters the daemon reads as knobs."""

from __future__ import annotations

from dataclasses import dataclass

from switchyard.proxy.errors import ConfigError

BATCH_MIN, BATCH_MAX = 1, 1024
BATCH_COUNTER = "backfill_batch_size"
#: Set by the proxy's repair spool replay: the repair log may have missed changes.
NEEDS_FULL_VERIFY = "needs_full_verify"


def clamp_batch(n: int) -> int:
    """Batch sizes stay within ``[BATCH_MIN, BATCH_MAX]``."""
    return max(BATCH_MIN, min(BATCH_MAX, int(n)))


HOT_RECHECK_MIN, HOT_RECHECK_MAX = 1.0, 3600.0


def clamp_hot_recheck(seconds: float) -> float:
    """The hot-count re-check interval (``backfill.hot_recheck``): 0 (or less) turns it off,
    anything else stays within ``[HOT_RECHECK_MIN, HOT_RECHECK_MAX]`` seconds (each re-check
    reads the plan, the leases and every proxy's counts record)."""
    if seconds <= 0:
        return 0.0
    return max(HOT_RECHECK_MIN, min(HOT_RECHECK_MAX, float(seconds)))


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Knobs of one daemon (``switchyard backfill`` flags); the batch size may be changed
    later for every daemon through the migration record (:data:`BATCH_COUNTER`)."""

    batch_size: int = 64
    concurrency: int = 2
    lease_ttl: float = 10.0
    refresh: float = 0.5
    progress_interval: float = 10.0
    int_partitions: int = 8
    uuid_partitions: int = 4
    latency_threshold: float = 5.0
    idle_poll: float = 0.5
    text_fetcher: str | None = None
    #: back-off of transient failures: first wait ~``retry_base`` s, doubling up to ``retry_max``
    retry_base: float = 0.5
    retry_max: float = 30.0
    #: re-read the hot-document counts at most every so many seconds and append a hot
    #: partition for ids that became hot after the plan (``backfill.hot_recheck``; 0: off)
    hot_recheck: float = 15.0
    #: ids one re-check adds at most; hot partitions a plan holds at most (its own included)
    hot_recheck_ids: int = 256
    hot_partitions: int = 8

    def __post_init__(self) -> None:
        if not (0 < self.retry_base <= self.retry_max):
            raise ConfigError(f"retry back-off needs 0 < base <= max (got {self.retry_base:g}, "
                              f"{self.retry_max:g})")
        if self.hot_recheck_ids < 1 or self.hot_partitions < 1:
            raise ConfigError(f"hot re-check caps must be >= 1 (got {self.hot_recheck_ids} ids, "
                              f"{self.hot_partitions} partitions)")

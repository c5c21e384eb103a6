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

    def __post_init__(self) -> None:
        if not (0 < self.retry_base <= self.retry_max):
            raise ConfigError(f"retry back-off needs 0 < base <= max (got {self.retry_base:g}, "
                              f"{self.retry_max:g})")

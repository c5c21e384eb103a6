"""Which documents people ask about: a bounded heavy-hitters count of read results (pure).

FastFill's lesson for a backfill is that the order matters: a backfill that re-embeds the
documents that queries actually retrieve first reaches the new model's quality sooner. The proxy
sees every similarity read's answer, so it counts the point ids those answers return, in a
**Space-Saving** sketch (Metwally et al., 2005): at most ``capacity`` counters; a new key takes
over the smallest counter and inherits its count as its error bound. Every key whose true count
exceeds ``total / capacity`` is guaranteed to be kept, memory is bounded whatever the traffic,
and two sketches merge by adding counts (each proxy keeps its own, the backfill merges them).

:func:`backfill_order` is the decision the backfill takes from the counts (a table test covers
it): ``hot`` with counts gives the hottest ids first (ties by id, so every daemon derives the
same list); ``hot`` without counts, or ``id``, gives the plain id order, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KIND = "hot_docs"
DEFAULT_CAPACITY = 4096
#: hot ids the backfill visits first, at most (the rest follows in id order)
DEFAULT_HOT_LIMIT = 2048
ORDERS = ("hot", "id")


@dataclass(slots=True)
class HeavyHitters:
    """Space-Saving counters: ``counts[key]`` over-estimates by at most ``errors[key]``."""

    capacity: int = DEFAULT_CAPACITY
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    total: int = 0
    changes: int = 0  # offers since the owner last flushed

    def offer(self, keys: Iterable[str], weight: int = 1) -> None:
        for key in keys:
            self.total += weight
            self.changes += 1
            if key in self.counts:
                self.counts[key] += weight
            elif len(self.counts) < self.capacity:
                self.counts[key] = weight
                self.errors[key] = 0
            else:  # evict the smallest counter (ties: the smallest key, deterministic)
                low = min(self.counts, key=lambda k: (self.counts[k], k))
                floor = self.counts.pop(low)
                self.errors.pop(low, None)
                self.counts[key] = floor + weight
                self.errors[key] = floor

    def top(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` hottest keys, hottest first, ties by key."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def merged(self, other: HeavyHitters) -> HeavyHitters:
        """Both sketches' counts added, cut back to this one's capacity (hottest kept)."""
        counts = dict(self.counts)
        errors = dict(self.errors)
        for key, c in other.counts.items():
            counts[key] = counts.get(key, 0) + c
            errors[key] = errors.get(key, 0) + other.errors.get(key, 0)
        kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:self.capacity]
        return HeavyHitters(self.capacity, dict(kept), {k: errors[k] for k, _ in kept},
                            self.total + other.total)

    def to_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "total": self.total,
                "counts": [[k, c, self.errors.get(k, 0)] for k, c in self.top(self.capacity)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeavyHitters:
        rows = d.get("counts") or []
        return cls(int(d.get("capacity") or DEFAULT_CAPACITY), {str(r[0]): int(r[1]) for r in rows},
                   {str(r[0]): int(r[2]) for r in rows}, int(d.get("total") or 0))


@dataclass(frozen=True, slots=True)
class Order:
    """What the backfill visits first (``hot``, hottest first) and why."""

    order: str  # "hot" | "id"
    hot: tuple[str, ...]
    reason: str


def backfill_order(requested: str | None, counts: Mapping[str, int], limit: int = DEFAULT_HOT_LIMIT) -> Order:
    """The backfill's visiting order (pure; module docstring). ``requested`` ``None`` means the
    default: ``hot`` when counts exist, else ``id``."""
    if requested not in (None, *ORDERS):
        raise ValueError(f"order must be one of {', '.join(ORDERS)} (got {requested!r})")
    live = {k: c for k, c in counts.items() if c > 0}
    if requested == "id":
        return Order("id", (), "id order (requested)")
    if not live:
        why = "no read counts yet" if requested is None else "--order hot asked, but no read counts yet"
        return Order("id", (), f"id order: {why}")
    hot = tuple(k for k, _ in sorted(live.items(), key=lambda kv: (-kv[1], kv[0]))[:max(0, limit)])
    share = sum(live[k] for k in hot) / sum(live.values())
    return Order("hot", hot, f"hot documents first: {len(hot)} ids holding {share:.0%} of counted "
                             "read hits, then id order")

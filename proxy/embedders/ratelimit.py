"""Token-bucket rate limits for embedding providers (requests per minute, tokens per minute).

:class:`TokenBucket` is pure: it never reads a clock, callers pass ``now`` (seconds, any
monotonic origin), so tests drive it with tables. It works by *reservation*: ``reserve(n, now)``
takes ``n`` tokens at once (the level may go negative) and returns how long the caller must
wait before using them. Callers therefore queue fairly in call order without a lock, and a
request bigger than the bucket (a batch over the per-second token allowance) is allowed but
waits proportionally, instead of starving forever.

:class:`RateLimiter` combines a requests bucket and a tokens bucket and does the sleeping, with
an injectable clock and sleep for tests. The requests bucket holds one request (``burst=1``):
requests are paced evenly at ``rpm / 60`` per second, never bursting, which keeps any 60-second
window at or under ``rpm`` whatever window the provider measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``rate`` tokens per second refill up to ``capacity``; the bucket starts full."""

    rate: float
    capacity: float
    level: float | None = None
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity <= 0:
            raise ValueError("rate and capacity must be positive")

    def refill(self, now: float) -> float:
        """The level at ``now`` (the bucket starts full at its first use)."""
        if self.level is None or self.updated is None:
            self.level, self.updated = self.capacity, now
        elif now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
        return self.level

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens would be available, without taking them."""
        level = self.refill(now)
        return 0.0 if level >= amount else (amount - level) / self.rate

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens now; return the seconds to wait before using them."""
        delay = self.wait_for(amount, now)
        assert self.level is not None
        self.level -= amount
        return delay


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits; either may be ``None`` (unlimited)."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.requests = TokenBucket(rpm / 60.0, 1.0) if rpm else None
        # One second's worth of tokens may burst; a bigger batch simply waits longer.
        self.tokens = TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0)) if tpm else None
        self._clock = clock
        self._sleep = sleep

    def reserve(self, tokens: float) -> float:
        """Reserve one request of ``tokens`` tokens; the delay before it may be sent."""
        now = self._clock()
        delay = 0.0
        if self.requests is not None:
            delay = max(delay, self.requests.reserve(1.0, now))
        if self.tokens is not None:
            delay = max(delay, self.tokens.reserve(float(tokens), now))
        return delay

    async def acquire(self, tokens: float) -> float:
        """Wait until one request of ``tokens`` tokens may be sent; returns the time waited."""
        delay = self.reserve(tokens)
        if delay > 0:
            await self._sleep(delay)
        return delay

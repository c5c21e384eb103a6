"""When to retry a provider call and how long to wait: pure decisions, tested as tables.

* Retryable failures: HTTP 408, 409, 425, 429 and 5xx, timeouts, connection errors and malformed
  response bodies. Everything else (400, 401, 403, 404, 413, 422, ...) is the caller's problem and
  is not retried.
* Waiting: exponential back-off with *full jitter* — a uniform draw in
  ``[0, min(cap, base * 2**attempt))`` — so many clients that failed together do not retry
  together. A server's ``Retry-After`` (seconds, or an HTTP date) is a floor on the wait.
* Budget: at most ``max_retries`` retries per request; a ``Retry-After`` longer than
  :data:`MAX_RETRY_AFTER_S` ends the retries at once (waiting that long inside a request is worse
  than failing clearly).
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass
from typing import Literal

#: Longest Retry-After honoured inside one call; longer means "give up now".
MAX_RETRY_AFTER_S = 60.0

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})

FailureKind = Literal["status", "timeout", "connection", "malformed"]


def is_retryable_status(status: int) -> bool:
    """True for statuses worth retrying: throttling, conflicts in flight and server errors."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``now_epoch`` is the wall clock (``time.time()``) the date is compared with. Returns ``None``
    for a missing or unparseable value; dates in the past give ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return max(0.0, seconds)
    if not math.isnan(seconds):
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient with a missing zone
        return None
    return max(0.0, when.timestamp() - now_epoch)


def backoff_delay(attempt: int, base: float, cap: float, draw: float) -> float:
    """Full-jitter back-off before retry number ``attempt`` (0 = first retry).

    ``draw`` is a uniform random number in ``[0, 1)`` supplied by the caller (pure function).
    """
    ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
    return max(0.0, min(1.0, draw)) * ceiling


@dataclass(frozen=True)
class Retry:
    """Retry after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying; ``reason`` says why, for the error message."""

    reason: str


def decide(
    attempt: int,
    *,
    max_retries: int,
    retry_after: float | None,
    base: float,
    cap: float,
    draw: float,
) -> Retry | GiveUp:
    """After failed attempt number ``attempt`` (0-based) of a retryable failure: wait or stop."""
    if attempt >= max_retries:
        return GiveUp(f"retry budget of {max_retries} retries spent")
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
        return GiveUp(f"provider asked to retry after {retry_after:.0f} s (over {MAX_RETRY_AFTER_S:.0f} s)")
    delay = backoff_delay(attempt, base, cap, draw)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Retry(delay)

"""Riding out outages: which failures the backfill daemon retries, how long it waits, what it says.

:func:`classify` (pure) turns any exception that reached the daemon into a :class:`Verdict`:

* **transient** -- retried with back-off: the upstream or proxy unreachable (connection
  refused or reset, timeouts), answering 5xx, 408/409/425 or 429, the state store unavailable
  for those reasons, the embedder rate-limited or down after its own retries, a lost
  compare-and-set;
* **permanent** -- the daemon stops with the reason: a refused credential (401/403 from the
  upstream, the proxy or the embedder; exit code 1), the migration gone, cancelled or complete
  (exit code 0: nothing is left to do), a configuration error (exit code 2), anything else the
  upstream or embedder refuses (a 400, a 404, a wrong vector size) and unexpected exceptions
  (code 1: retrying the same call would fail the same way).

Why a table and not "retry everything": a refused key or a deleted collection never heals by
waiting, and a daemon that retries it forever looks alive while doing nothing.

:class:`RetryPolicy` is the wait: exponential back-off with jitter, bounded by ``cap``;
:class:`Waiting` is what the daemon reports while it waits (``upstream unavailable
(connection refused), retry 3 in 4 s``) and, for a while after, which outage it recovered from.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import httpx
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy.embedders.retrypolicy import backoff_delay, is_retryable_status
from switchyard.proxy.errors import (
    ConfigError, Conflict, EmbedderBadInput, EmbedderError, Forbidden, NotFound, ProviderDown,
    RateLimited, SwitchyardError, Unauthorized, UpstreamError, WrongDimension,
)
from switchyard.proxy.migration.record import Refused

Kind = Literal["transient", "credential", "gone", "config", "refused"]

#: Exit code of the ``switchyard backfill`` command for each permanent kind.
EXIT_CODES: dict[str, int] = {"credential": 1, "gone": 0, "config": 2, "refused": 1}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about one failure, and the reason in words an operator can act on."""

    kind: Kind
    reason: str

    @property
    def transient(self) -> bool:
        return self.kind == "transient"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.kind, 1)


class MigrationEnded(SwitchyardError):
    """The migration was cancelled, completed or deleted while the daemon ran: nothing left to do."""

    prefix = ""


class Stopped(SwitchyardError):
    """The daemon stopped on a permanent failure; ``verdict`` says which and why."""

    prefix = "backfill stopped: "

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, ``__context__`` and qdrant-client's ``source``."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (getattr(e, "source", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _network(chain: list[BaseException]) -> str | None:
    """The connection-level failure in ``chain`` in a few words, or ``None``."""
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
    for e in chain:
        if isinstance(e, ConnectionResetError | BrokenPipeError | httpx.RemoteProtocolError
                      | httpx.ReadError | httpx.WriteError):
            return "connection reset"
        if isinstance(e, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
            return "timed out"
        if isinstance(e, httpx.ConnectError):
            return "cannot connect"
        if isinstance(e, httpx.NetworkError | OSError):
            return f"network error: {type(e).__name__}"
    return None


def _status_verdict(status: int, detail: str) -> Verdict:
    if status in (401, 403):
        return Verdict("credential", f"upstream refused the credential ({status}{detail}); check "
                                     "--api-key (and, through a proxy, SWITCHYARD_ADMIN_KEY)")
    if status == 429:
        return Verdict("transient", "upstream rate-limited (429)")
    if is_retryable_status(status):
        return Verdict("transient", f"upstream unavailable ({status}{detail})")
    return Verdict("refused", f"upstream refused a call ({status}{detail})")


def _short(content: bytes, limit: int = 160) -> str:
    """The error message of a Qdrant-shaped body (``{"status": {"error": ...}}``), else the
    body's text, cut to ``limit`` characters."""
    text = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
        found = body.get("status", {}).get("error") if isinstance(body, dict) else None
        text = found if isinstance(found, str) and found else text
    except (ValueError, AttributeError):
        pass
    return text if len(text) <= limit else text[:limit - 3] + "..."


def classify(exc: BaseException) -> Verdict:
    """Transient or permanent, and why (see the module docstring for the table)."""
    chain = list(_chain(exc))
    # our own tree first: where code above the seam already decided what the failure is
    if isinstance(exc, MigrationEnded):
        return Verdict("gone", str(exc))
    if isinstance(exc, Unauthorized | Forbidden):
        return Verdict("credential", str(exc))
    if isinstance(exc, ConfigError | WrongDimension):
        return Verdict("config", str(exc))
    if isinstance(exc, RateLimited):
        return Verdict("transient", f"embedder rate-limited ({exc.message})")
    if isinstance(exc, ProviderDown):
        return Verdict("transient", f"embedder unavailable ({exc.message})")
    if isinstance(exc, EmbedderBadInput):
        return Verdict("refused", f"embedder refused the input ({exc.message})")
    if isinstance(exc, EmbedderError):  # non-retryable statuses (a refused key among them)
        return Verdict("refused", f"embedder refused ({exc.message})")
    if isinstance(exc, NotFound | Refused):
        return Verdict("refused", str(exc))
    if isinstance(exc, Conflict):
        return Verdict("transient", f"lost a race ({exc.message})")
    # a foreign error, raw or wrapped by the state store / the copier
    for e in chain:
        if isinstance(e, UnexpectedResponse) and e.status_code is not None:
            return _status_verdict(e.status_code, f" {e.reason_phrase}: {_short(e.content)}"
                                   if e.content else f" {e.reason_phrase}")
    why = _network(chain)
    if why is not None:
        return Verdict("transient", f"upstream unavailable ({why})")
    if any(isinstance(e, ResponseHandlingException | UpstreamError) for e in chain):
        return Verdict("transient", f"upstream unavailable ({exc})")
    return Verdict("refused", f"unexpected {type(exc).__name__}: {exc}")


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, cancellations left out."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [] if isinstance(exc, asyncio.CancelledError) else [exc]


_SEVERITY: dict[str, int] = {"transient": 0, "refused": 1, "gone": 2, "config": 3, "credential": 4}


def classify_all(exc: BaseException) -> tuple[Verdict, BaseException]:
    """The verdict for an exception that may be a group (a task group's failure): the most
    permanent of its leaves, so one refused credential is never retried because a sibling
    failed transiently."""
    found = [(classify(e), e) for e in leaves(exc)] or [(classify(exc), exc)]
    return max(found, key=lambda ve: _SEVERITY[ve[0].kind])


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with "equal jitter": retry ``n`` (1-based) waits a uniform draw in
    ``[c/2, c)`` with ``c = min(cap, base * 2**(n-1))``: spread out (daemons cut off together
    do not come back together) yet never a tight loop."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds before retry ``attempt`` (1-based); ``draw`` uniform in ``[0, 1)``."""
        return backoff_delay(max(0, attempt - 1), self.base, self.cap, 0.5 + min(max(draw, 0.0), 1.0) / 2)


#: How long after an outage the reason keeps saying what the daemon recovered from.
#: seconds a recovery stays in the published reason: long enough for an operator (or a test on a
#: loaded machine) polling status to see it
RECOVERED_NOTE_FOR = 120.0


@dataclass(slots=True)
class Waiting:
    """The daemon's current outage (if any) and the last one it recovered from (pure)."""

    reason: str = ""
    attempt: int = 0
    until: float = 0.0
    since: float = 0.0
    recovered: str = ""
    recovered_at: float = -math.inf

    @property
    def active(self) -> bool:
        return self.attempt > 0

    def fail(self, verdict: Verdict, now: float, delay: float) -> None:
        """A transient failure: wait ``delay`` seconds before the next retry."""
        if not self.active:
            self.since = now
        self.attempt += 1
        self.reason, self.until = verdict.reason, now + delay

    def succeed(self, now: float) -> None:
        """A call went through: the outage, if any, is over."""
        if self.active:
            self.recovered = (f"recovered after {now - self.since:.0f} s waiting: {self.reason}, "
                              f"{self.attempt} {'retry' if self.attempt == 1 else 'retries'}")
            self.recovered_at = now
        self.attempt, self.reason = 0, ""

    def text(self, now: float) -> str:
        """The reason for status and logs: the wait now, or a recent recovery, or ``""``."""
        if self.active:
            return f"{self.reason}, retry {self.attempt} in {max(0.0, self.until - now):.0f} s"
        return self.recovered if now - self.recovered_at <= RECOVERED_NOTE_FOR else ""

    def record(self) -> dict[str, object]:
        """The outage as stored beside the progress record (``attempt`` 0: none now)."""
        return {"reason": self.reason, "attempt": self.attempt, "until": self.until,
                "since": self.since, "recovered": self.recovered}


def published_state(state: str, ended: str, paused: bool, reason: str, waiting: Waiting,
                    now: float) -> tuple[str, str]:
    """(state, reason) a daemon publishes: ended beats paused beats waiting beats throttled
    (an operator or adaptive ``reason``) beats its own ``state``; a recent recovery from an
    outage is said after the reason."""
    if ended:
        return "ended", ended
    if paused:
        return "paused", reason
    wait = waiting.text(now)
    if waiting.active:
        return "waiting", wait
    return ("throttled" if reason else state), "; ".join(r for r in (reason, wait) if r)

"""The backfill's outage decisions as tables: which failures are transient, the back-off, the
reason it publishes, and when a lease is fresh enough to write on."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.backfill import partitions as parts
from switchyard.backfill.outage import (
    RECOVERED_NOTE_FOR,
    MigrationEnded, RetryPolicy, Verdict, Waiting, classify, classify_all, published_state,
)
from switchyard.backfill.partitions import Lease, Partition
from switchyard.proxy.errors import (
    ConfigError, Conflict, EmbedderBadInput, EmbedderError, Forbidden, NotFound, ProviderDown,
    RateLimited, Unauthorized, UpstreamError, WrongDimension,
)
from switchyard.proxy.migration.record import Refused


def status(code: int, body: bytes = b'{"status":{"error":"x"}}') -> UnexpectedResponse:
    return UnexpectedResponse(code, {401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                                     429: "Too Many Requests", 502: "Bad Gateway",
                                     503: "Service Unavailable"}.get(code, ""), body, httpx.Headers())


def wrapped(inner: BaseException, message: str = "state store read failed") -> UpstreamError:
    """As the state store and the copier raise it: ours, ``from`` the foreign error."""
    try:
        raise UpstreamError(message) from inner
    except UpstreamError as exc:
        return exc


def refused_chain() -> ResponseHandlingException:
    """What qdrant-client raises against a closed port (the chain httpx builds)."""
    os_error = OSError("All connection attempts failed")
    os_error.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    connect = httpx.ConnectError("All connection attempts failed")
    connect.__cause__ = os_error
    return ResponseHandlingException(connect)


CASES: list[tuple[str, BaseException, str, str]] = [
    # transient: wait and retry
    ("connection refused", refused_chain(), "transient", "upstream unavailable (connection refused)"),
    ("refused via the store", wrapped(refused_chain()), "transient", "upstream unavailable (connection refused)"),
    ("connection reset", ResponseHandlingException(httpx.RemoteProtocolError("Server disconnected")),
     "transient", "upstream unavailable (connection reset)"),
    ("reset by peer", wrapped(ConnectionResetError(104, "reset")), "transient", "upstream unavailable (connection reset)"),
    ("read timeout", ResponseHandlingException(httpx.ReadTimeout("timed out")), "transient", "upstream unavailable (timed out)"),
    ("asyncio timeout", asyncio.TimeoutError(), "transient", "upstream unavailable (timed out)"),
    ("502 from a proxy", wrapped(status(502)), "transient", "upstream unavailable (502 Bad Gateway"),
    ("503 raw", status(503), "transient", "upstream unavailable (503 Service Unavailable"),
    ("429", status(429), "transient", "upstream rate-limited (429)"),
    ("embedder 429 after retries", RateLimited("retry budget spent"), "transient", "embedder rate-limited"),
    ("embedder down after retries", ProviderDown("HTTP 503"), "transient", "embedder unavailable"),
    ("lost compare-and-set", Conflict("changed since revision 3"), "transient", "lost a race"),
    ("upstream error without detail", UpstreamError("scrolling the source failed"), "transient", "upstream unavailable"),
    # permanent: stop with the reason
    ("401 from the upstream", wrapped(status(401, b'{"status":{"error":"Invalid API key or JWT"},"time":0.1}')),
     "credential", "upstream refused the credential (401 Unauthorized: Invalid API key or JWT); check --api-key"),
    ("403 from a proxy, plain text", status(403, b"forbidden here"), "credential",
     "upstream refused the credential (403 Forbidden: forbidden here)"),
    ("403 raw", status(403), "credential", "upstream refused the credential (403 Forbidden"),
    ("our Unauthorized", Unauthorized("admin key required"), "credential", "admin key required"),
    ("our Forbidden", Forbidden("read-only key"), "credential", "read-only key"),
    ("embedder refused the key", EmbedderError("http://e refused the credentials (HTTP 401: no)"),
     "refused", "embedder refused (Embedding provider error: http://e refused the credentials"),
    ("embedder bad input", EmbedderBadInput("HTTP 400: too long"), "refused", "embedder refused the input"),
    ("wrong dimension", WrongDimension("returned (2, 3) for 2 texts"), "config", "returned (2, 3)"),
    ("config", ConfigError("the openai provider needs base_url"), "config", "needs base_url"),
    ("migration ended", MigrationEnded("migration `m` is cancelled"), "gone", "migration `m` is cancelled"),
    ("unknown model", NotFound("model `b` doesn't exist!"), "refused", "model `b`"),
    ("not started", Refused("the backfill runs once the migration is started"), "refused", "once the migration"),
    ("collection gone", wrapped(status(404, b'{"status":{"error":"Not found: Collection `t` doesn\'t exist!"}}')),
     "refused", "upstream refused a call (404 Not Found: "),
    ("a bug", TypeError("unsupported operand"), "refused", "unexpected TypeError: unsupported operand"),
]


@pytest.mark.parametrize(("name", "exc", "kind", "reason"), CASES, ids=[c[0] for c in CASES])
def test_classify(name: str, exc: BaseException, kind: str, reason: str) -> None:
    verdict = classify(exc)
    assert verdict.kind == kind, verdict
    assert verdict.reason.startswith(reason) or reason in verdict.reason, verdict.reason
    assert verdict.transient == (kind == "transient")


@pytest.mark.parametrize(("kind", "code"), [("credential", 1), ("refused", 1), ("config", 2), ("gone", 0)])
def test_exit_codes(kind: str, code: int) -> None:
    assert Verdict(kind, "x").exit_code == code  # type: ignore[arg-type]


def test_a_group_is_as_permanent_as_its_worst_leaf() -> None:
    group = ExceptionGroup("tg", [refused_chain(), ExceptionGroup("inner", [wrapped(status(401))])])
    verdict, cause = classify_all(group)
    assert verdict.kind == "credential" and isinstance(cause, UpstreamError)
    assert classify_all(ExceptionGroup("tg", [refused_chain()]))[0].transient
    cancelled_only = BaseExceptionGroup("tg", [asyncio.CancelledError()])
    assert classify_all(cancelled_only)[0].kind == "refused"  # nothing to wait for


DELAYS = [
    # attempt, draw, delay: equal jitter in [c/2, c), c = min(cap, base * 2**(attempt-1))
    (1, 0.0, 0.25), (1, 0.999, 0.49975), (2, 0.0, 0.5), (3, 0.5, 1.5), (5, 0.0, 4.0),
    (6, 0.0, 5.0), (7, 1.0, 10.0), (40, 0.0, 5.0), (40, 0.999, 9.995),
]


@pytest.mark.parametrize(("attempt", "draw", "delay"), DELAYS)
def test_retry_delay_is_exponential_with_jitter_and_bounded(attempt: int, draw: float, delay: float) -> None:
    policy = RetryPolicy(base=0.5, cap=10.0)
    assert policy.delay(attempt, draw) == pytest.approx(delay)


def test_waiting_text_counts_down_then_reports_the_recovery() -> None:
    w = Waiting()
    assert not w.active and w.text(0.0) == ""
    down = Verdict("transient", "upstream unavailable (connection refused)")
    w.fail(down, now=100.0, delay=1.0)
    w.fail(down, now=101.0, delay=2.0)
    w.fail(down, now=103.0, delay=4.2)
    assert w.active and w.attempt == 3
    assert w.text(103.0) == "upstream unavailable (connection refused), retry 3 in 4 s"
    assert w.text(200.0).endswith("retry 3 in 0 s")
    w.succeed(108.0)
    assert not w.active
    note = "recovered after 8 s waiting: upstream unavailable (connection refused), 3 retries"
    assert w.text(110.0) == note and w.text(108.0 + RECOVERED_NOTE_FOR) == note
    assert w.text(109.0 + RECOVERED_NOTE_FOR) == ""  # the note fades
    assert w.record()["recovered"] == note and w.record()["attempt"] == 0


def waiting(active: bool) -> Waiting:
    w = Waiting()
    if active:
        w.fail(Verdict("transient", "embedder unavailable (x)"), now=0.0, delay=3.0)
    return w


STATES = [
    # state, ended, paused, reason, waiting, (published state, reason)
    ("running", "", False, "", False, ("running", "")),
    ("running", "", False, "", True, ("waiting", "embedder unavailable (x), retry 1 in 3 s")),
    ("running", "", True, "paused by operator", True, ("paused", "paused by operator")),
    ("running", "", False, "throttled by operator to 5 points/s", False,
     ("throttled", "throttled by operator to 5 points/s")),
    ("idle", "migration `m` is cancelled", False, "", True, ("ended", "migration `m` is cancelled")),
]


@pytest.mark.parametrize(("state", "ended", "paused", "reason", "active", "expected"), STATES)
def test_published_state(state: str, ended: str, paused: bool, reason: str, active: bool,
                         expected: tuple[str, str]) -> None:
    assert published_state(state, ended, paused, reason, waiting(active), 0.0) == expected


def test_published_state_mentions_a_recent_recovery() -> None:
    w = waiting(True)
    w.succeed(5.0)
    assert published_state("running", "", False, "", w, 6.0) == (
        "running", "recovered after 5 s waiting: embedder unavailable (x), 1 retry")


FRESH = [
    # expires - now, ttl, fresh: a third of the TTL must be left to write without renewing
    (10.0, 9.0, True), (3.0, 9.0, True), (2.9, 9.0, False), (0.0, 9.0, False), (-5.0, 9.0, False),
]


@pytest.mark.parametrize(("left", "ttl", "fresh"), FRESH)
def test_fresh_for_write(left: float, ttl: float, fresh: bool) -> None:
    lease = parts.claim(Lease("m", Partition(0, "int", 0, 10)), "me", now=100.0 - (ttl - left), ttl=ttl)
    assert parts.fresh_for_write(lease, 100.0, ttl) is fresh

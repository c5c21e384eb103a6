"""Pure decisions of the embedder layer, as tables: limiter, back-off, Retry-After, batching, wire, pooling."""

from __future__ import annotations

import base64
import email.utils

import numpy as np
import orjson
import pytest

from switchyard.proxy.embedders.batching import apply_truncation, approx_tokens, plan_batches
from switchyard.proxy.embedders.local_onnx import pool
from switchyard.proxy.embedders.openai_wire import (
    MalformedResponse,
    endpoint_url,
    error_text,
    parse_embeddings,
    request_body,
    safe_url,
)
from switchyard.proxy.embedders.ratelimit import RateLimiter, TokenBucket
from switchyard.proxy.embedders.retrypolicy import (
    MAX_RETRY_AFTER_S,
    GiveUp,
    Retry,
    backoff_delay,
    decide,
    is_retryable_status,
    parse_retry_after,
)
from switchyard.proxy.errors import EmbedderBadInput

# --- token bucket -------------------------------------------------------------------------------

# (rate/s, capacity, [(now, amount)], expected delays)
BUCKET_CASES = [
    # starts full: a burst of `capacity` goes at once, the next waits 1/rate
    (10.0, 1.0, [(0.0, 1), (0.0, 1), (0.0, 1)], [0.0, 0.1, 0.2]),
    (10.0, 3.0, [(0.0, 1), (0.0, 1), (0.0, 1), (0.0, 1)], [0.0, 0.0, 0.0, 0.1]),
    # refill over time: after 0.5 s at 2/s one token is back
    (2.0, 1.0, [(0.0, 1), (0.5, 1), (0.5, 1)], [0.0, 0.0, 0.5]),
    # refill is capped at capacity: a long idle period does not allow a huge burst
    (1.0, 2.0, [(0.0, 2), (100.0, 2), (100.0, 1)], [0.0, 0.0, 1.0]),
    # an amount bigger than the bucket is allowed but waits in proportion
    (100.0, 100.0, [(0.0, 100), (0.0, 250)], [0.0, 2.5]),
    # time going backwards (another clock's jitter) never refills
    (1.0, 1.0, [(5.0, 1), (4.0, 1)], [0.0, 1.0]),
]


@pytest.mark.parametrize(("rate", "capacity", "calls", "delays"), BUCKET_CASES)
def test_token_bucket_reservations(rate: float, capacity: float, calls: list[tuple[float, int]], delays: list[float]) -> None:
    bucket = TokenBucket(rate, capacity)
    got = [bucket.reserve(amount, now) for now, amount in calls]
    assert got == pytest.approx(delays)


def test_token_bucket_wait_for_does_not_take() -> None:
    bucket = TokenBucket(1.0, 1.0)
    assert bucket.wait_for(1, 0.0) == 0.0
    assert bucket.wait_for(1, 0.0) == 0.0
    assert bucket.reserve(1, 0.0) == 0.0
    assert bucket.wait_for(1, 0.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_token_bucket_rejects_nonpositive(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity)


# (rpm, tpm, tokens per request, number of requests at t=0, expected delay of each)
LIMITER_CASES = [
    (600, None, 10, 4, [0.0, 0.1, 0.2, 0.3]),  # 10 req/s, evenly paced
    (None, 600, 10, 3, [0.0, 1.0, 2.0]),  # 10 tok/s, a 10-token burst: one request, then 1 s each
    (None, 600, 5, 3, [0.0, 0.0, 0.5]),  # two 5-token requests fit the burst
    (60, 6000, 50, 3, [0.0, 1.0, 2.0]),  # rpm is the tighter limit
    (6000, 600, 10, 3, [0.0, 1.0, 2.0]),  # tpm is the tighter limit (rpm alone: 0.01 s apart)
    (None, None, 10**6, 3, [0.0, 0.0, 0.0]),  # unlimited
]


@pytest.mark.parametrize(("rpm", "tpm", "tokens", "count", "delays"), LIMITER_CASES)
async def test_rate_limiter_with_injected_clock(
    rpm: float | None, tpm: float | None, tokens: int, count: int, delays: list[float]
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(rpm, tpm, clock=lambda: 0.0, sleep=fake_sleep)
    got = [await limiter.acquire(tokens) for _ in range(count)]
    assert got == pytest.approx(delays)
    assert slept == pytest.approx([d for d in delays if d > 0])


async def test_rate_limiter_steady_rate_over_a_simulated_minute() -> None:
    """Driven by a fake clock that advances when the limiter sleeps: 600 rpm gives 600 in 60 s."""
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(600, None, clock=lambda: now[0], sleep=fake_sleep)
    sent = []
    while now[0] < 60.0:
        await limiter.acquire(1)
        if now[0] < 60.0:
            sent.append(now[0])
    assert len(sent) == 600
    assert np.diff(sent) == pytest.approx(np.full(599, 0.1))


# --- Retry-After and back-off --------------------------------------------------------------------

NOW = 1_700_000_000.0
RETRY_AFTER_CASES = [
    (None, None),
    ("", None),
    ("   ", None),
    ("0", 0.0),
    ("3", 3.0),
    (" 7 ", 7.0),
    ("1.5", 1.5),
    ("-4", 0.0),
    ("soon", None),
    ("inf", None),
    ("nan", None),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
    ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP date
    ("Mon, 99 Foo 2015 07:28:00 GMT", None),
]


@pytest.mark.parametrize(("header", "expected"), RETRY_AFTER_CASES)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    got = parse_retry_after(header, NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


BACKOFF_CASES = [
    # attempt, base, cap, draw, expected
    (0, 0.5, 20.0, 0.0, 0.0),
    (0, 0.5, 20.0, 0.999, 0.4995),
    (1, 0.5, 20.0, 0.5, 0.5),
    (3, 0.5, 20.0, 0.5, 2.0),
    (10, 0.5, 20.0, 0.5, 10.0),  # capped at 20 before the draw
    (1000, 0.5, 20.0, 1.0, 20.0),  # huge attempts do not overflow
    (2, 1.0, 20.0, 1.5, 4.0),  # draws are clamped to [0, 1]
]


@pytest.mark.parametrize(("attempt", "base", "cap", "draw", "expected"), BACKOFF_CASES)
def test_backoff_delay_full_jitter(attempt: int, base: float, cap: float, draw: float, expected: float) -> None:
    assert backoff_delay(attempt, base, cap, draw) == pytest.approx(expected)


DECIDE_CASES = [
    # attempt, max_retries, retry_after, draw, expected
    (0, 3, None, 0.5, Retry(0.25)),
    (2, 3, None, 0.5, Retry(1.0)),
    (3, 3, None, 0.5, GiveUp("retry budget of 3 retries spent")),
    (0, 0, None, 0.5, GiveUp("retry budget of 0 retries spent")),
    (0, 3, 5.0, 0.5, Retry(5.0)),  # Retry-After is a floor...
    (4, 9, 1.0, 0.5, Retry(4.0)),  # ...not a ceiling
    (0, 3, MAX_RETRY_AFTER_S, 0.5, Retry(MAX_RETRY_AFTER_S)),
    (0, 3, 3600.0, 0.5, GiveUp(f"provider asked to retry after 3600 s (over {MAX_RETRY_AFTER_S:.0f} s)")),
]


@pytest.mark.parametrize(("attempt", "max_retries", "retry_after", "draw", "expected"), DECIDE_CASES)
def test_decide(attempt: int, max_retries: int, retry_after: float | None, draw: float, expected: object) -> None:
    got = decide(attempt, max_retries=max_retries, retry_after=retry_after, base=0.5, cap=20.0, draw=draw)
    if isinstance(expected, Retry):
        assert isinstance(got, Retry) and got.delay == pytest.approx(expected.delay)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, False), (400, False), (401, False), (403, False), (404, False), (408, True), (409, True),
     (413, False), (422, False), (425, True), (429, True), (500, True), (502, True), (503, True), (599, True)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


# --- batching and truncation ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "tokens"), [("", 1), ("abc", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_approx_tokens(text: str, tokens: int) -> None:
    assert approx_tokens(text) == tokens


PLAN_CASES = [
    ([], 4, 100, []),
    ([1, 1, 1, 1, 1], 2, 100, [(0, 2), (2, 4), (4, 5)]),
    ([10, 10, 10], 10, 20, [(0, 2), (2, 3)]),
    ([50, 1, 1], 10, 20, [(0, 1), (1, 3)]),  # an oversized item gets a batch of its own
    ([5, 50, 5], 10, 20, [(0, 1), (1, 2), (2, 3)]),
    ([7] * 6, 3, 21, [(0, 3), (3, 6)]),  # both limits exactly met
]


@pytest.mark.parametrize(("counts", "max_batch", "max_tokens", "expected"), PLAN_CASES)
def test_plan_batches(counts: list[int], max_batch: int, max_tokens: int, expected: list[tuple[int, int]]) -> None:
    got = plan_batches(counts, max_batch, max_tokens)
    assert got == expected
    covered = [i for s, e in got for i in range(s, e)]
    assert covered == list(range(len(counts)))


def test_truncation_policies() -> None:
    texts = ["short", "x" * 50, "y" * 41]
    assert apply_truncation(texts, 10, "end") == ["short", "x" * 40, "y" * 40]
    assert apply_truncation(texts, 20, "error") == texts
    with pytest.raises(EmbedderBadInput, match="input 1 is about 13 tokens, over the model's limit of 10"):
        apply_truncation(texts, 10, "error")


# --- OpenAI wire ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("base", "url"),
    [("http://h:1", "http://h:1/v1/embeddings"), ("http://h:1/", "http://h:1/v1/embeddings"),
     ("http://h:1/v1", "http://h:1/v1/embeddings"), ("https://h/v1/", "https://h/v1/embeddings"),
     ("http://h/openai", "http://h/openai/v1/embeddings"), ("http://h/api/v1", "http://h/api/v1/embeddings")],
)
def test_endpoint_url(base: str, url: str) -> None:
    assert endpoint_url(base) == url


@pytest.mark.parametrize(
    ("url", "safe"),
    [("http://h:1/v1/embeddings", "http://h:1/v1/embeddings"),
     ("https://user:pa55@h/v1/embeddings?api-key=k#frag", "https://h/v1/embeddings"),
     ("http://[::1]:8080/v1/embeddings", "http://[::1]:8080/v1/embeddings")],
)
def test_safe_url(url: str, safe: str) -> None:
    assert safe_url(url) == safe


def test_request_body() -> None:
    assert request_body("m", ["a"], None) == {"model": "m", "input": ["a"], "encoding_format": "float"}
    assert request_body("m", ["a"], 8)["dimensions"] == 8


def test_parse_embeddings_reorders_by_index_and_reads_usage() -> None:
    body = {"data": [{"index": 1, "embedding": [3.0, 4.0]}, {"index": 0, "embedding": [1.0, 2.0]}],
            "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    vectors, usage = parse_embeddings(orjson.dumps(body), 2)
    assert vectors.dtype == np.float32
    assert vectors.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert usage == 7


def test_parse_embeddings_accepts_base64() -> None:
    raw = base64.b64encode(np.asarray([0.5, -1.0], dtype="<f4").tobytes()).decode()
    vectors, usage = parse_embeddings(orjson.dumps({"data": [{"index": 0, "embedding": raw}]}), 1)
    assert vectors.tolist() == [[0.5, -1.0]] and usage is None


MALFORMED_CASES = [
    (b"<html>bad gateway</html>", 1, "not JSON"),
    (b"[]", 1, "no 'data' list"),
    (b'{"data": "x"}', 1, "no 'data' list"),
    (b'{"data": []}', 1, "0 embeddings for 1 inputs"),
    (b'{"data": [{"embedding": [1]}]}', 1, "bad or missing 'index'"),
    (b'{"data": [{"index": 5, "embedding": [1]}]}', 1, "bad or missing 'index'"),
    (b'{"data": [{"index": true, "embedding": [1]}]}', 1, "bad or missing 'index'"),
    (b'{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [1]}]}', 2, "appears twice"),
    (b'{"data": [{"index": 0, "embedding": []}]}', 1, "not a non-empty list"),
    (b'{"data": [{"index": 0, "embedding": ["a"]}]}', 1, "non-numeric"),
    (b'{"data": [{"index": 0, "embedding": [[1, 2]]}]}', 1, "not a flat list"),
    (b'{"data": [{"index": 0, "embedding": "!!"}]}', 1, "not base64"),
    (b'{"data": [{"index": 0, "embedding": "AAA="}]}', 1, "not float32s"),
    (b'{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [1]}]}', 2, "different lengths"),
]


@pytest.mark.parametrize(("raw", "count", "reason"), MALFORMED_CASES)
def test_parse_embeddings_malformed(raw: bytes, count: int, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_embeddings(raw, count)


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b'{"error": {"message": "too long", "type": "invalid_request_error"}}', "too long"),
     (b'{"error": "overloaded"}', "overloaded"), (b"plain text", "'plain text'")],
)
def test_error_text(raw: bytes, text: str) -> None:
    assert error_text(raw) == text


# --- pooling -------------------------------------------------------------------------------------

def test_pool_table() -> None:
    tokens = np.asarray([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]], dtype=np.float32)  # (1, 3, 2)
    mask = np.asarray([[1, 1, 0]])
    assert pool(tokens, mask, "auto").tolist() == [[2.0, 1.0]]  # padding excluded
    assert pool(tokens, mask, "mean").tolist() == [[2.0, 1.0]]
    assert pool(tokens, mask, "cls").tolist() == [[1.0, 0.0]]
    pooled = np.asarray([[0.5, 0.25]], dtype=np.float32)
    assert pool(pooled, mask, "auto").tolist() == [[0.5, 0.25]]
    assert pool(pooled, mask, "none").tolist() == [[0.5, 0.25]]
    assert pool(tokens, np.zeros((1, 3), dtype=np.int64), "mean").tolist() == [[0.0, 0.0]]  # no NaN
    for bad_output, pooling in ((pooled, "mean"), (pooled, "cls"), (tokens, "none")):
        with pytest.raises(ValueError, match="does not fit"):
            pool(bad_output, mask, pooling)


# --- output checks -------------------------------------------------------------------------------

def test_finish_vectors_checks_and_normalises() -> None:
    from switchyard.proxy.embedders.base import finish_vectors
    from switchyard.proxy.errors import EmbedderError, WrongDimension
    from switchyard.proxy.modelspec import ModelSpec

    spec = ModelSpec(id="t", provider="hashing", model="m", dimensions=2)
    out = finish_vectors(spec, np.asarray([[3.0, 4.0], [0.0, 0.0]]), 2, "src")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)  # zero rows stay zero
    raw = ModelSpec(id="t", provider="hashing", model="m", dimensions=2, normalize=False)
    assert finish_vectors(raw, np.asarray([[3.0, 4.0]]), 1, "src").tolist() == [[3.0, 4.0]]
    with pytest.raises(WrongDimension, match="src.*returned 3-dimensional vectors, the spec says 2"):
        finish_vectors(spec, np.zeros((1, 3)), 1, "src")
    with pytest.raises(EmbedderError, match="for 2 texts"):
        finish_vectors(spec, np.zeros((1, 2)), 2, "src")
    with pytest.raises(EmbedderError, match="NaN or infinite"):
        finish_vectors(spec, np.asarray([[np.nan, 1.0]]), 1, "src")


@pytest.mark.parametrize("provider", ["hashing", "openai"])
async def test_non_string_texts_are_bad_input(provider: str) -> None:
    from switchyard.proxy.embedders import make_embedder
    from switchyard.proxy.modelspec import ModelSpec

    spec = ModelSpec(id="t", provider=provider, model="m", dimensions=4, base_url="http://127.0.0.1:9")
    embedder = make_embedder(spec)
    try:
        with pytest.raises(EmbedderBadInput, match="text 1 is a NoneType, not a string"):
            await embedder.embed(["ok", None])  # type: ignore[list-item]
    finally:
        await embedder.aclose()


async def test_pool_counts_the_cpu_of_inline_embedders() -> None:
    """``switchyard_embedding_cpu_seconds_total`` grows by the worker thread's time, and only
    for the model that embedded (``bench/write_path.py`` reads it)."""
    from prometheus_client import REGISTRY

    from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
    from switchyard.proxy.modelspec import ModelSpec

    def cpu(model: str) -> float:
        return REGISTRY.get_sample_value("switchyard_embedding_cpu_seconds_total", {"model": model}) or 0.0

    spec = ModelSpec(id="cpu-count", provider="hashing", model="cpu-count", dimensions=16)
    before, other = cpu(spec.id), cpu("cpu-other")
    embedders = EmbedderPool()
    try:
        out = await embedders.embed(spec, [f"text {i} " * 20 for i in range(200)])
    finally:
        await embedders.aclose()
    assert out.shape == (200, 16)
    assert cpu(spec.id) > before and cpu("cpu-other") == other

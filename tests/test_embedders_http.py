"""The OpenAI-compatible HTTP embedder against a real local server (tests/openai_stub.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from openai_stub import Malformed, OpenAIStub, Slow, Status, WrongDim

from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.embedders.openai_http import OpenAIEmbedder
from switchyard.proxy.errors import EmbedderBadInput, EmbedderError, ProviderDown, RateLimited, WrongDimension
from switchyard.proxy.modelspec import ModelSpec

MODEL = "stub-model"
TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'dogs'}" for i in range(23)]


@pytest.fixture
async def stub() -> AsyncIterator[OpenAIStub]:
    server = OpenAIStub(default_dimensions=32)
    await server.start()
    yield server
    await server.stop()


def make(base_url: str, **options: Any) -> OpenAIEmbedder:
    spec = ModelSpec(id="http-test", provider="openai", model=MODEL, dimensions=options.pop("dimensions", 32),
                     base_url=base_url, backoff_base_s=0.01, backoff_max_s=0.05, **options)
    embedder = make_embedder(spec)
    assert isinstance(embedder, OpenAIEmbedder)
    return embedder


async def test_order_preserved_across_concurrent_batches(stub: OpenAIStub) -> None:
    embedder = make(stub.base_url, max_batch=4, max_concurrency=3)
    try:
        vectors = await embedder.embed(TEXTS)
    finally:
        await embedder.aclose()
    assert vectors.dtype == np.float32 and vectors.shape == (23, 32)
    np.testing.assert_allclose(vectors, stub.vectors(MODEL, TEXTS), atol=1e-6)
    assert len(stub.requests) == 6  # ceil(23 / 4), every response in reverse order
    assert all(len(r.body["input"]) <= 4 for r in stub.requests)
    assert sorted(t for r in stub.requests for t in r.body["input"]) == sorted(TEXTS)
    assert stub.requests[0].body["encoding_format"] == "float" and "dimensions" not in stub.requests[0].body
    assert stub.max_in_flight <= 3


async def test_batches_split_by_approximate_tokens(stub: OpenAIStub) -> None:
    texts = ["x" * 40] * 10  # 10 tokens each
    embedder = make(stub.base_url, max_batch=100, max_tokens_per_batch=30)
    try:
        await embedder.embed(texts)
    finally:
        await embedder.aclose()
    assert [len(r.body["input"]) for r in stub.requests] == [3, 3, 3, 1]


async def test_concurrency_is_bounded(stub: OpenAIStub) -> None:
    stub.script(*[Slow(0.15)] * 6)
    embedder = make(stub.base_url, max_batch=1, max_concurrency=2)
    try:
        await embedder.embed(TEXTS[:6])
    finally:
        await embedder.aclose()
    assert stub.max_in_flight == 2


async def test_retries_through_failures_and_succeeds(stub: OpenAIStub) -> None:
    stub.script(Status(500), Malformed(), Status(503), Status(429, retry_after="0"), Malformed(b"not json"))
    embedder = make(stub.base_url, max_retries=5)
    try:
        vectors = await embedder.embed(TEXTS)
    finally:
        await embedder.aclose()
    np.testing.assert_allclose(vectors, stub.vectors(MODEL, TEXTS), atol=1e-6)
    assert len(stub.requests) == 6 and embedder.stats.retries == 5


async def test_retry_after_is_honoured(stub: OpenAIStub) -> None:
    stub.script(Status(429, retry_after="1"))
    embedder = make(stub.base_url)
    try:
        await embedder.embed(TEXTS[:2])
    finally:
        await embedder.aclose()
    assert len(stub.requests) == 2
    assert stub.requests[1].at - stub.requests[0].at >= 1.0


async def test_rate_limited_after_the_retry_budget(stub: OpenAIStub) -> None:
    stub.script(*[Status(429, retry_after="0")] * 10)
    embedder = make(stub.base_url, max_retries=2)
    try:
        with pytest.raises(RateLimited) as info:
            await embedder.embed(TEXTS[:2])
    finally:
        await embedder.aclose()
    message = str(info.value)
    assert f"{stub.base_url}/v1/embeddings failed after 3 attempt(s)" in message
    assert "retry budget of 2 retries spent" in message and "HTTP 429" in message
    assert info.value.http_status == 429
    assert len(stub.requests) == 3


async def test_provider_down_after_5xx_and_malformed(stub: OpenAIStub) -> None:
    stub.script(Status(502), Status(500), Malformed())
    embedder = make(stub.base_url, max_retries=2)
    try:
        with pytest.raises(ProviderDown, match=r"failed after 3 attempt\(s\).*malformed response"):
            await embedder.embed(TEXTS[:2])
    finally:
        await embedder.aclose()
    assert len(stub.requests) == 3


async def test_too_long_retry_after_gives_up_at_once(stub: OpenAIStub) -> None:
    stub.script(Status(429, retry_after="3600"))
    embedder = make(stub.base_url, max_retries=5)
    try:
        with pytest.raises(RateLimited, match="asked to retry after 3600 s"):
            await embedder.embed(TEXTS[:1])
    finally:
        await embedder.aclose()
    assert len(stub.requests) == 1


async def test_timeouts_are_retried_then_reported(stub: OpenAIStub) -> None:
    stub.script(Slow(2.0))
    embedder = make(stub.base_url, timeout_s=0.5, max_retries=1)
    try:
        vectors = await embedder.embed(TEXTS[:3])
        np.testing.assert_allclose(vectors, stub.vectors(MODEL, TEXTS[:3]), atol=1e-6)
        stub.script(Slow(2.0), Slow(2.0))
        with pytest.raises(ProviderDown, match=r"after 2 attempt\(s\).*no answer within 0.5 s"):
            await embedder.embed(TEXTS[:3])
    finally:
        await embedder.aclose()


async def test_connection_refused_is_provider_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = make(f"http://127.0.0.1:{port}", max_retries=2)
    try:
        with pytest.raises(ProviderDown) as info:
            await embedder.embed(["hello"])
    finally:
        await embedder.aclose()
    assert f"http://127.0.0.1:{port}/v1/embeddings failed after 3 attempt(s)" in str(info.value)
    assert info.value.http_status == 503


async def test_wrong_dimension_is_detected_and_not_retried(stub: OpenAIStub) -> None:
    stub.script(WrongDim(31))
    embedder = make(stub.base_url, max_batch=8, max_concurrency=1)
    try:
        with pytest.raises(WrongDimension, match="returned 31-dimensional vectors, the spec says 32"):
            await embedder.embed(TEXTS)
    finally:
        await embedder.aclose()
    assert len(stub.requests) == 1  # the failure cancelled the other batches


async def test_dimensions_passed_through_only_when_asked(stub: OpenAIStub) -> None:
    embedder = make(stub.base_url, dimensions=16, pass_dimensions=True)
    try:
        vectors = await embedder.embed(TEXTS[:3])
    finally:
        await embedder.aclose()
    assert stub.requests[-1].body["dimensions"] == 16 and vectors.shape == (3, 16)
    plain = make(stub.base_url, dimensions=16)
    try:
        with pytest.raises(WrongDimension):
            await plain.embed(TEXTS[:3])  # the server's default size is 32
    finally:
        await plain.aclose()
    assert "dimensions" not in stub.requests[-1].body


async def test_client_errors_are_not_retried(stub: OpenAIStub) -> None:
    stub.script(Status(400, body=b'{"error": {"message": "input too long"}}'))
    embedder = make(stub.base_url)
    try:
        with pytest.raises(EmbedderBadInput, match="refused the input.*input too long"):
            await embedder.embed(TEXTS[:2])
    finally:
        await embedder.aclose()
    assert len(stub.requests) == 1


async def test_truncation_policy(stub: OpenAIStub) -> None:
    long_text = "word " * 100  # 500 chars, about 125 tokens
    strict = make(stub.base_url, max_length=50, truncate="error")
    try:
        with pytest.raises(EmbedderBadInput, match="input 1 is about 125 tokens, over the model's limit of 50"):
            await strict.embed(["short", long_text])
    finally:
        await strict.aclose()
    assert stub.requests == []
    cutting = make(stub.base_url, max_length=50)
    try:
        await cutting.embed(["short", long_text])
    finally:
        await cutting.aclose()
    assert stub.requests[0].body["input"] == ["short", long_text[:200]]


async def test_api_key_from_env_never_in_repr_logs_or_errors(
    stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-7f3a9c0d1e2b4a5f"
    monkeypatch.setenv("SWITCHYARD_TEST_EMBED_KEY", key)
    stub.required_key = key
    caplog.set_level(logging.DEBUG)
    stub.script(Status(500, body=f'{{"error": {{"message": "echo {key}"}}}}'.encode()))
    embedder = make(stub.base_url, api_key_env="SWITCHYARD_TEST_EMBED_KEY")
    try:
        await embedder.embed(TEXTS[:2])
        assert [r.authorization for r in stub.requests] == [f"Bearer {key}"] * 2
        monkeypatch.setenv("SWITCHYARD_TEST_EMBED_KEY", "sk-wrong")  # rotated: read per request
        with pytest.raises(EmbedderError, match="refused the credentials") as info:
            await embedder.embed(TEXTS[:2])
    finally:
        await embedder.aclose()
    assert stub.requests[-1].authorization == "Bearer sk-wrong"
    assert "SWITCHYARD_TEST_EMBED_KEY" in str(info.value) and "sk-wrong" not in str(info.value)
    visible = [repr(embedder), repr(embedder.spec), str(embedder.spec.to_dict()), caplog.text, str(info.value)]
    assert "retry 1/5" in caplog.text  # the scripted 500 (which echoed the key) was logged...
    assert all(key not in text for text in visible)  # ...without the key


async def test_empty_input_and_closed_embedder(stub: OpenAIStub) -> None:
    embedder = make(stub.base_url)
    assert (await embedder.embed([])).shape == (0, 32)
    await embedder.aclose()
    with pytest.raises(EmbedderError, match="is closed"):
        await embedder.embed(["x"])
    assert stub.requests == []


async def test_requests_per_minute_limit(stub: OpenAIStub) -> None:
    """600 rpm = 10 requests/s, over real HTTP: never more than the limit allows (the exact
    schedule is the pure limiter's, tested on a fake clock in test_embedders_pure). Only an
    upper bound is checked, so a slow machine cannot fail it."""
    embedder = make(stub.base_url, max_batch=1, max_concurrency=4, rpm=600)
    try:
        await embedder.embed([f"text {i}" for i in range(21)])
    finally:
        await embedder.aclose()
    arrivals = [r.at for r in stub.requests]
    assert len(arrivals) == 21
    for i in range(1, len(arrivals)):  # request i may go at 0.1 s * i after the first, not sooner
        assert arrivals[i] - arrivals[0] >= 0.1 * i - 0.02, (i, arrivals[i] - arrivals[0])


async def test_tokens_per_minute_limit(stub: OpenAIStub) -> None:
    """6000 tpm = 100 tokens/s with one second of burst: tokens sent by time t stay under 100 + 100 t."""
    embedder = make(stub.base_url, max_batch=1, max_concurrency=4, tpm=6000)
    try:
        await embedder.embed(["y" * 40] * 25)  # 10 tokens each
    finally:
        await embedder.aclose()
    start = stub.requests[0].at
    for sent, request in enumerate(stub.requests, start=1):
        assert sent * 10 <= 100 + 100 * (request.at - start) + 10
    elapsed = stub.requests[-1].at - start
    assert elapsed >= 1.35  # 250 tokens: 100 at once, 150 more at 100/s

"""The OpenAI-compatible HTTP embedder (OpenAI, vLLM, TEI, Ollama, LiteLLM, Infinity, ...).

One ``embed`` call: apply the length policy, split into batches by count and approximate tokens
(:mod:`switchyard.proxy.embedders.batching`), and send the batches concurrently — at most
``max_concurrency`` in flight, each attempt paced by the rpm/tpm :class:`RateLimiter` — as owned
tasks. Each batch is retried on 429/5xx/timeouts/connection errors/malformed bodies with
full-jitter back-off, ``Retry-After`` as a floor (:mod:`switchyard.proxy.embedders.retrypolicy`); when the
budget is spent the call fails with :class:`RateLimited` (last failure a 429) or
:class:`ProviderDown`, naming the endpoint (no credentials) and the number of attempts.

The API key is read from the environment variable named by ``spec.api_key_env`` when each
request is sent (so a rotated key is picked up) and only ever goes into the ``Authorization``
header: never into a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import numpy as np
import orjson

from switchyard.proxy.embedders.base import check_texts, check_vectors, empty_result, finish_vectors, run_all
from switchyard.proxy.embedders.batching import apply_truncation, approx_tokens, plan_batches
from switchyard.proxy.embedders.openai_wire import (
    MalformedResponse,
    endpoint_url,
    error_text,
    parse_embeddings,
    request_body,
    safe_url,
)
from switchyard.proxy.embedders.ratelimit import RateLimiter
from switchyard.proxy.embedders.retrypolicy import GiveUp, decide, is_retryable_status, parse_retry_after
from switchyard.proxy.errors import ConfigError, EmbedderBadInput, EmbedderError, ProviderDown, RateLimited
from switchyard.proxy.modelspec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_TOKENS_PER_BATCH = 32_768
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_LENGTH = 8191  # OpenAI's per-input limit for its embedding models


@dataclass
class UsageStats:
    """Counters since the embedder was made (for reports and cost estimates)."""

    requests: int = 0
    retries: int = 0
    texts: int = 0
    approx_tokens: int = 0
    reported_tokens: int = 0


class _Retryable(Exception):
    """One failed attempt worth retrying (internal; never escapes this module)."""

    def __init__(self, detail: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if spec.base_url is None:
            raise ConfigError(f"model {spec.id!r}: the openai provider needs base_url")
        if spec.api_key_env is not None and spec.api_key_env not in os.environ:
            raise ConfigError(
                f"model {spec.id!r}: environment variable {spec.api_key_env} (api_key_env) is not set"
            )
        self.spec = spec
        self.url = endpoint_url(spec.base_url)
        self.safe_url = safe_url(self.url)
        self.max_batch = spec.max_batch or DEFAULT_MAX_BATCH
        self.max_tokens_per_batch = spec.max_tokens_per_batch or DEFAULT_MAX_TOKENS_PER_BATCH
        self.max_length = spec.max_length or DEFAULT_MAX_LENGTH
        self.stats = UsageStats()
        self._limiter = RateLimiter(spec.rpm, spec.tpm, clock=clock, sleep=sleep)
        self.max_concurrency = spec.max_concurrency or DEFAULT_MAX_CONCURRENCY
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._sleep = sleep
        self._draw = draw
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(id={self.spec.id!r}, model={self.spec.model!r}, url={self.safe_url!r})"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._closed:
            raise EmbedderError(f"embedder for model {self.spec.id!r} is closed")
        if not texts:
            return empty_result(self.spec)
        items = apply_truncation(check_texts(texts), self.max_length, self.spec.truncate)
        counts = [approx_tokens(t) for t in items]
        batches = plan_batches(counts, self.max_batch, self.max_tokens_per_batch)
        jobs = [self._batch_job(items[s:e], sum(counts[s:e])) for s, e in batches]
        parts = await run_all(jobs)
        return finish_vectors(self.spec, np.concatenate(parts), len(items), self.safe_url)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _batch_job(self, texts: list[str], tokens: int) -> Callable[[], Awaitable[np.ndarray]]:
        async def job() -> np.ndarray:
            async with self._slots:
                vectors = await self._post_with_retries(texts, tokens)
            self.stats.texts += len(texts)
            self.stats.approx_tokens += tokens
            return check_vectors(self.spec, vectors, len(texts), self.safe_url)  # fail fast, per batch

        return job

    async def _post_with_retries(self, texts: list[str], tokens: int) -> np.ndarray:
        dims = self.spec.dimensions if self.spec.pass_dimensions else None
        payload = orjson.dumps(request_body(self.spec.model, texts, dims))
        attempt = 0
        while True:
            await self._limiter.acquire(tokens)
            try:
                return await self._post_once(payload, len(texts))
            except _Retryable as failure:
                decision = decide(
                    attempt,
                    max_retries=self.spec.max_retries,
                    retry_after=failure.retry_after,
                    base=self.spec.backoff_base_s,
                    cap=self.spec.backoff_max_s,
                    draw=self._draw(),
                )
                if isinstance(decision, GiveUp):
                    raise self._final_error(failure, attempt + 1, decision.reason) from failure
                log.warning(
                    "embedding request to %s failed (%s); retry %d/%d in %.2fs",
                    self.safe_url, failure.detail, attempt + 1, self.spec.max_retries, decision.delay,
                )
                self.stats.retries += 1
                await self._sleep(decision.delay)
                attempt += 1

    async def _post_once(self, payload: bytes, count: int) -> np.ndarray:
        session = self._get_session()
        self.stats.requests += 1
        try:
            async with session.post(self.url, data=payload, headers=self._headers()) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError as exc:
            raise _Retryable(f"no answer within {self.spec.timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Retryable(self._scrub(f"{type(exc).__name__}: {exc}")) from exc
        if 200 <= status < 300:
            try:
                vectors, reported = parse_embeddings(raw, count)
            except MalformedResponse as exc:
                raise _Retryable(f"malformed response: {exc}") from exc
            self.stats.reported_tokens += reported or 0
            return vectors
        detail = self._scrub(f"HTTP {status}: {error_text(raw)}")
        if is_retryable_status(status):
            raise _Retryable(detail, status=status, retry_after=parse_retry_after(retry_after, time.time()))
        raise self._refusal(status, detail)

    def _refusal(self, status: int, detail: str) -> EmbedderError:
        """The error for a non-retryable HTTP status."""
        if status in (400, 413, 422):
            return EmbedderBadInput(f"{self.safe_url} refused the input ({detail})")
        if status in (401, 403):
            where = f"the key in ${self.spec.api_key_env}" if self.spec.api_key_env else "no API key (api_key_env unset)"
            return EmbedderError(f"{self.safe_url} refused the credentials ({detail}); sent {where}")
        return EmbedderError(f"{self.safe_url} answered {detail}")

    def _final_error(self, failure: _Retryable, attempts: int, reason: str) -> EmbedderError:
        message = f"{self.safe_url} failed after {attempts} attempt(s), {reason}; last error: {failure.detail}"
        return RateLimited(message) if failure.status == 429 else ProviderDown(message)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.spec.api_key_env) if self.spec.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _scrub(self, text: str) -> str:
        """``text`` with the API key removed, should a server or library echo it back."""
        key = os.environ.get(self.spec.api_key_env) if self.spec.api_key_env else None
        return text.replace(key, "***") if key else text

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.spec.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                raise_for_status=False,
            )
        return self._session

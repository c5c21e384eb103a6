"""The one embedder protocol, the shared output checks, and the factory.

Every provider returns ``float32`` arrays of shape ``(len(texts), spec.dimensions)``, in input
order, L2-normalised when ``spec.normalize`` (a zero vector stays zero). Failures raise the
:class:`switchyard.proxy.errors.EmbedderError` family only: ``EmbedderBadInput`` (the input was refused),
``RateLimited`` / ``ProviderDown`` (after the retry budget), ``WrongDimension`` (the model's
vectors do not have ``spec.dimensions`` components).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar, cast, runtime_checkable

import numpy as np

from switchyard.proxy.errors import ConfigError, EmbedderBadInput, EmbedderError, WrongDimension
from switchyard.proxy.modelspec import ModelSpec

T = TypeVar("T")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of ``spec``'s space."""

    spec: ModelSpec

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``float32`` array ``(len(texts), spec.dimensions)`` in input order."""
        ...

    async def aclose(self) -> None:
        """Release sessions, threads and connections; the embedder is unusable afterwards."""
        ...


def finish_vectors(spec: ModelSpec, vectors: np.ndarray, count: int, source: str) -> np.ndarray:
    """Check a provider's output (:func:`check_vectors`), cast to float32, normalise per spec.

    ``source`` names the provider in error messages (a URL without secrets, a file path).
    """
    out = check_vectors(spec, vectors, count, source)
    return l2_normalize(out) if spec.normalize else out


def check_vectors(spec: ModelSpec, vectors: np.ndarray, count: int, source: str) -> np.ndarray:
    """``vectors`` as float32 if it is ``(count, spec.dimensions)`` and finite, else the error."""
    if vectors.ndim != 2 or vectors.shape[0] != count:
        raise EmbedderError(f"{source} returned {vectors.shape} for {count} texts")
    if vectors.shape[1] != spec.dimensions:
        raise WrongDimension(
            f"model {spec.id!r} ({source}) returned {vectors.shape[1]}-dimensional vectors, "
            f"the spec says {spec.dimensions}"
        )
    out = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(out).all():
        raise EmbedderError(f"{source} returned vectors with NaN or infinite components")
    return out


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32, copy=False)


def check_texts(texts: Sequence[object]) -> list[str]:
    """``texts`` as a list, or :class:`EmbedderBadInput` naming the first item that is not a string."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbedderBadInput(f"text {index} is a {type(text).__name__}, not a string")
    return cast(list[str], list(texts))


def empty_result(spec: ModelSpec) -> np.ndarray:
    return np.zeros((0, spec.dimensions), dtype=np.float32)


async def run_all(jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``jobs`` concurrently as owned tasks; results in job order.

    On the first failure the other jobs are cancelled (``asyncio.TaskGroup``) and that failure is
    raised as itself, not wrapped in an ``ExceptionGroup``, so callers catch the error tree.
    """
    if len(jobs) == 1:
        return [await jobs[0]()]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_call(job)) for job in jobs]
    except BaseExceptionGroup as failures:
        first = _first_leaf(failures)
        raise first.with_traceback(first.__traceback__) from first.__cause__
    return [task.result() for task in tasks]


async def _call(job: Callable[[], Awaitable[T]]) -> T:
    return await job()


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def make_embedder(spec: ModelSpec) -> Embedder:
    """The provider for ``spec``. Provider modules import lazily (``local`` needs an extra)."""
    if spec.provider == "hashing":
        from switchyard.proxy.embedders.hashing import HashingEmbedder

        return HashingEmbedder(spec)
    if spec.provider == "openai":
        from switchyard.proxy.embedders.openai_http import OpenAIEmbedder

        return OpenAIEmbedder(spec)
    if spec.provider == "local":
        from switchyard.proxy.embedders.local_onnx import LocalOnnxEmbedder

        return LocalOnnxEmbedder(spec)
    raise ConfigError(f"unknown embedding provider {spec.provider!r}")

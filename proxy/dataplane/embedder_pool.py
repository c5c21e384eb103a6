"""One live embedder per model spec, shared by mirrored writes, merged reads and inference.

Building an embedder can be costly (an HTTP session, an ONNX session), so the proxy keeps one per
spec and reuses it. The cache key is the spec's ``id`` plus its ``fingerprint`` *and* its full
field set: a spec re-registered with new provider options (a new URL, a new batch size) gets a
new embedder, and the superseded one is closed when the pool closes (never while a call may still
be using it).

Nothing CPU-heavy runs on the event loop thread: an embedder that computes on the calling thread
(it has ``embed_sync``, like the hashing embedder) is run in the pool's own bounded worker
threads; local ONNX models already run in worker threads and HTTP providers are async I/O. The
pool also carries the :class:`~switchyard.proxy.intercept.inference.InferenceLimits` the proxy applies to
inference text, and counts what it embeds (``switchyard_embedded_texts_total``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np
from prometheus_client import Counter, Gauge

from switchyard.proxy.embedders import Embedder, make_embedder
from switchyard.proxy.intercept.inference import InferenceLimits
from switchyard.proxy.modelspec import ModelSpec

#: Worker threads for embedders that compute on the calling thread (2: the cores a sidecar gets;
#: more would only queue on the GIL).
EMBED_THREADS = 2

EMBEDDED_TEXTS = Counter("switchyard_embedded_texts_total",
                         "Texts the proxy sent to an embedder, by model.", ["model"])
EMBEDDED_CHARS = Counter("switchyard_embedded_chars_total",
                         "Characters of text the proxy sent to an embedder, by model.", ["model"])
EMBEDDING_CPU = Counter("switchyard_embedding_cpu_seconds_total",
                        "CPU seconds of embedders that compute in the proxy's own worker threads "
                        "(the hashing embedder), by model.", ["model"])
EMBEDDING_NOW = Gauge("switchyard_embeddings_in_flight", "Embedding calls of the pool running now.")


@runtime_checkable
class ComputesInline(Protocol):
    """An embedder whose work is plain CPU on the calling thread (run it in a worker thread)."""

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray: ...


def spec_key(spec: ModelSpec) -> tuple[str, str, tuple[tuple[str, object], ...]]:
    """Cache identity of ``spec``: id, fingerprint and every other field (provider options too)."""
    fields = tuple(sorted((k, v) for k, v in spec.to_dict().items() if k not in ("id", "fingerprint")))
    return (spec.id, spec.fingerprint or "", fields)


class EmbedderPool:
    """Cached embedders keyed by :func:`spec_key`; ``aclose`` releases all of them."""

    def __init__(self, limits: InferenceLimits | None = None, threads: int = EMBED_THREADS) -> None:
        self._embedders: dict[tuple[str, str, tuple[tuple[str, object], ...]], Embedder] = {}
        self._closed = False
        self.limits = limits or InferenceLimits()
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embed")

    def get(self, spec: ModelSpec) -> Embedder:
        """The embedder for ``spec``, built on first use (construction does no I/O)."""
        if self._closed:
            raise RuntimeError("embedder pool is closed")
        key = spec_key(spec)
        embedder = self._embedders.get(key)
        if embedder is None:
            embedder = make_embedder(spec)
            self._embedders[key] = embedder
        return embedder

    async def embed(self, spec: ModelSpec, texts: Sequence[str]) -> np.ndarray:
        """``float32`` ``(len(texts), spec.dimensions)``; errors are the ``EmbedderError`` family.

        Never computes on the event loop thread (module docstring).
        """
        embedder = self.get(spec)
        EMBEDDED_TEXTS.labels(spec.id).inc(len(texts))
        EMBEDDED_CHARS.labels(spec.id).inc(sum(len(t) for t in texts))
        with EMBEDDING_NOW.track_inprogress():
            if isinstance(embedder, ComputesInline):
                batch = list(texts)
                return await asyncio.get_running_loop().run_in_executor(self._threads, _timed, embedder, batch, spec.id)
            return await embedder.embed(texts)

    def __len__(self) -> int:
        return len(self._embedders)

    async def aclose(self) -> None:
        """Close every embedder (failures of one do not keep the others open)."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        embedders, self._embedders = list(self._embedders.values()), {}
        results = await asyncio.gather(*(e.aclose() for e in embedders), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result


def _timed(embedder: ComputesInline, texts: list[str], model: str) -> np.ndarray:
    """``embedder.embed_sync(texts)``, its thread's CPU time counted in ``EMBEDDING_CPU``: what
    embedding costs inside the proxy (a cold cache after other work costs more than the same
    call in a tight loop), which ``bench/write_path.py`` reports next to mirrored writes."""
    start = time.thread_time()
    try:
        return embedder.embed_sync(texts)
    finally:
        EMBEDDING_CPU.labels(model).inc(time.thread_time() - start)

"""One live embedder per model spec, shared by mirrored writes, merged reads and inference.

Building an embedder can be costly (an HTTP session, an ONNX session), so the proxy keeps one per
spec and reuses it. The cache key is the spec's ``id`` plus its ``fingerprint`` *and* its full
field set: a spec re-registered with new provider options (a new URL, a new batch size) gets a
new embedder, and the superseded one is closed when the pool closes (never while a call may still
be using it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from proxy.embedders import Embedder, make_embedder
from proxy.modelspec import ModelSpec


def spec_key(spec: ModelSpec) -> tuple[str, str, tuple[tuple[str, object], ...]]:
    """Cache identity of ``spec``: id, fingerprint and every other field (provider options too)."""
    fields = tuple(sorted((k, v) for k, v in spec.to_dict().items() if k not in ("id", "fingerprint")))
    return (spec.id, spec.fingerprint or "", fields)


class EmbedderPool:
    """Cached embedders keyed by :func:`spec_key`; ``aclose`` releases all of them."""

    def __init__(self) -> None:
        self._embedders: dict[tuple[str, str, tuple[tuple[str, object], ...]], Embedder] = {}
        self._closed = False

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
        """``float32`` ``(len(texts), spec.dimensions)``; errors are the ``EmbedderError`` family."""
        return await self.get(spec).embed(texts)

    def __len__(self) -> int:
        return len(self._embedders)

    async def aclose(self) -> None:
        """Close every embedder (failures of one do not keep the others open)."""
        self._closed = True
        embedders, self._embedders = list(self._embedders.values()), {}
        results = await asyncio.gather(*(e.aclose() for e in embedders), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result

"""A deterministic, dependency-free embedder for tests and demos (numpy only).

Feature hashing: the text is lower-cased and split into word tokens; every unigram (weight 1)
and bigram (weight 0.5) is hashed with keyed BLAKE2b — the key is derived from ``spec.model``, so
the model name is the seed — to one of ``dimensions`` buckets with a ± sign. Texts sharing words
share components, so similar texts get similar vectors (cosine grows with word overlap), which
makes search results meaningful enough for logic tests and the demo. Two specs with the same
``model`` and ``dimensions`` produce identical vectors whatever their ``id``; a different
``model`` is a different, unrelated space. A text without word tokens maps to one fixed
feature, so no vector is all-zero.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from switchyard.proxy.embedders.base import check_texts, empty_result, finish_vectors
from switchyard.proxy.modelspec import ModelSpec

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_EMPTY_FEATURE = "\x00empty"
BIGRAM_WEIGHT = 0.5


def features(text: str) -> list[tuple[str, float]]:
    """Weighted features of ``text``: word unigrams and bigrams (pure)."""
    words = _WORD_RE.findall(text.lower())
    if not words:
        return [(_EMPTY_FEATURE, 1.0)]
    feats = [(w, 1.0) for w in words]
    feats += [(f"{a} {b}", BIGRAM_WEIGHT) for a, b in zip(words, words[1:])]
    return feats


class HashingEmbedder:
    """Feature-hashing vectors seeded by ``spec.model``."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._key = hashlib.blake2b(spec.model.encode("utf-8"), digest_size=32).digest()
        self._slot = lru_cache(maxsize=65536)(self._compute_slot)

    def __repr__(self) -> str:
        return f"HashingEmbedder(id={self.spec.id!r}, seed={self.spec.model!r}, dimensions={self.spec.dimensions})"

    def _compute_slot(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), key=self._key, digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return (value >> 1) % self.spec.dimensions, (1.0 if value & 1 else -1.0)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors, computed on the calling thread."""
        if not texts:
            return empty_result(self.spec)
        out = np.zeros((len(texts), self.spec.dimensions), dtype=np.float32)
        # Collected in lists and added in one numpy call: a scalar ``out[row, index] +=`` per
        # feature cost ~25 % more (12.1 vs 9.5 ms for the write-path bench's 1,024 texts).
        # The sums are of +-1 and +-0.5, exact in float32 in any order: the same vectors.
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        slot = self._slot
        for row, text in enumerate(check_texts(texts)):
            for feature, weight in features(text):
                index, sign = slot(feature)
                rows.append(row)
                cols.append(index)
                vals.append(sign * weight)
        np.add.at(out, (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)),
                  np.asarray(vals, dtype=np.float32))
        return finish_vectors(self.spec, out, len(texts), f"hashing:{self.spec.model}")

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        # Microseconds per text: cheaper inline than a thread hop.
        return self.embed_sync(texts)

    async def aclose(self) -> None:
        self._slot.cache_clear()

"""Fingerprints identify vector spaces, not names; and the hashing embedder they are tested with."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
from openai_stub import OpenAIStub

from switchyard.proxy.embedders import fingerprint, fingerprint_of, make_embedder
from switchyard.proxy.embedders.base import Embedder
from switchyard.proxy.embedders.fingerprint import PROBES
from switchyard.proxy.embedders.hashing import HashingEmbedder, features
from switchyard.proxy.modelspec import ModelSpec


def hashing(model: str = "seed-a", dimensions: int = 64, **options: object) -> ModelSpec:
    return ModelSpec(id=options.pop("id", "h"), provider="hashing", model=model, dimensions=dimensions, **options)  # type: ignore[arg-type]


async def fp(spec: ModelSpec) -> str:
    embedder = make_embedder(spec)
    try:
        return await fingerprint(embedder)
    finally:
        await embedder.aclose()


class NoisyEmbedder:
    """Another embedder's vectors plus Gaussian noise (a different BLAS, kernel or build)."""

    def __init__(self, inner: Embedder, scale: float, seed: int) -> None:
        self.spec = inner.spec
        self._inner = inner
        self._rng = np.random.default_rng(seed)
        self._scale = scale

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        clean = await self._inner.embed(texts)
        return (clean + self._rng.normal(0.0, self._scale, clean.shape)).astype(np.float32)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_same_model_under_two_ids_has_one_fingerprint() -> None:
    first = await fp(hashing(id="registered-once", version="1"))
    second = await fp(hashing(id="registered-twice", version="7"))
    assert first == second and first.startswith("sha256:") and len(first) == 71


async def test_same_space_through_another_provider_has_the_same_fingerprint() -> None:
    """The stub serves hashing vectors over HTTP: same space, same fingerprint."""
    stub = OpenAIStub(default_dimensions=64)
    await stub.start()
    try:
        http = ModelSpec(id="via-http", provider="openai", model="seed-a", dimensions=64, base_url=stub.base_url)
        assert await fp(http) == await fp(hashing("seed-a"))
    finally:
        await stub.stop()


@pytest.mark.parametrize(
    "change",
    [{"model": "seed-b"}, {"dimensions": 65}, {"distance": "Dot"}, {"normalize": False}],
    ids=["other-seed", "other-size", "other-distance", "not-normalised"],
)
async def test_a_changed_space_changes_the_fingerprint(change: dict[str, object]) -> None:
    base = hashing()
    assert await fp(dataclasses.replace(base, **change)) != await fp(base)  # type: ignore[arg-type]


async def test_float_noise_does_not_change_it() -> None:
    for seed in range(5):
        for model in ("seed-a", "seed-b"):
            spec = hashing(model, dimensions=384)
            clean = await fp(spec)
            noisy = NoisyEmbedder(make_embedder(spec), 1e-7, seed)
            assert await fingerprint(noisy) == clean
            await noisy.aclose()


async def test_local_models_l3_and_l6_differ_and_noise_does_not_matter() -> None:
    l3 = ModelSpec(id="l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384)
    l6 = ModelSpec(id="l6", provider="local", model="pkg:all-MiniLM-L6-v2-int8", dimensions=384)
    e3, e6 = make_embedder(l3), make_embedder(l6)
    try:
        v3, v6 = await e3.embed(PROBES), await e6.embed(PROBES)
    finally:
        await e3.aclose()
        await e6.aclose()
    assert fingerprint_of(l3, v3) != fingerprint_of(l6, v6)  # same size, distance, normalisation
    rng = np.random.default_rng(0)
    assert fingerprint_of(l6, v6 + rng.normal(0, 1e-7, v6.shape)) == fingerprint_of(l6, v6)
    assert fingerprint_of(dataclasses.replace(l6, id="again"), v6) == fingerprint_of(l6, v6)


def test_a_small_real_change_is_caught() -> None:
    """Vectors moved to cosine ~0.999 of the old ones (a fine-tune) are another space."""
    spec = hashing(dimensions=384)
    clean = HashingEmbedder(spec).embed_sync(PROBES)
    rng = np.random.default_rng(3)
    moved = clean + rng.normal(0, 0.045 / np.sqrt(384), clean.shape)
    assert float(np.mean(np.sum(clean * moved, axis=1) / np.linalg.norm(moved, axis=1))) > 0.998
    assert fingerprint_of(spec, moved) != fingerprint_of(spec, clean)


def test_norms_matter_when_not_normalised() -> None:
    spec = hashing(normalize=False)
    vectors = HashingEmbedder(spec).embed_sync(PROBES)
    assert fingerprint_of(spec, vectors * 3.0) != fingerprint_of(spec, vectors)


# --- the hashing embedder itself -----------------------------------------------------------------

def test_features() -> None:
    assert features("Hello, world hello") == [("hello", 1.0), ("world", 1.0), ("hello", 1.0),
                                              ("hello world", 0.5), ("world hello", 0.5)]
    assert features("  ...  ") == [("\x00empty", 1.0)]


async def test_hashing_is_deterministic_and_seeded_by_model_name() -> None:
    texts = ["the cat sat on the mat", "", "Ünïcode wörds"]
    a = await HashingEmbedder(hashing("s1", id="x")).embed(texts)
    b = await HashingEmbedder(hashing("s1", id="y")).embed(texts)
    c = await HashingEmbedder(hashing("s2")).embed(texts)
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)  # no zero vector, even for ""


async def test_hashing_similar_texts_are_closer() -> None:
    embedder = HashingEmbedder(hashing(dimensions=256))
    base, near, far = await embedder.embed(
        ["how do I sort a list in python", "how do I sort a dict in python", "rain expected this weekend"]
    )
    assert float(base @ near) > 0.5 > float(base @ far)

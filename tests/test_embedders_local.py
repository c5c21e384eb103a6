"""The local ONNX provider with the two packaged models (extra ``switchyard[models]``).

The models are loaded once per module (a sync fixture running its own event loop) and every
vector the assertions need is computed there; tests that need their own embedder settings
(strict truncation, small batches) make one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.embedders.local_models import PRESETS, TOKENIZER_ENV, resolve_local_model
from switchyard.proxy.errors import ConfigError, EmbedderBadInput
from switchyard.proxy.modelspec import ModelSpec

L3 = "pkg:paraphrase-MiniLM-L3-v2"
L6 = "pkg:all-MiniLM-L6-v2-int8"
PAIR = ("A man is eating food.", "A man is eating a piece of bread.")
TEXTS = [
    "Why are Python strings immutable?",
    "How do I read a file line by line?",
    "The train leaves the station at noon.",
    "She plays the violin in an orchestra.",
    "What is the difference between a list and a tuple?",
    "Stock markets fell after the announcement.",
    "How can I sort a dictionary by value?",
    "The cat is sleeping on the warm windowsill.",
    "Rain is expected throughout the weekend.",
    "How do I create a virtual environment?",
    "He repaired the bicycle with a new chain.",
    "Why does floating-point arithmetic look inaccurate?",
    "The museum opens a new exhibition on Monday.",
    "How do threads differ from processes?",
    "Fresh bread smells wonderful in the morning.",
    "What does the global interpreter lock do?",
    "The children built a sandcastle at the beach.",
    "How do I format a date as a string?",
    "Our team won the match in extra time.",
    "What is a generator expression?",
]


def spec_for(model: str, **options: object) -> ModelSpec:
    return ModelSpec(id=model.removeprefix("pkg:"), provider="local", model=model, dimensions=384, **options)  # type: ignore[arg-type]


async def embed_with(spec: ModelSpec, texts: Sequence[str]) -> np.ndarray:
    embedder = make_embedder(spec)
    try:
        return await embedder.embed(texts)
    finally:
        await embedder.aclose()


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    async def compute() -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for model in (L3, L6):
            embedder = make_embedder(spec_for(model))
            try:
                out[f"{model}/pair"] = await embedder.embed(PAIR)
                out[f"{model}/texts"] = await embedder.embed(TEXTS)
            finally:
                await embedder.aclose()
        return out

    return asyncio.run(compute())


def test_known_similarities(vectors: dict[str, np.ndarray]) -> None:
    for model, expected in ((L6, 0.753), (L3, 0.780)):
        a, b = vectors[f"{model}/pair"]
        assert float(a @ b) == pytest.approx(expected, abs=0.02), model


def test_output_shape_type_and_normalisation(vectors: dict[str, np.ndarray]) -> None:
    for model in (L3, L6):
        got = vectors[f"{model}/texts"]
        assert got.dtype == np.float32 and got.shape == (20, 384)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_the_two_models_are_unrelated_spaces(vectors: dict[str, np.ndarray]) -> None:
    same_text = np.sum(vectors[f"{L3}/texts"] * vectors[f"{L6}/texts"], axis=1)
    assert float(same_text.mean()) < 0.5
    # ...while each model alone ranks a paraphrase above unrelated text
    for model in (L3, L6):
        got = vectors[f"{model}/texts"]
        sims = got @ got.T
        assert sims[0, 11] > sims[0, 2]  # "immutable strings" ~ "floating point" (Python FAQ) > "train"


async def test_results_do_not_depend_on_batching_or_order(vectors: dict[str, np.ndarray]) -> None:
    """Sorting by length, padding to the batch's longest text and re-ordering are invisible."""
    for model in (L3, L6):
        reversed_texts = TEXTS[::-1]
        got = await embed_with(spec_for(model, max_batch=3), reversed_texts)
        np.testing.assert_allclose(got[::-1], vectors[f"{model}/texts"], atol=2e-5)


async def test_truncation_policy_for_long_texts() -> None:
    long_text = " ".join(["python"] * 400)
    truncated = await embed_with(spec_for(L3), [long_text, "short"])
    assert truncated.shape == (2, 384) and np.isfinite(truncated).all()
    with pytest.raises(EmbedderBadInput, match="over model 'paraphrase-MiniLM-L3-v2'.s limit of 128"):
        await embed_with(spec_for(L3, truncate="error"), ["short", long_text])
    fits = await embed_with(spec_for(L3, truncate="error"), ["short"])
    assert fits.shape == (1, 384)


async def test_empty_batch() -> None:
    assert (await embed_with(spec_for(L6), [])).shape == (0, 384)


def test_preset_resolution(tmp_path: Path) -> None:
    model = resolve_local_model(spec_for(L6), environ={})
    assert model.model_path.name == "model.onnx" and model.model_path.is_file()
    assert model.tokenizer_path.name == "bert-uncased-tokenizer.json"
    assert (model.output, model.pooling, model.max_length) == ("last_hidden_state", "mean", 256)
    l3 = resolve_local_model(spec_for(L3, max_length=64, output="461"), environ={})
    assert (l3.output, l3.pooling, l3.max_length) == ("461", "none", 64)
    assert l3.model_path.suffix == ".onnx" and "paraphrase-MiniLM-L3-v2" in l3.model_path.name
    assert set(PRESETS) == {L3, L6}


def test_tokenizer_lookup_order(tmp_path: Path) -> None:
    own = tmp_path / "own.json"
    own.write_text("{}")
    env_dir = tmp_path / "envdir"
    env_dir.mkdir()
    (env_dir / "bert-uncased-tokenizer.json").write_text("{}")
    assert resolve_local_model(spec_for(L6, tokenizer=str(own)), environ={TOKENIZER_ENV: str(env_dir)}).tokenizer_path == own
    assert resolve_local_model(spec_for(L6), environ={TOKENIZER_ENV: str(env_dir)}).tokenizer_path == (
        env_dir / "bert-uncased-tokenizer.json"
    )
    # a path model: tokenizer.json beside the model file wins over the environment
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    path_spec = ModelSpec(id="p", provider="local", model=str(tmp_path), dimensions=8)
    found = resolve_local_model(path_spec, environ={TOKENIZER_ENV: str(own)})
    assert (found.model_path, found.tokenizer_path) == (tmp_path / "model.onnx", tmp_path / "tokenizer.json")


def test_local_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown local model preset 'pkg:nope'"):
        resolve_local_model(spec_for("pkg:nope"), environ={})
    with pytest.raises(ConfigError, match="makes 384-dimensional vectors, the spec says 256"):
        resolve_local_model(ModelSpec(id="x", provider="local", model=L6, dimensions=256), environ={})
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_local_model(ModelSpec(id="x", provider="local", model=str(tmp_path / "missing"), dimensions=8))
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="no tokenizer found.*SWITCHYARD_TOKENIZER"):
        resolve_local_model(ModelSpec(id="x", provider="local", model=str(tmp_path), dimensions=8), environ={})

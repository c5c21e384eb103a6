"""ModelSpec: validation, JSON round trip, Qdrant vector params, and the factory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from qdrant_client.http import models as qm

from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.embedders.hashing import HashingEmbedder
from switchyard.proxy.embedders.openai_http import OpenAIEmbedder
from switchyard.proxy.errors import BadRequest, ConfigError
from switchyard.proxy.modelspec import ModelSpec

BASE: dict[str, Any] = {"id": "m1", "provider": "hashing", "model": "seed", "dimensions": 16}

INVALID_CASES = [
    ({"id": ""}, "id must be"),
    ({"id": "has space"}, "id must be"),
    ({"provider": "cohere"}, "provider must be one of openai, local, hashing"),
    ({"model": " "}, "model must be a non-empty string"),
    ({"dimensions": 0}, "dimensions must be an integer in 1..65536"),
    ({"dimensions": 3.0}, "dimensions must be an integer"),
    ({"dimensions": True}, "dimensions must be an integer"),
    ({"distance": "cosine"}, "distance must be one of Cosine, Dot, Euclid, Manhattan"),
    ({"normalize": "yes"}, "normalize must be true or false"),
    ({"version": ""}, "version must be a non-empty string"),
    ({"fingerprint": "md5:abc"}, "fingerprint must look like sha256:"),
    ({"max_batch": 0}, "max_batch must be a positive integer"),
    ({"rpm": -1}, "rpm must be a positive number"),
    ({"tpm": float("inf")}, "tpm must be a positive number"),
    ({"timeout_s": 0}, "timeout_s must be a positive number"),
    ({"max_retries": -1}, "max_retries must be an integer in 0..100"),
    ({"truncate": "start"}, "truncate must be one of end, error"),
    ({"pooling": "max"}, "pooling must be one of auto, mean, cls, none"),
    ({"price_per_million_tokens": -0.1}, "price_per_million_tokens must be a non-negative number"),
    ({"provider": "openai"}, "the openai provider needs base_url"),
    ({"provider": "openai", "base_url": "ftp://x"}, "the openai provider needs base_url"),
]


@pytest.mark.parametrize(("change", "message"), INVALID_CASES)
def test_invalid_specs_are_refused_with_a_clear_message(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        ModelSpec(**{**BASE, **change})
    assert info.value.http_status == 400


def test_api_key_env_must_be_a_name_and_a_key_is_never_echoed() -> None:
    secret = "sk-live-0123456789abcdef"
    with pytest.raises(BadRequest) as info:
        ModelSpec(**{**BASE, "api_key_env": secret})
    assert "NAME of an environment variable" in str(info.value)
    assert secret not in str(info.value)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(BadRequest) as info:
        ModelSpec(**{**BASE, "dimensions": -1, "distance": "L2", "max_retries": 1000})
    text = str(info.value)
    assert "dimensions" in text and "distance" in text and "max_retries" in text


def test_round_trip_through_json() -> None:
    spec = ModelSpec(
        id="oai-small", provider="openai", model="text-embedding-3-small", dimensions=512, distance="Dot",
        normalize=False, version="2024-01", fingerprint="sha256:" + "a" * 64, base_url="http://h:1/v1",
        api_key_env="OPENAI_API_KEY", max_batch=128, rpm=3000.0, tpm=1e6, pass_dimensions=True,
        price_per_million_tokens=0.02,
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert ModelSpec.from_dict(data) == spec
    assert data["api_key_env"] == "OPENAI_API_KEY"


def test_from_dict_strictness_and_error_class() -> None:
    with pytest.raises(BadRequest, match="unknown model spec field"):
        ModelSpec.from_dict({**BASE, "dimension": 3})
    assert ModelSpec.from_dict({**BASE, "added_later": 1}, strict=False) == ModelSpec(**BASE)
    with pytest.raises(BadRequest, match="missing required field.*dimensions"):
        ModelSpec.from_dict({"id": "x", "provider": "hashing", "model": "m"})
    with pytest.raises(ConfigError, match="dimensions must be"):
        ModelSpec.from_dict({**BASE, "dimensions": 0}, error=ConfigError)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        ModelSpec.from_dict([1, 2], error=ConfigError)  # type: ignore[arg-type]


@pytest.mark.parametrize("distance", ["Cosine", "Dot", "Euclid", "Manhattan"])
def test_vector_params(distance: str) -> None:
    params = ModelSpec(**{**BASE, "distance": distance}).vector_params()
    assert params == qm.VectorParams(size=16, distance=qm.Distance(distance))


def test_space_excludes_identity_fields() -> None:
    assert ModelSpec(**BASE).space() == {"dimensions": 16, "distance": "Cosine", "normalize": True}


def test_spec_is_frozen() -> None:
    spec = ModelSpec(**BASE)
    with pytest.raises(AttributeError):
        spec.dimensions = 3  # type: ignore[misc]


def test_factory_builds_each_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_embedder(ModelSpec(**BASE)), HashingEmbedder)
    http = ModelSpec(id="o", provider="openai", model="m", dimensions=4, base_url="http://127.0.0.1:9")
    assert isinstance(make_embedder(http), OpenAIEmbedder)
    monkeypatch.delenv("SWITCHYARD_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SWITCHYARD_TEST_UNSET_KEY.*is not set"):
        make_embedder(ModelSpec(**{**http.to_dict(), "api_key_env": "SWITCHYARD_TEST_UNSET_KEY"}))

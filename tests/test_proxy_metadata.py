"""Story AC1 through the real proxy: every upserted point carries its embedding metadata.

Upserts of every shape (list, batch, upsert inside a batch update) in all four client modes
come back with the fields and with their payload types intact; ``enforce`` rejects a misfit
write whole and leaves the collection untouched; ``enrich`` keeps a client's own metadata.
"""

from __future__ import annotations

import inspect
from contextlib import closing
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from conftest import MODES
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from proxy_fixtures import RunningProxy, client_kwargs, switchyard  # noqa: F401  (fixture)

DIM = 4
PAYLOAD = {
    "int": 7, "float": 7.5, "whole_float": 2.0, "neg": -3, "str": "héllo", "bool": True,
    "null": None, "list": [1, 2.5, "x", None], "nested": {"a": {"b": [{"c": 1}]}},
}


def _spec(tag: str) -> ModelSpec:
    return ModelSpec(id=f"hash-{tag}", provider="hashing", model=f"hash-{tag}", dimensions=DIM,
                     distance="Cosine", normalize=True, version="7")


async def _call(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def _client(switchyard: RunningProxy, mode: str) -> Any:
    cls = QdrantClient if mode.startswith("sync") else AsyncQdrantClient
    return cls(**client_kwargs(switchyard, mode), check_compatibility=False)


@pytest.fixture
def bound(switchyard: RunningProxy, upstream: Any, prefix: str) -> Any:
    """A collection bound (enrich) to a fresh model; yields (name, spec, direct client)."""
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    name = f"{prefix}docs"
    direct.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    spec = _spec(uuid.uuid4().hex[:8])
    switchyard.register_and_bind(spec, Binding(name, spec.id))
    yield name, spec, direct
    direct.close()


def _expect_meta(payload: dict[str, Any], spec: ModelSpec) -> None:
    assert payload["embedding_model_id"] == spec.id
    assert payload["embedding_dimensions"] == DIM
    assert payload["embedding_version"] == spec.version


@pytest.mark.parametrize("mode", MODES)
async def test_every_upsert_shape_is_stamped(switchyard: RunningProxy, bound: Any, mode: str) -> None:
    name, spec, direct = bound
    client = _client(switchyard, mode)
    try:
        await _call(client.upsert(name, [
            models.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4], payload=dict(PAYLOAD)),
            models.PointStruct(id=str(uuid.UUID(int=2)), vector=[0.4, 0.3, 0.2, 0.1]),
        ]))
        await _call(client.upsert(name, models.Batch(ids=[3, 4], vectors=[[1, 0, 0, 0], [0, 1, 0, 0]],
                                                      payloads=[{"k": 3}, {}])))
        await _call(client.batch_update_points(name, [
            models.UpsertOperation(upsert=models.PointsList(points=[
                models.PointStruct(id=5, vector=[0, 0, 1, 0], payload={"k": 5})])),
            models.SetPayloadOperation(set_payload=models.SetPayload(payload={"s": 1}, points=[5])),
        ]))
    finally:
        await _call(client.close())
    points = {str(p.id): p.payload for p in direct.retrieve(name, [1, str(uuid.UUID(int=2)), 3, 4, 5])}
    assert len(points) == 5
    for payload in points.values():
        _expect_meta(payload, spec)
    first = points["1"]
    for key, value in PAYLOAD.items():
        assert first[key] == value
        assert type(first[key]) is type(value), key  # int stays int, float stays float
    assert points["3"]["k"] == 3 and points["5"] == {**points["5"], "k": 5, "s": 1}


@pytest.mark.parametrize("mode", MODES)
async def test_enforce_rejects_whole_write(switchyard: RunningProxy, upstream: Any, prefix: str, mode: str) -> None:
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    name = f"{prefix}strict"
    direct.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    spec = _spec(uuid.uuid4().hex[:8])
    switchyard.register_and_bind(spec, Binding(name, spec.id, enforce=True))
    client = _client(switchyard, mode)
    good = models.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])
    try:
        # a wrong-dimension point in a batch that would otherwise be fine
        with pytest.raises(Exception) as wrong_dim:
            await _call(client.upsert(name, models.Batch(ids=[1, 2], vectors=[[0.1] * DIM, [0.1] * 3])))
        # a batch whose point names another model
        with pytest.raises(Exception) as other_model:
            await _call(client.upsert(name, [good, models.PointStruct(
                id=2, vector=[0.1] * DIM, payload={"embedding_model_id": "someone-else"})]))
        assert direct.count(name).count == 0  # nothing was written
        await _call(client.upsert(name, [good]))  # a fitting write goes through, stamped
    finally:
        await _call(client.close())
    for info in (wrong_dim, other_model):
        text = str(info.value)
        assert "400" in text or "INVALID_ARGUMENT" in text, text
        assert "enforce: point 2:" in text  # the reason comes first: clients may truncate
    assert "has 3 dimensions" in str(wrong_dim.value)
    assert "someone-else" in str(other_model.value)
    stored = direct.retrieve(name, [1])
    _expect_meta(stored[0].payload or {}, spec)
    direct.close()


def test_enrich_keeps_foreign_metadata_and_counts_it(switchyard: RunningProxy, bound: Any) -> None:
    name, spec, direct = bound
    labels = {"collection": name, "model": spec.id}
    before = REGISTRY.get_sample_value("switchyard_foreign_metadata_points_total", labels) or 0.0
    with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as client:
        client.upsert(name, [models.PointStruct(id=9, vector=[1, 1, 1, 1], payload={
            "embedding_model_id": "legacy-model", "embedding_version": "0"})])
    payload = direct.retrieve(name, [9])[0].payload or {}
    assert payload["embedding_model_id"] == "legacy-model"
    assert payload["embedding_version"] == "0"
    assert payload["embedding_dimensions"] == DIM  # what the client left out is filled
    after = REGISTRY.get_sample_value("switchyard_foreign_metadata_points_total", labels)
    assert after == before + 1


def test_unbound_collection_passes_through_untouched(switchyard: RunningProxy, upstream: Any, prefix: str) -> None:
    name = f"{prefix}plain"
    with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as client:
        client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
        client.upsert(name, [models.PointStruct(id=1, vector=[1, 2, 3, 4], payload={"a": 1})])
        assert client.retrieve(name, [1])[0].payload == {"a": 1}


def test_alias_of_bound_collection_is_stamped(switchyard: RunningProxy, bound: Any, prefix: str) -> None:
    name, spec, direct = bound
    alias = f"{prefix}alias"
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=name, alias_name=alias))])
    switchyard.wait_bound(alias)  # aliases are part of the proxy's snapshot
    with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as client:
        client.upsert(alias, [models.PointStruct(id=11, vector=[1, 0, 1, 0])])
    _expect_meta(direct.retrieve(name, [11])[0].payload or {}, spec)


@pytest.mark.parametrize("mode", ["sync-rest", "sync-grpc"])
def test_proxy_serves_inference_objects_of_registered_models(
    switchyard: RunningProxy, bound: Any, mode: str
) -> None:
    import asyncio

    from switchyard.proxy.embedders import make_embedder

    name, spec, direct = bound
    # cloud_inference: the client sends the Document to the server instead of embedding it itself
    with closing(QdrantClient(**client_kwargs(switchyard, mode), check_compatibility=False,
                              cloud_inference=True)) as client:
        client.upsert(name, [
            models.PointStruct(id=21, vector=models.Document(text="a cat sat on the mat", model=spec.id),
                               payload={"k": 1}),
            models.PointStruct(id=22, vector=[0.5, 0.5, 0.5, 0.5]),
        ])

    async def want() -> Any:
        embedder = make_embedder(spec)
        try:
            return (await embedder.embed(["a cat sat on the mat"]))[0]
        finally:
            await embedder.aclose()

    stored = {int(p.id): p for p in direct.retrieve(name, [21, 22], with_vectors=True)}
    assert stored[21].vector == pytest.approx(list(asyncio.run(want())), abs=1e-6)
    assert stored[22].vector == pytest.approx([0.5] * 4)
    _expect_meta(stored[21].payload or {}, spec)

"""The model registry and collection bindings, on top of the state store.

Operations behind ``switchyard models ...`` and ``switchyard bind`` (and, later, the admin API).
A model spec is stored under kind ``model`` keyed by its id, with the fingerprint of its vector
space computed at registration from the embedder itself, so two ids serving the same vectors
share a fingerprint and a provider silently serving another model is caught by ``check``.
A binding refuses with a reason when the collection does not exist or its vector does not have
the spec's size and distance, and creates the payload indexes that make filtering by model cheap.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy.errors import BadRequest, NotFound, UpstreamError
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_MODEL_ID, META_VERSION, Binding
from switchyard.proxy.state.store import Envelope, StateStore

MODEL_KIND = "model"


async def register_model(store: StateStore, spec: ModelSpec, *, replace: bool = False) -> Envelope:
    """Store ``spec`` (with its fingerprint already computed by the caller)."""
    if replace:
        current = await store.get(MODEL_KIND, spec.id)
        return await store.put(MODEL_KIND, spec.id, spec.to_dict(), current.rev if current else 0)
    return await store.create(MODEL_KIND, spec.id, spec.to_dict())


async def get_model(store: StateStore, model_id: str) -> ModelSpec:
    found = await store.get(MODEL_KIND, model_id)
    if found is None:
        raise NotFound(f"model `{model_id}` is not registered")
    return ModelSpec.from_dict(found.data)


async def list_models(store: StateStore) -> list[ModelSpec]:
    return [ModelSpec.from_dict(e.data) for e in await store.list(MODEL_KIND)]


async def list_bindings(store: StateStore) -> list[Binding]:
    return [Binding.from_dict(e.data) for e in await store.list(Binding.KIND)]


def vector_misfit(config: Any, binding: Binding, spec: ModelSpec) -> str | None:
    """Why a collection's vector config cannot hold ``spec``'s vectors (pure; ``None`` if it can).

    ``config`` is the collection's ``params.vectors``: a ``VectorParams`` or a dict of them.
    """
    label = f"`{binding.vector}`" if binding.vector else "(unnamed)"
    if isinstance(config, dict):
        params = config.get(binding.vector)
        if params is None:
            names = ", ".join(f"`{n}`" for n in config) or "none"
            return f"collection `{binding.collection}` has no dense vector {label} (it has {names})"
    elif binding.vector:
        return f"collection `{binding.collection}` has only an unnamed vector, not {label}"
    else:
        params = config
    if params is None:
        return f"collection `{binding.collection}` has no dense vector {label}"
    if params.size != spec.dimensions:
        return (
            f"vector {label} of `{binding.collection}` has size {params.size}, "
            f"model `{spec.id}` has {spec.dimensions} dimensions"
        )
    distance = params.distance.value if hasattr(params.distance, "value") else str(params.distance)
    if distance.lower() != spec.distance.lower():
        return (
            f"vector {label} of `{binding.collection}` uses {distance} distance, "
            f"model `{spec.id}` uses {spec.distance}"
        )
    return None


async def bind(
    store: StateStore, client: AsyncQdrantClient, binding: Binding, *, replace: bool = True
) -> Envelope:
    """Bind a collection or alias to a registered model; create the metadata payload indexes."""
    spec = await get_model(store, binding.model_id)
    try:
        info = await client.get_collection(binding.collection)
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            raise NotFound(f"Collection `{binding.collection}` doesn't exist!") from exc
        raise UpstreamError(f"reading collection `{binding.collection}` failed: {exc}") from exc
    except ResponseHandlingException as exc:
        raise UpstreamError(f"reading collection `{binding.collection}` failed: {exc}") from exc
    why = vector_misfit(info.config.params.vectors, binding, spec)
    if why:
        raise BadRequest(f"cannot bind: {why}")
    try:
        for field in (META_MODEL_ID, META_VERSION):
            await client.create_payload_index(
                binding.collection, field, models.PayloadSchemaType.KEYWORD, wait=True
            )
    except (UnexpectedResponse, ResponseHandlingException) as exc:
        raise UpstreamError(f"creating payload indexes failed: {exc}") from exc
    current = await store.get(Binding.KIND, binding.key)
    if current is not None and not replace:
        raise BadRequest(f"collection `{binding.collection}` is already bound")
    return await store.put(Binding.KIND, binding.key, binding.to_dict(), current.rev if current else 0)


async def unbind(store: StateStore, collection: str) -> None:
    if await store.get(Binding.KIND, collection) is None:
        raise NotFound(f"collection `{collection}` is not bound")
    await store.delete(Binding.KIND, collection)

"""The I/O half of ``migrate plan``: gather :class:`PlanFacts`, then create the target.

Kept apart from :mod:`switchyard.proxy.migration.planner` (pure) so validation and estimates stay table
tests; everything here talks to Qdrant through qdrant-client and translates its errors.
"""

from __future__ import annotations

import time
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy import registry
from switchyard.proxy.errors import NotFound, SwitchyardError, UpstreamError
from switchyard.proxy.migration.planner import PlanFacts, PlanRequest, SourceFacts, default_target
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_FIELDS, Binding
from switchyard.proxy.state.store import StateStore

_FOREIGN = (UnexpectedResponse, ResponseHandlingException)


async def gather(store: StateStore, client: AsyncQdrantClient, req: PlanRequest, *,
                 max_active: int, sample_size: int, probe_texts: int) -> PlanFacts:
    """Everything :func:`~switchyard.proxy.migration.planner.validate` needs, read from the upstream."""
    aliases = await store.aliases()
    source_name = aliases.get(req.logical, req.logical)
    info = await _collection(client, source_name)
    binding = await _binding(store, req.logical, source_name)
    model_a = await _model(store, binding.model_id) if binding else None
    model_b = await _model(store, req.to_model)
    target = req.target or default_target(source_name, req.to_model)
    texts: list[str] = []
    source = SourceFacts(source_name, req.logical in aliases, info is not None)
    if info is not None:
        source, texts = await _sample(client, source, info, req.text_field, sample_size)
    try:
        target_exists = await client.collection_exists(target) or target in aliases
    except _FOREIGN as exc:
        raise UpstreamError(f"checking target `{target}` failed: {exc}") from exc
    active = [Migration.from_envelope(e) for e in await store.list(Migration.KIND)]
    throughput = None
    if model_b is not None and texts and not req.copy_vectors:
        throughput = await _probe(model_b, texts[:probe_texts])
    return PlanFacts(req, source, binding, model_a, model_b, target, target_exists,
                     active, max_active, throughput)


async def _collection(client: AsyncQdrantClient, name: str) -> Any:
    try:
        return await client.get_collection(name)
    except UnexpectedResponse as exc:
        if exc.status_code == 404:
            return None
        raise UpstreamError(f"reading collection `{name}` failed: {exc}") from exc
    except ResponseHandlingException as exc:
        raise UpstreamError(f"reading collection `{name}` failed: {exc}") from exc


async def _binding(store: StateStore, logical: str, source: str) -> Binding | None:
    for key in (logical, source):
        env = await store.get(Binding.KIND, key)
        if env is not None:
            return Binding.from_dict(env.data)
    return None


async def _model(store: StateStore, model_id: str) -> ModelSpec | None:
    try:
        return await registry.get_model(store, model_id)
    except NotFound:
        return None


async def _sample(client: AsyncQdrantClient, source: SourceFacts, info: Any, field: str,
                  size: int) -> tuple[SourceFacts, list[str]]:
    try:
        count = (await client.count(source.collection, exact=True)).count
        points, _ = await client.scroll(source.collection, limit=size, with_payload=[field],
                                        with_vectors=False)
    except _FOREIGN as exc:
        raise UpstreamError(f"sampling `{source.collection}` failed: {exc}") from exc
    texts = [p.payload[field] for p in points
             if p.payload and isinstance(p.payload.get(field), str) and p.payload[field]]
    volume = sum(len(t.encode()) for t in texts)
    return SourceFacts(source.collection, source.is_alias, True, info.config.params.vectors,
                       count, len(points), len(points) - len(texts), volume), texts


async def _probe(spec: ModelSpec, texts: list[str]) -> float | None:
    """Texts per second of one embedding call on sample texts (None when the embedder fails)."""
    from switchyard.proxy.embedders import make_embedder

    try:
        embedder = make_embedder(spec)
    except SwitchyardError:
        return None
    try:
        started = time.perf_counter()
        await embedder.embed(texts)
        elapsed = time.perf_counter() - started
        return len(texts) / elapsed if elapsed > 0 else None
    except SwitchyardError:
        return None
    finally:
        await embedder.aclose()


def target_vectors(vectors: Any, name: str, spec: ModelSpec) -> Any:
    """The source's vector config with the bound vector's size and distance replaced by B's."""
    b = spec.vector_params()
    if isinstance(vectors, dict):
        out = dict(vectors)
        out[name] = out[name].model_copy(update={"size": b.size, "distance": b.distance})
        return out
    return vectors.model_copy(update={"size": b.size, "distance": b.distance})


async def create_target(client: AsyncQdrantClient, store: StateStore, facts: PlanFacts) -> None:
    """Target with B's vector params and the source's other settings and payload indexes, bound to B.

    On failure after creating the collection, the target is removed again (best effort).
    """
    assert facts.binding is not None and facts.model_b is not None
    info = await _collection(client, facts.source.collection)
    if info is None:
        raise NotFound(f"Collection `{facts.source.collection}` doesn't exist!")
    p, cfg = info.config.params, info.config
    try:
        await client.create_collection(
            facts.target,
            vectors_config=target_vectors(p.vectors, facts.binding.vector, facts.model_b),
            sparse_vectors_config=p.sparse_vectors,
            shard_number=p.shard_number, replication_factor=p.replication_factor,
            write_consistency_factor=p.write_consistency_factor, on_disk_payload=p.on_disk_payload,
            hnsw_config=models.HnswConfigDiff(**cfg.hnsw_config.model_dump(exclude_none=True)),
            optimizers_config=models.OptimizersConfigDiff(
                **cfg.optimizer_config.model_dump(exclude_none=True)),
            quantization_config=cfg.quantization_config,
        )
    except _FOREIGN as exc:
        raise UpstreamError(f"creating target `{facts.target}` failed: {exc}") from exc
    try:
        for field, schema in (info.payload_schema or {}).items():
            if field not in META_FIELDS:
                await client.create_payload_index(
                    facts.target, field, field_schema=schema.params or schema.data_type, wait=True)
        doc_key = facts.request.doc_key
        if doc_key not in (info.payload_schema or {}):
            sample = await _doc_key_sample(client, facts.source.collection, doc_key)
            await client.create_payload_index(
                facts.target, doc_key, field_schema=doc_key_schema(sample), wait=True)
        target = Binding(facts.target, facts.model_b.id, facts.binding.enforce, facts.binding.vector)
        await registry.bind(store, client, target)
    except (*_FOREIGN, SwitchyardError) as exc:
        await drop_collection(client, facts.target)
        if isinstance(exc, SwitchyardError):
            raise
        raise UpstreamError(f"preparing target `{facts.target}` failed: {exc}") from exc


def doc_key_schema(sample: Any) -> models.PayloadSchemaType:
    """The index a doc key needs for merged reads' lookups (``MatchAny`` on the target):
    integer for integer doc keys, keyword otherwise (and when no point carries one yet)."""
    if isinstance(sample, int) and not isinstance(sample, bool):
        return models.PayloadSchemaType.INTEGER
    return models.PayloadSchemaType.KEYWORD


async def _doc_key_sample(client: AsyncQdrantClient, collection: str, doc_key: str) -> Any:
    """One value of ``doc_key`` from the source, or None when no point has the field."""
    has_key = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=doc_key))])
    points, _ = await client.scroll(collection, scroll_filter=has_key, limit=1,
                                    with_payload=[doc_key], with_vectors=False)
    value = (points[0].payload or {}).get(doc_key) if points else None
    return value[0] if isinstance(value, list) and value else value


async def drop_collection(client: AsyncQdrantClient, name: str) -> None:
    try:
        await client.delete_collection(name)
    except _FOREIGN as exc:
        raise UpstreamError(f"deleting `{name}` failed: {exc}") from exc


async def point_count(client: AsyncQdrantClient, name: str) -> int:
    try:
        return (await client.count(name, exact=True)).count
    except _FOREIGN as exc:
        raise UpstreamError(f"counting `{name}` failed: {exc}") from exc


async def repoint_alias(client: AsyncQdrantClient, alias: str, collection: str) -> None:
    """Atomically move ``alias`` to ``collection`` (delete and create in one request)."""
    ops: list[Any] = [
        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)),
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)),
    ]
    try:
        await client.update_collection_aliases(change_aliases_operations=ops)
    except _FOREIGN as exc:
        raise UpstreamError(f"repointing alias `{alias}` failed: {exc}") from exc

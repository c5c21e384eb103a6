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
from switchyard.proxy.migration import layouts
from switchyard.proxy.migration import kinds
from switchyard.proxy.migration.kinds import Layout
from switchyard.proxy.migration.planner import PlanFacts, PlanRequest, SourceFacts
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
    kind = kinds.get(req.kind)
    b_id = kind.model_b(req, binding)
    model_b = await _model(store, b_id) if b_id else None
    target = req.target or kind.default_target(source_name, b_id or "")
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
    if model_b is not None and texts and not req.copy_vectors and kind.embeds:
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
                       count, len(points), len(points) - len(texts), volume, info), texts


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


async def create_target(client: AsyncQdrantClient, store: StateStore, facts: PlanFacts,
                        layout: Layout) -> None:
    """Create ``facts.target`` with the layout's target settings and payload indexes (plus, when
    the source has none, an index of the doc key for merged reads), bound to model B.

    The settings come from the kind (``switchyard.proxy.migration.kinds``); for ``reembed`` they
    are B's vector params and the source's other settings. On failure after creating the
    collection, the target is removed again (best effort).
    """
    assert facts.binding is not None and facts.model_b is not None
    settings = layout.targets.get(facts.target)
    if not settings:
        raise NotFound(f"Collection `{facts.source.collection}` doesn't exist!")
    try:
        await client.create_collection(facts.target, **layouts.create_kwargs(settings))
    except _FOREIGN as exc:
        raise UpstreamError(f"creating target `{facts.target}` failed: {exc}") from exc
    try:
        indexes = layouts.index_schemas(settings)
        for field, schema in indexes.items():
            await client.create_payload_index(facts.target, field, field_schema=schema, wait=True)
        doc_key = facts.request.doc_key
        if doc_key not in indexes:
            sample = await _doc_key_sample(client, facts.source.collection, doc_key)
            await client.create_payload_index(
                facts.target, doc_key, field_schema=doc_key_schema(sample), wait=True)
        vector = kinds.get(facts.request.kind).target_vector_name_for(facts)
        target = Binding(facts.target, facts.model_b.id, facts.binding.enforce, vector)
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

"""The ``split`` kind's I/O: find the split values in the source, create and bind the targets.

* :func:`discover` asks facets first (one per key field, nested under the values of the fields
  before it; exact counts), and falls back to a bounded scroll of the key fields when the
  upstream refuses facets (Qdrant needs a payload index on a facet key; older servers have no
  facets). Points lacking a key field are counted either way (a count with ``is_empty``).
* :func:`create_targets` creates every target with its vectors config and the source's other
  settings (HNSW, optimizers, quantization, sparse vectors, sharding), its payload indexes (the
  source's plus one per split field), and binds it to its model. On a failure it removes the
  targets it created (best effort) and raises :class:`UpstreamError` naming the target.

The decisions (names, configs, refusals) are pure, in :mod:`switchyard.proxy.migration.kinds.split_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy import registry
from switchyard.proxy.dataplane.split_reads import MAX_FANOUT
from switchyard.proxy.dataplane.split_routing import key_id
from switchyard.proxy.errors import SwitchyardError, UpstreamError
from switchyard.proxy.migration.kinds.split_plan import SCROLL_BOUND, Discovery, TargetSpec, values_from_facets, \
    values_from_scroll
from switchyard.proxy.state.records import META_FIELDS, Binding
from switchyard.proxy.state.store import StateStore

_FOREIGN = (UnexpectedResponse, ResponseHandlingException, OSError, ValueError)
_PAGE = 1000


async def discover(client: AsyncQdrantClient, source: str, fields: Sequence[str],
                   bound: int = SCROLL_BOUND) -> Discovery:
    """The split keys of ``source`` with their point counts (facets, else a bounded scroll)."""
    try:
        return await _by_facets(client, source, fields)
    except _FOREIGN:
        return await _by_scroll(client, source, fields, bound)


async def _by_facets(client: AsyncQdrantClient, source: str, fields: Sequence[str]) -> Discovery:
    total = (await client.count(source, exact=True)).count
    having = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=f))
                                     for f in fields])
    with_all = (await client.count(source, count_filter=having, exact=True)).count
    levels: dict[str, list[dict[str, Any]]] = {}
    prefixes: list[list[Any]] = [[]]
    for depth, name in enumerate(fields):
        nxt: list[list[Any]] = []
        for prefix in prefixes:
            must: list[models.Condition] = [
                models.FieldCondition(key=f, match=models.MatchValue(value=v)) for f, v in zip(fields, prefix)]
            got = await client.facet(source, name, facet_filter=models.Filter(must=must) if must else None,
                                     limit=MAX_FANOUT + 1, exact=True)
            hits = [{"value": h.value, "count": h.count} for h in got.hits]
            levels[key_id(prefix)] = hits
            nxt += [[*prefix, h["value"]] for h in hits]
        prefixes = nxt
        if len(prefixes) > MAX_FANOUT:  # already too many targets: the plan refuses it
            break
    return values_from_facets(levels, len(fields), total, with_all)


async def _by_scroll(client: AsyncQdrantClient, source: str, fields: Sequence[str], bound: int) -> Discovery:
    payloads: list[Any] = []
    offset: Any = None
    selector = models.PayloadSelectorInclude(include=list(fields))
    try:
        while len(payloads) < bound:
            points, offset = await client.scroll(source, limit=min(_PAGE, bound - len(payloads)),
                                                 offset=offset, with_payload=selector, with_vectors=False)
            payloads += [p.payload or {} for p in points]
            if offset is None:
                break
    except _FOREIGN as exc:
        raise UpstreamError(f"reading split values of `{source}` failed: {exc}") from exc
    return values_from_scroll(payloads, fields, complete=offset is None)


def vectors_json(vectors: Any) -> Any:
    """A collection's ``params.vectors`` as plain JSON (one config, or a map of named ones)."""
    if isinstance(vectors, Mapping):
        return {k: v.model_dump(mode="json", exclude_none=True) for k, v in vectors.items()}
    return vectors.model_dump(mode="json", exclude_none=True) if vectors is not None else None


def _vectors_config(vectors: Any) -> Any:
    if isinstance(vectors, Mapping) and "size" not in vectors:
        return {k: models.VectorParams.model_validate(v) for k, v in vectors.items()}
    return models.VectorParams.model_validate(vectors)


def _schema(kind: str) -> models.PayloadSchemaType:
    return models.PayloadSchemaType(kind)


async def create_targets(client: AsyncQdrantClient, store: StateStore, source: str,
                         specs: Sequence[TargetSpec], source_model: str, enforce: bool, vector: str) -> None:
    """Create, index and bind every target of ``specs`` (module docstring); all or nothing."""
    info = await client.get_collection(source)
    p, cfg = info.config.params, info.config
    made: list[str] = []
    current = ""
    try:
        for s in specs:
            current = s.name
            await client.create_collection(
                s.name, vectors_config=_vectors_config(s.vectors), sparse_vectors_config=p.sparse_vectors,
                shard_number=p.shard_number, replication_factor=p.replication_factor,
                write_consistency_factor=p.write_consistency_factor, on_disk_payload=p.on_disk_payload,
                hnsw_config=models.HnswConfigDiff(**cfg.hnsw_config.model_dump(exclude_none=True)),
                optimizers_config=models.OptimizersConfigDiff(**cfg.optimizer_config.model_dump(exclude_none=True)),
                quantization_config=cfg.quantization_config)
            made.append(s.name)
            for name, kind in s.indexes.items():
                if name not in META_FIELDS:
                    await client.create_payload_index(s.name, name, field_schema=_schema(kind), wait=True)
            await registry.bind(store, client, Binding(s.name, s.model or source_model, enforce, vector))
    except (*_FOREIGN, SwitchyardError) as exc:
        for name in made:
            try:
                await client.delete_collection(name)
            except _FOREIGN:
                pass
        raise UpstreamError(f"creating split target `{current}` failed: {exc}") from exc


def _model_ids(config: Any) -> set[str]:
    """Every ``{"model": ID}`` named in a ``--vectors`` config."""
    out: set[str] = set()
    if isinstance(config, Mapping):
        if isinstance(config.get("model"), str):
            out.add(config["model"])
        for value in config.values():
            out |= _model_ids(value)
    return out


async def known_models(store: StateStore, config: Any) -> dict[str, Any]:
    """The registered ``ModelSpec`` of every model the vectors config names (unknown ones left out)."""
    out: dict[str, Any] = {}
    for mid in sorted(_model_ids(config)):
        try:
            out[mid] = await registry.get_model(store, mid)
        except SwitchyardError:
            continue
    return out


async def taken_names(client: AsyncQdrantClient) -> set[str]:
    """Every collection and alias name the upstream has now."""
    try:
        names = {c.name for c in (await client.get_collections()).collections}
        names |= {a.alias_name for a in (await client.get_aliases()).aliases}
    except _FOREIGN as exc:
        raise UpstreamError(f"listing collections failed: {exc}") from exc
    return names

"""The local engine's collection layout as Qdrant reports and enforces it: tuning options kept
and reported (HNSW, optimizers, quantization, WAL, strict mode, on-disk settings, per-vector
HNSW / quantization / on-disk), payload indexes kept and reported in ``payload_schema``, facets
only on an indexed field.

``QdrantLocal`` stores a collection's config as a ``CreateCollection`` in ``meta.json`` but
ignores the tuning options on create and update and reports fixed defaults; these functions
store what a client set in that same config (so it persists with it) and report it. Each runs
on the engine's worker thread under its admission (writes alone), with the ``QdrantLocal`` and
the :class:`PayloadIndexes` of :class:`switchyard.proxy.embedded.engine.Engine`.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models
from qdrant_client.local.qdrant_local import QdrantLocal

from switchyard.proxy.embedded import config_changes, local_indexes
from switchyard.proxy.embedded.local_indexes import PayloadIndexes
from switchyard.proxy.errors import BadRequest

#: methods answered here rather than by ``QdrantLocal`` alone
METHODS = frozenset({
    "create_collection", "update_collection", "delete_collection", "get_collection",
    "create_payload_index", "delete_payload_index", "facet", "delete_vector_name",
})
#: the config fields a create may set that ``QdrantLocal`` drops
_TUNING = ("hnsw_config", "optimizers_config", "quantization_config", "on_disk_payload",
           "wal_config", "strict_mode_config")
#: the fields an update may change, copied onto the stored config
_UPDATED = ("hnsw_config", "optimizers_config", "quantization_config", "strict_mode_config",
            "replication_factor", "write_consistency_factor", "on_disk_payload", "sparse_vectors")
_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0,
         "on_disk": False}


def real_name(local: QdrantLocal, name: str) -> str:
    """The collection a name or alias designates (the engine's own 404 if none)."""
    local._get_collection(name)  # raises the local engine's "not found"
    return local.aliases.get(name, name)


def call(local: QdrantLocal, indexes: PayloadIndexes, method: str, *args: Any, **kw: Any) -> Any:
    """Run ``method`` (one of :data:`METHODS`) with ``QdrantLocal``'s arguments."""
    return _HANDLERS[method](local, indexes, *args, **kw)


def _create(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str, **kw: Any) -> Any:
    tuning = {k: kw.pop(k) for k in _TUNING if kw.get(k) is not None}
    result = local.create_collection(collection_name, **kw)
    config = local.collections[collection_name].config
    for key, value in tuning.items():
        setattr(config, key, value)
    indexes.drop_collection(collection_name)  # a name reused after a delete starts bare
    local._save()
    return result


def _update(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str, **kw: Any) -> Any:
    name = real_name(local, collection_name)
    collection = local.collections[name]
    changed = config_changes.apply_update(collection.config, **kw)  # every diff checked first
    result = local.update_collection(
        name, sparse_vectors_config=kw.get("sparse_vectors_config"), metadata=kw.get("metadata"),
        vectors_config=kw.get("vectors_config"))
    config = collection.config
    for key in _UPDATED:
        if key != "sparse_vectors":  # the local engine merged those itself
            setattr(config, key, getattr(changed, key))
    new_dense = config_changes.dense_names(changed)
    for vname, params in config_changes.dense_names(config).items():  # in place: the engine holds them
        for key in ("hnsw_config", "quantization_config", "on_disk"):
            setattr(params, key, getattr(new_dense[vname], key))
    local._save()
    return result or any(kw.get(k) is not None for k in ("hnsw_config", "optimizers_config",
                                                          "quantization_config", "collection_params",
                                                          "vectors_config", "strict_mode_config"))


def _delete(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str, **kw: Any) -> Any:
    result = local.delete_collection(collection_name, **kw)
    if result:
        indexes.drop_collection(collection_name)
    return result


def _info(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str, **kw: Any) -> Any:
    info: models.CollectionInfo = local.get_collection(collection_name, **kw)
    name = real_name(local, collection_name)
    collection = local.collections[name]
    cfg = collection.config
    out = info.config
    out.hnsw_config = models.HnswConfig(**{**_HNSW, **out.hnsw_config.model_dump(exclude_none=True),
                                          **_set(cfg.hnsw_config)})
    out.optimizer_config = models.OptimizersConfig(**{
        **out.optimizer_config.model_dump(exclude_none=True), **_set(cfg.optimizers_config)})
    out.wal_config = models.WalConfig(**{**_set(out.wal_config), **_set(cfg.wal_config)})
    out.quantization_config = cfg.quantization_config
    if cfg.strict_mode_config is not None:
        out.strict_mode_config = models.StrictModeConfigOutput(**_set(cfg.strict_mode_config))
    info.payload_schema = {
        field: local_indexes.schema_info(schema, indexes.points(collection, name, field, schema))
        for field, schema in indexes.fields(name).items()}
    return info


def _set(model: Any) -> dict[str, Any]:
    return model.model_dump(exclude_none=True) if model is not None else {}


def _create_index(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str,
                  field_name: str, field_schema: Any = None, field_type: Any = None, **kw: Any) -> Any:
    schema = field_schema if field_schema is not None else field_type
    name = real_name(local, collection_name)
    if schema is None:
        raise BadRequest("field_schema: an index needs a field type or index params")
    local_indexes.data_type(schema)  # an unknown type is refused before anything is recorded
    result = local.create_payload_index(name, field_name, field_schema=schema, **kw)
    indexes.set(name, field_name, schema)
    return result


def _delete_index(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str,
                  field_name: str, **kw: Any) -> Any:
    name = real_name(local, collection_name)
    result = local.delete_payload_index(name, field_name, **kw)
    indexes.drop(name, field_name)
    return result


def _facet(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str, key: str,
           facet_filter: Any = None, limit: int = 10, exact: bool = False, **kw: Any) -> Any:
    """Qdrant's facet reads the field's index: refused without one, values of its type only."""
    name = real_name(local, collection_name)
    kind = local_indexes.facet_schema(indexes.fields(name), key)
    every = local.facet(name, key, facet_filter=facet_filter, limit=2**31, exact=exact, **kw)
    hits = local_indexes.facet_hits(every, kind).hits
    return models.FacetResponse(hits=hits[:limit])


def _delete_vector(local: QdrantLocal, indexes: PayloadIndexes, collection_name: str,
                   vector_name: str, **kw: Any) -> Any:
    """Qdrant refuses to drop a vector the collection does not have; the local engine did not."""
    name = real_name(local, collection_name)
    config_changes.drop_vector_name(local.collections[name].config, vector_name)  # raises if unknown
    return local.delete_vector_name(name, vector_name, **kw)


_HANDLERS: dict[str, Any] = {
    "create_collection": _create, "update_collection": _update, "delete_collection": _delete,
    "get_collection": _info, "create_payload_index": _create_index,
    "delete_payload_index": _delete_index, "facet": _facet, "delete_vector_name": _delete_vector,
}

"""Collection layouts as plain JSON, their differences, and their conversion to qdrant-client
models (all pure).

A *settings* map is what a plan reads from the source and what it creates a target with: the
keys of Qdrant's create-collection body (``vectors``, ``sparse_vectors``, ``hnsw_config``,
``optimizers_config``, ``quantization_config``, ``on_disk_payload``, ``shard_number``,
``replication_factor``, ``write_consistency_factor``) plus ``payload_indexes`` (field ->
schema, a type name or Qdrant's params object). Kinds build the target's settings from the
source's (:mod:`switchyard.proxy.migration.kinds`); :func:`diff` shows what changes and
:func:`create_kwargs` turns settings into ``create_collection`` arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from qdrant_client import models

from switchyard.proxy.migration.kinds import Layout
from switchyard.proxy.state.records import META_FIELDS

#: The settings keys a plan may change (``payload_indexes`` has its own options).
SETTINGS = ("vectors", "sparse_vectors", "hnsw_config", "optimizers_config", "quantization_config",
            "on_disk_payload", "shard_number", "replication_factor", "write_consistency_factor")

_QUANTIZATION: TypeAdapter[Any] = TypeAdapter(models.QuantizationConfig)
_INDEX_PARAMS: TypeAdapter[Any] = TypeAdapter(models.PayloadSchemaParams)


def _dump(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", exclude_none=True) if dump is not None else value


def settings_of(info: Any) -> dict[str, Any]:
    """The settings of a collection from its ``CollectionInfo`` (``get_collection``)."""
    if info is None:
        return {}
    p, cfg = info.config.params, info.config
    indexes = {}
    for name, schema in (info.payload_schema or {}).items():
        if name in META_FIELDS:
            continue
        params = getattr(schema, "params", None)
        indexes[name] = _dump(params) if params is not None else _dump(schema.data_type)
    return {"vectors": _dump(p.vectors), "sparse_vectors": _dump(p.sparse_vectors),
            "hnsw_config": _dump(cfg.hnsw_config), "optimizers_config": _dump(cfg.optimizer_config),
            "quantization_config": _dump(cfg.quantization_config),
            "on_disk_payload": p.on_disk_payload, "shard_number": p.shard_number,
            "replication_factor": p.replication_factor,
            "write_consistency_factor": p.write_consistency_factor, "payload_indexes": indexes}


def is_unnamed(vectors: Any) -> bool:
    """A single unnamed vector's config (``{"size": .., "distance": ..}``) rather than a map."""
    return isinstance(vectors, Mapping) and isinstance(vectors.get("size"), int)


def dense_vectors(vectors: Any) -> dict[str, Mapping[str, Any]]:
    """Vector name ("" for the unnamed one) -> its params."""
    if not isinstance(vectors, Mapping):
        return {}
    if is_unnamed(vectors):
        return {"": vectors}
    return {str(k): v for k, v in vectors.items() if isinstance(v, Mapping)}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def diff(source: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[str, ...]:
    """``path: old -> new`` for every leaf that differs (``(none)`` for a missing side)."""
    a, b = _flatten(source), _flatten(target)
    out = []
    for path in sorted(set(a) | set(b)):
        old, new = a.get(path), b.get(path)
        if old != new and not (old in (None, {}) and new in (None, {})):
            out.append(f"{path}: {_show(old, path in a)} -> {_show(new, path in b)}")
    return tuple(out)


def _show(value: Any, present: bool) -> str:
    return "(none)" if not present or value is None else repr(value)


def with_vector_params(settings: Mapping[str, Any], name: str, size: int, distance: str) -> dict[str, Any]:
    """``settings`` with vector ``name`` ("" unnamed) resized and its distance replaced."""
    out = dict(settings)
    vectors = out.get("vectors")
    if isinstance(vectors, Mapping) and is_unnamed(vectors):
        out["vectors"] = {**vectors, "size": size, "distance": distance}
    elif isinstance(vectors, Mapping) and name in vectors:
        out["vectors"] = {**vectors, name: {**vectors[name], "size": size, "distance": distance}}
    return out


def reembed_layout(f: Any) -> Layout:
    """The reembed target: B's size and distance for the bound vector, all else copied."""
    source = settings_of(f.source.info)
    target = dict(source)
    if f.model_b is not None and f.binding is not None and source:
        b = f.model_b.vector_params()
        target = with_vector_params(source, f.binding.vector, b.size, str(_dump(b.distance)))
    if source and f.request.doc_key not in source.get("payload_indexes", {}):
        target["payload_indexes"] = {**source.get("payload_indexes", {}),
                                     f.request.doc_key: "(keyword or integer, from a source value)"}
    return Layout(source, {f.target: target}, diff(source, target))


def settings_reasons(settings: Mapping[str, Any]) -> list[str]:
    """Why ``settings`` would not make a valid collection (qdrant-client's own models judge)."""
    try:
        create_kwargs(settings)
    except (ValidationError, TypeError, ValueError) as exc:
        return [f"the target settings are not valid Qdrant configuration: {_short(exc)}"]
    return []


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def vectors_model(vectors: Any) -> Any:
    if is_unnamed(vectors):
        return models.VectorParams(**vectors)
    if not isinstance(vectors, Mapping):
        raise ValueError(f"vectors must be an object, got {vectors!r}")
    return {str(k): models.VectorParams(**v) for k, v in vectors.items()}


def index_schema(schema: Any) -> Any:
    """A payload index schema from JSON: a type name or Qdrant's params object."""
    if isinstance(schema, str):
        return models.PayloadSchemaType(schema)
    return _INDEX_PARAMS.validate_python(schema)


def create_kwargs(s: Mapping[str, Any]) -> dict[str, Any]:
    """``create_collection`` keyword arguments (without the name) from settings."""
    sparse = s.get("sparse_vectors")
    quant = s.get("quantization_config")
    return {
        "vectors_config": vectors_model(s.get("vectors")),
        "sparse_vectors_config": ({str(k): models.SparseVectorParams(**v) for k, v in sparse.items()}
                                  if sparse else None),
        "shard_number": s.get("shard_number"), "replication_factor": s.get("replication_factor"),
        "write_consistency_factor": s.get("write_consistency_factor"),
        "on_disk_payload": s.get("on_disk_payload"),
        "hnsw_config": models.HnswConfigDiff(**(s.get("hnsw_config") or {})),
        "optimizers_config": models.OptimizersConfigDiff(**(s.get("optimizers_config") or {})),
        "quantization_config": _QUANTIZATION.validate_python(quant) if quant else None,
    }


def index_schemas(s: Mapping[str, Any]) -> dict[str, Any]:
    """Field -> qdrant-client schema for every payload index of ``s`` that is concrete JSON
    (the reembed doc-key placeholder is decided at creation from a source value)."""
    out = {}
    for name, schema in (s.get("payload_indexes") or {}).items():
        if isinstance(schema, str) and schema.startswith("("):
            continue
        out[str(name)] = index_schema(schema)
    return out

"""How a collection's stored config changes: named vectors added or dropped, and the diffs of
``PATCH /collections/{c}`` (gRPC ``UpdateCollection``) applied, as Qdrant applies them.

Pure functions over qdrant-client's ``CreateCollection`` (the form both engines keep a
collection's config in): each returns a new config and never touches its input, so an engine
can check a change before it applies anything and report exactly what it stored. Qdrant's rules
kept here: unset diff fields keep their values, ``hnsw_config`` / ``optimizers_config`` /
``strict_mode_config`` merge field by field, a quantization diff replaces the old one
(``Disabled`` removes it), per-vector diffs name existing vectors only (``Not existing vector
name error``, checked for every name before any change), and the unnamed vector is ``""``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest

#: ``CollectionParamsDiff`` fields that ``CreateCollection`` keeps under the same name
_PARAMS = ("replication_factor", "write_consistency_factor", "on_disk_payload")


def merge_diff(old: BaseModel | None, diff: BaseModel | None, cls: type[BaseModel]) -> Any:
    """``old`` with every field ``diff`` sets replaced (``None`` diff: ``old`` unchanged)."""
    if diff is None:
        return old
    base = old.model_dump(exclude_none=True) if old is not None else {}
    return cls(**{**base, **diff.model_dump(exclude_none=True)})


def quantization(diff: Any) -> Any:
    """The quantization a diff leaves: ``Disabled`` removes it, anything else replaces it."""
    if isinstance(diff, models.Disabled) or diff == models.Disabled.DISABLED:
        return None
    return diff


def dense_names(config: models.CreateCollection) -> dict[str, models.VectorParams]:
    """The dense vectors by name (the unnamed one as ``""``)."""
    vectors = config.vectors
    if isinstance(vectors, models.VectorParams):
        return {"": vectors}
    return dict(vectors or {})


def _with_dense(config: models.CreateCollection, dense: dict[str, models.VectorParams]) -> Any:
    """``config.vectors`` for ``dense``: unnamed stays unnamed while it is the only vector."""
    if set(dense) == {""}:
        return dense[""]
    return dense


def add_vector_name(
    config: models.CreateCollection, name: str, spec: models.VectorNameConfig
) -> models.CreateCollection:
    """The config with vector ``name`` added (re-adding an identical one changes nothing;
    the same name with another config, or of the other kind, is refused, as Qdrant does)."""
    dense = dense_names(config)
    sparse = dict(config.sparse_vectors or {})
    if isinstance(spec, models.DenseVectorNameConfig):
        d = spec.dense
        params = models.VectorParams(
            size=d.size, distance=d.distance, multivector_config=d.multivector_config,
            datatype=models.Datatype(d.datatype.value) if d.datatype else None, on_disk=getattr(d, "on_disk", None),
            hnsw_config=getattr(d, "hnsw_config", None),
            quantization_config=getattr(d, "quantization_config", None))
        if name in sparse:
            raise BadRequest(f"Vector {name} already exists as a sparse vector")
        old = dense.get(name)
        if old is not None:
            if (old.size, old.distance, old.multivector_config) != (
                    params.size, params.distance, params.multivector_config):
                raise BadRequest(f"Vector {name} already exists with a different configuration")
            return config
        dense[name] = params
        return config.model_copy(update={"vectors": _with_dense(config, dense) if dense else {}})
    s = spec.sparse
    if name in dense:
        raise BadRequest(f"Vector {name} already exists as a dense vector")
    if name in sparse:
        if sparse[name].modifier != s.modifier:
            raise BadRequest(f"Vector {name} already exists with a different configuration")
        return config
    sparse[name] = models.SparseVectorParams(index=getattr(s, "index", None), modifier=s.modifier)
    return config.model_copy(update={"sparse_vectors": sparse})


def drop_vector_name(config: models.CreateCollection, name: str) -> models.CreateCollection:
    """The config without vector ``name`` (dense or sparse); an unknown name is refused."""
    dense = dense_names(config)
    sparse = dict(config.sparse_vectors or {})
    if name in dense:
        del dense[name]
        return config.model_copy(update={"vectors": _with_dense(config, dense) if dense else {}})
    if name in sparse:
        del sparse[name]
        return config.model_copy(update={"sparse_vectors": sparse or None})
    raise BadRequest(f"Not existing vector name error: {name}")


def apply_update(config: models.CreateCollection, **kw: Any) -> models.CreateCollection:
    """The config after an update's diffs (keywords: ``QdrantLocal.update_collection``'s:
    ``hnsw_config``, ``optimizers_config``, ``quantization_config``, ``collection_params``,
    ``vectors_config``, ``sparse_vectors_config``, ``strict_mode_config``; others ignored)."""
    update: dict[str, Any] = {}
    if kw.get("vectors_config") is not None:
        update["vectors"] = _vectors_diff(config, kw["vectors_config"])
    if kw.get("sparse_vectors_config") is not None:
        update["sparse_vectors"] = _sparse_diff(config, kw["sparse_vectors_config"])
    if kw.get("hnsw_config") is not None:
        update["hnsw_config"] = merge_diff(config.hnsw_config, kw["hnsw_config"], models.HnswConfigDiff)
    if kw.get("optimizers_config") is not None:
        update["optimizers_config"] = merge_diff(
            config.optimizers_config, kw["optimizers_config"], models.OptimizersConfigDiff)
    if kw.get("quantization_config") is not None:
        update["quantization_config"] = quantization(kw["quantization_config"])
    if kw.get("strict_mode_config") is not None:
        update["strict_mode_config"] = merge_diff(
            config.strict_mode_config, kw["strict_mode_config"], models.StrictModeConfig)
    params: models.CollectionParamsDiff | None = kw.get("collection_params")
    if params is not None:
        for name in _PARAMS:
            if getattr(params, name, None) is not None:
                update[name] = getattr(params, name)
    return config.model_copy(update=update)


def _vectors_diff(config: models.CreateCollection, diff: Any) -> Any:
    dense = dense_names(config)
    items: dict[str, models.VectorParamsDiff] = (
        dict(diff) if isinstance(diff, dict) else {"": diff})
    for name in items:  # every name checked before anything changes
        if name not in dense:
            raise BadRequest(f"Not existing vector name error: {name}")
    for name, d in items.items():
        old = dense[name]
        changed: dict[str, Any] = {}
        if d.hnsw_config is not None:
            changed["hnsw_config"] = merge_diff(old.hnsw_config, d.hnsw_config, models.HnswConfigDiff)
        if d.quantization_config is not None:
            changed["quantization_config"] = quantization(d.quantization_config)
        if d.on_disk is not None:
            changed["on_disk"] = d.on_disk
        dense[name] = old.model_copy(update=changed)
    return _with_dense(config, dense)


def _sparse_diff(config: models.CreateCollection, diff: dict[str, Any]) -> Any:
    sparse = dict(config.sparse_vectors or {})
    for name in diff:
        if name not in sparse:
            raise BadRequest(f"Not existing vector name error: {name}")
    for name, d in diff.items():
        old = sparse[name]
        index = merge_diff(old.index, d.index, models.SparseIndexParams) if d.index else old.index
        sparse[name] = old.model_copy(update={
            "index": index, "modifier": d.modifier if d.modifier is not None else old.modifier})
    return sparse

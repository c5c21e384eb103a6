"""Collection config as Qdrant Edge takes it: a create request's vectors, HNSW, quantization and
optimizer thresholds (:func:`edge_config`), and a payload index's field schema
(:func:`index_schema`).

Contract: pure functions and lookup tables from qdrant-client's REST models to ``qdrant_edge``
objects; a config Edge cannot express raises :class:`switchyard.proxy.errors.Unsupported`, never a
silent approximation. Imported only where ``qdrant_edge`` is (the Edge worker process, through
:mod:`edge_convert`, which re-exports what the worker uses from here).

Why a module of its own: this is a collection's shape, translated when a collection, a vector
or a payload index is created (and read back for its info); :mod:`edge_convert` is the
per-request data path (points, filters, reads, queries). Nothing here imports
:mod:`edge_convert`, so the two cannot form a cycle.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models

from switchyard.proxy.errors import Unsupported

DISTANCES = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}
DATATYPES = {
    models.Datatype.FLOAT32: qe.VectorStorageDatatype.Float32,
    models.Datatype.FLOAT16: qe.VectorStorageDatatype.Float16,
    models.Datatype.UINT8: qe.VectorStorageDatatype.Uint8,
}
SCHEMA_TYPES = {
    models.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    models.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    models.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    models.PayloadSchemaType.GEO: qe.PayloadSchemaType.Geo,
    models.PayloadSchemaType.TEXT: qe.PayloadSchemaType.Text,
    models.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    models.PayloadSchemaType.DATETIME: qe.PayloadSchemaType.Datetime,
    models.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
}
SCHEMA_NAMES = {v: k for k, v in SCHEMA_TYPES.items()}
#: the sparse vector a payload-only collection's shard is given (never written, never reported)
NO_VECTORS = "__switchyard_no_vectors"
#: Qdrant's defaults for a collection's HNSW config (what the server reports)
HNSW_DEFAULTS = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000}


# ---------------------------------------------------------------- collection config


def hnsw(diff: models.HnswConfigDiff | None, base: dict[str, Any] | None = None) -> Any:
    if diff is None:
        return None
    merged = {**HNSW_DEFAULTS, **(base or {}), **diff.model_dump(exclude_none=True)}
    return qe.HnswIndexConfig(
        m=merged["m"], ef_construct=merged["ef_construct"],
        full_scan_threshold=merged["full_scan_threshold"],
        max_indexing_threads=merged.get("max_indexing_threads", 0),
        on_disk=merged.get("on_disk"), payload_m=merged.get("payload_m"),
        inline_storage=merged.get("inline_storage"),
    )


def quantization(cfg: Any) -> Any:
    if cfg is None or isinstance(cfg, models.Disabled):
        return None
    if isinstance(cfg, models.ScalarQuantization):
        s = cfg.scalar
        return qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=s.quantile, always_ram=s.always_ram)
    if isinstance(cfg, models.ProductQuantization):
        p = cfg.product
        ratio = getattr(qe.CompressionRatio, p.compression.value.upper())
        return qe.ProductQuantizationConfig(ratio, always_ram=p.always_ram)
    if isinstance(cfg, models.BinaryQuantization):
        return qe.BinaryQuantizationConfig(always_ram=cfg.binary.always_ram)
    raise Unsupported(f"quantization {type(cfg).__name__} is not supported by the Edge engine")


def vector_params(p: models.VectorParams) -> Any:
    return qe.EdgeVectorParams(
        size=p.size,
        distance=DISTANCES[p.distance],
        on_disk=p.on_disk,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        if p.multivector_config is not None else None,
        datatype=DATATYPES.get(p.datatype) if p.datatype is not None else None,
        quantization_config=quantization(p.quantization_config),
        hnsw_config=hnsw(p.hnsw_config),
    )


def sparse_params(p: models.SparseVectorParams) -> Any:
    index = p.index
    return qe.EdgeSparseVectorParams(
        full_scan_threshold=index.full_scan_threshold if index else None,
        on_disk=index.on_disk if index else None,
        modifier=qe.Modifier.Idf if p.modifier == models.Modifier.IDF else None,
        datatype=DATATYPES.get(index.datatype) if index and index.datatype else None,
    )


def edge_config(req: models.CreateCollection) -> Any:
    """An ``EdgeConfig`` for a create request (vectors, sparse vectors, HNSW, quantization,
    optimizer thresholds)."""
    vectors: Any = None
    if isinstance(req.vectors, models.VectorParams):
        vectors = vector_params(req.vectors)
    elif req.vectors:
        vectors = {name: vector_params(p) for name, p in req.vectors.items()}
    sparse = {n: sparse_params(p) for n, p in (req.sparse_vectors or {}).items()} or None
    if not vectors and not sparse:  # Qdrant allows payload-only collections, Edge needs a vector
        sparse = {NO_VECTORS: qe.EdgeSparseVectorParams()}
    opt = req.optimizers_config
    optimizers = None
    if opt is not None:
        optimizers = qe.EdgeOptimizersConfig(
            deleted_threshold=opt.deleted_threshold,
            vacuum_min_vector_number=opt.vacuum_min_vector_number,
            default_segment_number=opt.default_segment_number,
            max_segment_size=opt.max_segment_size,
            indexing_threshold=opt.indexing_threshold,
            prevent_unoptimized=opt.prevent_unoptimized,
        )
    return qe.EdgeConfig(
        vectors=vectors if vectors is not None else ({} if sparse else None),
        sparse_vectors=sparse,
        on_disk_payload=req.on_disk_payload,
        hnsw_config=hnsw(req.hnsw_config),
        quantization_config=quantization(req.quantization_config),
        optimizers=optimizers,
    )


# ---------------------------------------------------------------- payload indexes


def index_schema(schema: Any) -> Any:
    """A REST field schema (type name or params) as Edge's index type or params."""
    if isinstance(schema, models.PayloadSchemaType):
        return SCHEMA_TYPES[schema]
    if isinstance(schema, str):
        return SCHEMA_TYPES[models.PayloadSchemaType(schema)]
    kind = models.PayloadSchemaType(schema.type.value if hasattr(schema.type, "value") else schema.type)
    args = schema.model_dump(exclude_none=True, exclude={"type"})
    params = {
        models.PayloadSchemaType.KEYWORD: qe.KeywordIndexParams,
        models.PayloadSchemaType.INTEGER: qe.IntegerIndexParams,
        models.PayloadSchemaType.FLOAT: qe.FloatIndexParams,
        models.PayloadSchemaType.GEO: qe.GeoIndexParams,
        models.PayloadSchemaType.BOOL: qe.BoolIndexParams,
        models.PayloadSchemaType.DATETIME: qe.DatetimeIndexParams,
        models.PayloadSchemaType.UUID: qe.UuidIndexParams,
    }.get(kind)
    if params is None:  # text params carry tokenizer enums: index by type, defaults
        return SCHEMA_TYPES[kind]
    try:
        return params(**args)
    except TypeError:
        return SCHEMA_TYPES[kind]

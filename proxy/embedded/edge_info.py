"""``CollectionInfo`` of an Edge collection, as a Qdrant server reports it.

The counts and the payload schema (index type and points per indexed field) come from the
shard; the config is the one the collection was created with, filled with Qdrant's defaults
(HNSW m=16 / ef_construct=100 / full_scan_threshold=10000, the optimizer thresholds, WAL 32 MB),
so a client reading ``config.hnsw_config`` or ``config.quantization_config`` sees what it set.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded.edge_catalog import Entry

HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0,
        "on_disk": False}
OPTIMIZERS = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
              "default_segment_number": 0, "indexing_threshold": 10000,
              "flush_interval_sec": 5, "max_optimization_threads": None}
WAL = {"wal_capacity_mb": 32, "wal_segments_ahead": 0}


def _merged(defaults: dict[str, Any], diff: Any) -> dict[str, Any]:
    return {**defaults, **(diff.model_dump(exclude_none=True) if diff is not None else {})}


def collection_info(
    entry: Entry, info: dict[str, Any], status: models.CollectionStatus
) -> models.CollectionInfo:
    cfg = entry.config
    schema = {
        name: models.PayloadIndexInfo(data_type=models.PayloadSchemaType(item["data_type"]),
                                      points=item["points"])
        for name, item in info["payload_schema"].items()
    }
    return models.CollectionInfo(
        status=status,
        optimizer_status=models.OptimizersStatusOneOf.OK,
        indexed_vectors_count=info["indexed_vectors_count"],
        points_count=info["points_count"],
        segments_count=info["segments_count"],
        config=models.CollectionConfig(
            params=models.CollectionParams(
                vectors=cfg.vectors if cfg.vectors is not None else {},
                shard_number=1, replication_factor=1, write_consistency_factor=1,
                on_disk_payload=cfg.on_disk_payload if cfg.on_disk_payload is not None else True,
                sparse_vectors=cfg.sparse_vectors,
            ),
            hnsw_config=models.HnswConfig(**_merged(HNSW, cfg.hnsw_config)),
            optimizer_config=models.OptimizersConfig(**_merged(OPTIMIZERS, cfg.optimizers_config)),
            wal_config=models.WalConfig(**_merged(WAL, cfg.wal_config)),
            quantization_config=cfg.quantization_config,
            strict_mode_config=_strict(cfg.strict_mode_config),
            metadata=entry.metadata,
        ),
        payload_schema=schema,
    )


def _strict(diff: Any) -> Any:
    if diff is None:
        return None
    return models.StrictModeConfigOutput(**diff.model_dump(exclude_none=True))

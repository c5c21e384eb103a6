"""What each engine puts into a snapshot and takes back out of it (:mod:`snapshots` has the
format and the store).

- ``local``: under the engine's write admission (no write overlaps), the collection's stored
  config and payload indexes go into the manifest and its points into ``storage.sqlite``, the
  local engine's own point store: a backup of the collection's file when it has one, else the
  live points written into a new one. Recovery creates the collection from the config (tuning
  included), upserts the stored points, and re-creates the indexes; all in one exclusive turn.
- ``edge``: with the shard's call order held (no call, optimizer pass included, runs on it),
  the worker flushes, and the shard directory is copied. Recovery copies it into a new shard
  directory, registers it in the catalog with the snapshot's config and opens it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

from qdrant_client.http import models
from qdrant_client.local.persistence import CollectionPersistence

from switchyard.proxy.embedded import local_layout, snapshots
from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.errors import BadRequest

_TUNING = ("hnsw_config", "optimizers_config", "quantization_config", "on_disk_payload",
           "wal_config", "strict_mode_config")
_BATCH = 512


async def export(engine: EngineSeam, collection: str, work: str) -> dict[str, Any]:
    """Write the engine's files for ``collection`` into ``work``; the manifest's engine part."""
    if engine.name == "edge":
        return await _edge_export(engine, collection, work)
    return dict(await engine.run(lambda: _local_export(engine, collection, work)))  # type: ignore[attr-defined]


async def restore(engine: EngineSeam, collection: str, work: str, manifest: dict[str, Any]) -> None:
    config = models.CreateCollection.model_validate(manifest["config"])
    if engine.name == "edge":
        await _edge_restore(engine, collection, work, config, manifest)
        return
    await engine.run(lambda: _local_restore(engine, collection, work, config, manifest))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- local engine


def _local_export(engine: Any, collection: str, work: str) -> dict[str, Any]:
    local = engine.local
    name = local_layout.real_name(local, collection)
    coll = local.collections[name]
    target = os.path.join(work, "storage.sqlite")
    if coll.storage is not None:  # the collection's own file: points exactly as written
        snapshots.sqlite_copy(coll.storage.storage, target)
    else:
        store = CollectionPersistence(work)
        try:
            offset = None
            while True:
                records, offset = local.scroll(name, limit=_BATCH, offset=offset,
                                               with_payload=True, with_vectors=True)
                for r in records:
                    store.persist(models.PointStruct(id=r.id, vector=r.vector if r.vector is not None else {},
                                                     payload=r.payload))
                if offset is None:
                    break
        finally:
            store.close()
    indexes = engine.indexes.fields(name)
    from switchyard.proxy.embedded.local_indexes import _SCHEMA

    return {
        "config": coll.config.model_dump(mode="json", exclude_none=True),
        "payload_indexes": {f: _SCHEMA.dump_python(s, mode="json", exclude_none=True) for f, s in indexes.items()},
    }


def _local_restore(engine: Any, collection: str, work: str, config: models.CreateCollection,
                   manifest: dict[str, Any]) -> None:
    from switchyard.proxy.embedded.local_indexes import _SCHEMA

    local = engine.local
    indexes = {f: _SCHEMA.validate_python(s) for f, s in (manifest.get("payload_indexes") or {}).items()}
    stored = CollectionPersistence(work)
    try:
        points = list(stored.load())
    finally:
        stored.close()
    aliases = [a for a, c in local.aliases.items() if c == collection]
    if collection in local.collections:
        local_layout.call(local, engine.indexes, "delete_collection", collection)
    tuning = {k: getattr(config, k) for k in _TUNING if getattr(config, k) is not None}
    local_layout.call(local, engine.indexes, "create_collection", collection,
                      vectors_config=config.vectors if config.vectors is not None else {},
                      sparse_vectors_config=config.sparse_vectors, metadata=config.metadata, **tuning)
    stored_config = local.collections[collection].config
    stored_config.replication_factor = config.replication_factor
    stored_config.write_consistency_factor = config.write_consistency_factor
    for i in range(0, len(points), _BATCH):
        local.upsert(collection, points[i:i + _BATCH])
    for field, schema in indexes.items():
        local_layout.call(local, engine.indexes, "create_payload_index", collection, field, field_schema=schema)
    if aliases:
        local.update_collection_aliases([
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=a))
            for a in aliases])
    local._save()


# ---------------------------------------------------------------- edge engine


async def _edge_export(engine: Any, collection: str, work: str) -> dict[str, Any]:
    name = engine.catalog.resolve(collection)
    entry = engine.catalog.collections[name]
    shard = await engine._shard(name)
    loop = asyncio.get_running_loop()
    async with shard.order:  # nothing runs on the shard until the copy is complete
        await loop.run_in_executor(engine._executor, shard.call_sync, "flush", {})
        await loop.run_in_executor(engine._executor, shutil.copytree,
                                   engine.catalog.shard_path(entry), os.path.join(work, "shard"))
    return {"config": entry.config.model_dump(mode="json", exclude_none=True),
            "metadata": entry.metadata}


async def _edge_restore(engine: Any, collection: str, work: str, config: models.CreateCollection,
                        manifest: dict[str, Any]) -> None:
    source = os.path.join(work, "shard")
    if not os.path.isdir(source):
        raise BadRequest("not a snapshot of an Edge collection: no shard directory")
    loop = asyncio.get_running_loop()
    async with engine._create_lock:
        aliases = [a for a, c in engine.catalog.aliases.items() if c == collection]
        if collection in engine.catalog.collections:
            await engine._delete_collection(collection)
        entry = engine.catalog.new_entry(collection, config)
        entry.metadata = manifest.get("metadata")
        path = engine.catalog.shard_path(entry)
        # a rename where the snapshot store and the data share a file system (the extracted
        # copy is discarded afterwards anyway)
        await loop.run_in_executor(engine._executor, shutil.move, source, path)
        try:
            shard = await loop.run_in_executor(engine._executor, engine._open, path, None)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        engine._shards[collection] = shard
        engine.catalog.collections[collection] = entry
        engine.catalog.aliases.update({a: collection for a in aliases})
        engine.catalog.save()

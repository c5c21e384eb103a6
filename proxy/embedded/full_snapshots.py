"""Full-storage snapshots of the embedded upstream, as Qdrant has them: every collection's
snapshot in one file, plus the map of collections and aliases; recovered only at start-up.

Create (``POST /snapshots``, gRPC ``Snapshots/CreateFull``) takes a collection snapshot of each
collection with :func:`snapshots.create` (the same code and format as
``POST /collections/{c}/snapshots``; like Qdrant, those collection snapshots stay listed under
their collections) and packs them into an uncompressed tar with ``config.json``, Qdrant's
``SnapshotConfig``::

    {"collections_mapping": {"<collection>": "<its snapshot file>"},
     "collections_aliases": {"<alias>": "<collection>"}}

The file is ``full-snapshot-<%Y-%m-%d-%H-%M-%S>.snapshot`` at the root of the
:class:`SnapshotStore` (Qdrant's layout: collection snapshots in ``<root>/<collection>/``), with
its ``.checksum``; a second one in the same second replaces the first, as in Qdrant. Creations
run one at a time. Collections are snapshotted one after another, not at one instant (Qdrant
does the same).

Recovery (:func:`restore`, ``switchyard upstream --storage-snapshot FILE``, Qdrant's
``--storage-snapshot``) runs before the listeners open. Everything is checked before anything
changes: the tar, ``config.json``, each collection snapshot's format and engine, and (unless
``force``, Qdrant's ``--force-snapshot``) that no collection or alias it names exists yet.
Then each collection is recovered with :func:`snapshots.recover` and the aliases are set.
Collections the snapshot does not name are left as they are.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import os
import shutil
import tarfile
import tempfile
from typing import Any

import orjson
from qdrant_client.http import models

from switchyard.proxy.embedded import snapshots
from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.embedded.snapshots import SnapshotStore
from switchyard.proxy.errors import BadRequest, NotFound

PREFIX = "full-snapshot"
CONFIG = "config.json"

def full_name(now: datetime.datetime) -> str:
    """Qdrant's name for a full snapshot taken at ``now`` (UTC)."""
    return f"{PREFIX}-{now.strftime('%Y-%m-%d-%H-%M-%S')}{snapshots.SUFFIX}"


async def create(engine: EngineSeam, store: SnapshotStore) -> models.SnapshotDescription:
    """Snapshot every collection and pack them, with the alias map, into one file."""
    async with store.full_lock:
        listed = await engine.call("get_collections")
        aliases = await engine.call("get_aliases")
        made: dict[str, str] = {}
        files: list[tuple[str, str]] = []
        for collection in sorted(c.name for c in listed.collections):
            try:
                found = await snapshots.create(engine, store, collection)
            except NotFound:  # deleted since it was listed
                continue
            made[collection] = found.name
            files.append((store.path(collection, found.name), found.name))
        config = {"collections_mapping": made,
                  "collections_aliases": {a.alias_name: a.collection_name for a in aliases.aliases
                                          if a.collection_name in made}}
        final = os.path.join(store.root, full_name(datetime.datetime.now(datetime.timezone.utc)))
        await asyncio.to_thread(_pack, files, orjson.dumps(config, option=orjson.OPT_INDENT_2),
                                final + ".tmp")
        await asyncio.to_thread(snapshots.seal, final + ".tmp", final)
        return store.describe(final)


def _pack(files: list[tuple[str, str]], config: bytes, target: str) -> None:
    # uncompressed, as Qdrant's: each collection snapshot in it is compressed already
    with tarfile.open(target, "w") as tar:
        for path, name in files:
            tar.add(path, arcname=name)
        info = tarfile.TarInfo(CONFIG)
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))


def read_config(folder: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(collection -> snapshot file, alias -> collection)`` from an extracted full snapshot;
    a file name that is not a plain name of a file in ``folder`` is refused."""
    try:
        with open(os.path.join(folder, CONFIG), "rb") as fh:
            config = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"not a full storage snapshot: no readable {CONFIG}") from exc
    mapping = config.get("collections_mapping") if isinstance(config, dict) else None
    aliases = config.get("collections_aliases", {}) if isinstance(config, dict) else None
    if not _str_map(mapping) or not _str_map(aliases):
        raise BadRequest(f"not a full storage snapshot: {CONFIG} lacks collections_mapping "
                         "or has a malformed one")
    assert isinstance(mapping, dict) and isinstance(aliases, dict)
    for collection, name in mapping.items():
        if os.path.basename(name) != name or name in ("", ".", "..") \
                or not os.path.isfile(os.path.join(folder, name)):
            raise BadRequest(f"full storage snapshot: the snapshot of collection {collection!r} "
                             f"({name!r}) is not in the file")
    for alias, collection in aliases.items():
        if collection not in mapping:
            raise BadRequest(f"full storage snapshot: alias {alias!r} names {collection!r}, "
                             "a collection the snapshot does not hold")
    return mapping, aliases


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in value.items())


def conflicts(mapping: dict[str, str], aliases: dict[str, str], collections: set[str],
              existing_aliases: set[str]) -> list[str]:
    """What a recovery without ``force`` would overwrite (pure; empty means none)."""
    return ([f"collection {c!r} already exists" for c in sorted(mapping) if c in collections]
            + [f"alias {a!r} already exists" for a in sorted(aliases) if a in existing_aliases])


async def restore(engine: EngineSeam, store: SnapshotStore, file: str, force: bool = False) -> list[str]:
    """Recover every collection and alias of the full snapshot ``file``; the collections."""
    if not os.path.isfile(file):
        raise NotFound(f"storage snapshot {file} not found")
    work = tempfile.mkdtemp(dir=store.root, prefix=".recover-full-")
    try:
        try:
            await asyncio.to_thread(_extract, file, work)
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise BadRequest(f"not a full storage snapshot: {exc}") from exc
        mapping, aliases = read_config(work)
        for name in mapping.values():
            await asyncio.to_thread(snapshots.check_recoverable, engine.name, os.path.join(work, name))
        listed = await engine.call("get_collections")
        present = await engine.call("get_aliases")
        existing_aliases = {a.alias_name for a in present.aliases}
        found = conflicts(mapping, aliases, {c.name for c in listed.collections}, existing_aliases)
        if found and not force:
            raise BadRequest("storage snapshot not recovered: " + "; ".join(found)
                             + " (force overwrites: --force-snapshot)")
        for collection, name in sorted(mapping.items()):
            await snapshots.recover(engine, store, collection, os.path.join(work, name))
        operations: list[Any] = []
        for alias, collection in sorted(aliases.items()):
            if alias in existing_aliases:
                operations.append(models.DeleteAliasOperation(
                    delete_alias=models.DeleteAlias(alias_name=alias)))
            operations.append(models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
        if operations:
            await engine.call("update_collection_aliases", operations)
        return sorted(mapping)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract(file: str, folder: str) -> None:
    with tarfile.open(file, "r:*") as tar:
        tar.extractall(folder, filter="data")

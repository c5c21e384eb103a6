"""What the Edge engine keeps above its shards: the collection list, each collection's config
and shard directory, and the aliases.

Edge knows one shard at a time; collections, aliases and the config a server reports live
here. With a path the catalog is ``catalog.json`` beside the shard directories, replaced
atomically (write, fsync, rename) on every change, so after ``kill -9`` it names exactly the
collections whose create was acknowledged. Shard directories are named by a random id, never by
the collection name (any string Qdrant accepts is a valid name, not every one a valid path).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from qdrant_client.http import models

from switchyard.proxy.errors import BadRequest, Conflict, NotFound

CATALOG = "catalog.json"
SHARDS = "shards"


@dataclass
class Entry:
    """One collection: its shard directory (relative to the root) and its create request."""

    directory: str
    config: models.CreateCollection
    metadata: dict[str, Any] | None = None


@dataclass
class Catalog:
    root: str
    persistent: bool
    collections: dict[str, Entry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str, persistent: bool) -> Catalog:
        cat = cls(root, persistent)
        os.makedirs(os.path.join(root, SHARDS), exist_ok=True)
        file = os.path.join(root, CATALOG)
        if persistent and os.path.exists(file):
            with open(file, "rb") as fh:
                data = orjson.loads(fh.read())
            for name, item in data["collections"].items():
                cat.collections[name] = Entry(
                    item["directory"], models.CreateCollection.model_validate(item["config"]),
                    item.get("metadata"))
            cat.aliases = dict(data.get("aliases", {}))
        return cat

    def save(self) -> None:
        if not self.persistent:
            return
        data = {
            "collections": {
                name: {"directory": e.directory, "metadata": e.metadata,
                       "config": e.config.model_dump(mode="json", exclude_none=True)}
                for name, e in self.collections.items()
            },
            "aliases": self.aliases,
        }
        file = os.path.join(self.root, CATALOG)
        tmp = f"{file}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def shard_path(self, entry: Entry) -> str:
        return os.path.join(self.root, SHARDS, entry.directory)

    def resolve(self, name: str) -> str:
        """The collection a name or alias designates (404 in Qdrant's words if none)."""
        real = self.aliases.get(name, name)
        if real not in self.collections:
            raise NotFound(f"Collection `{name}` doesn't exist!")
        return real

    def new_entry(self, name: str, config: models.CreateCollection) -> Entry:
        if name in self.collections or name in self.aliases:
            raise Conflict(f"Wrong input: Collection `{name}` already exists!", raw=True)
        if not name or "/" in name or len(name) > 255:
            raise BadRequest(f"Validation error in path parameters: collection name `{name}`")
        return Entry(uuid.uuid4().hex, config, config.metadata)

    def change_aliases(self, actions: list[Any]) -> None:
        """Apply alias actions all or nothing, in order, as Qdrant does."""
        aliases = dict(self.aliases)
        for action in actions:
            if isinstance(action, models.CreateAliasOperation):
                a = action.create_alias
                if a.collection_name not in self.collections:
                    raise NotFound(f"Collection `{a.collection_name}` doesn't exist!")
                aliases[a.alias_name] = a.collection_name
            elif isinstance(action, models.DeleteAliasOperation):
                name = action.delete_alias.alias_name
                if name not in aliases:
                    raise NotFound(f"Alias {name} does not exists!")
                del aliases[name]
            elif isinstance(action, models.RenameAliasOperation):
                r = action.rename_alias
                if r.old_alias_name not in aliases:
                    raise NotFound(f"Alias {r.old_alias_name} does not exists!")
                aliases[r.new_alias_name] = aliases.pop(r.old_alias_name)
        self.aliases = aliases
        self.save()

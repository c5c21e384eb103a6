"""Collection snapshots of the embedded upstream: create, list, delete, recover, as Qdrant has them.

A snapshot is a gzip-compressed tar (level 1) of what the engine stores on disk for the
collection, plus a manifest:

- ``manifest.json``: format and version, the engine that wrote it, the collection's name, its
  full stored config (``CreateCollection``: vectors with their per-vector settings, sparse
  vectors, HNSW, optimizers, quantization, WAL, strict mode, on-disk payload), its metadata
  and (local engine) its payload indexes;
- local engine: ``storage.sqlite``, the local engine's own point store (one pickled point per
  row; a copy of the collection's file when the server has a path, else written from the live
  points);
- Edge engine: ``shard/``, the Edge shard directory (segments, WAL, payload indexes) copied
  after a flush while no call runs on the shard. Edge's Python API has no snapshot call, so the
  snapshot is taken from this on-disk state.

Recovery replaces the collection (creating it if absent) with exactly what the snapshot holds:
points, vectors, payloads, payload indexes and config; aliases that named it keep naming it.
A snapshot recovers on the engine that wrote it (the two store different things): another
engine's snapshot is refused with a reason. Between the old collection's removal and the new
one's opening a call on it may see 404, as during Qdrant's own recovery.

Where snapshots live (:class:`SnapshotStore`): ``<root>/<collection>/<name>.snapshot`` with a
``.checksum`` file (sha256) beside, the root being ``SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH``, else
``<data path>/snapshots``, else a temporary directory removed on stop. A recovery location must
be a ``file://`` URL inside the root: the server never reads any other path, and never fetches
URLs. Uploads are bounded (:data:`UPLOAD_ENV`, default :data:`DEFAULT_MAX_UPLOAD`).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlparse

import orjson
from qdrant_client.http import models

from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.errors import BadRequest, NotFound, PayloadTooLarge

FORMAT = "switchyard-embedded-snapshot"
VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".snapshot"
PATH_ENV = "SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH"
UPLOAD_ENV = "SWITCHYARD_UPSTREAM_MAX_SNAPSHOT_UPLOAD"
DEFAULT_MAX_UPLOAD = 1024 * 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.snapshot$")
_CHUNK = 1024 * 1024


def max_upload(env: Mapping[str, str], given: int | None = None) -> int:
    """The largest snapshot upload in bytes: ``given``, else :data:`UPLOAD_ENV`, else the default."""
    if given is not None:
        value = given
    else:
        raw = env.get(UPLOAD_ENV, "").strip()
        try:
            value = int(raw) if raw else DEFAULT_MAX_UPLOAD
        except ValueError as exc:
            raise ValueError(f"{UPLOAD_ENV}: expected a number of bytes, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"{UPLOAD_ENV}: must be at least 1 byte, got {value}")
    return value


@dataclass
class SnapshotStore:
    """The snapshot directory of one server; ``temporary`` roots are removed on :meth:`close`."""

    root: str
    max_upload: int = DEFAULT_MAX_UPLOAD
    temporary: bool = False
    #: full-storage snapshots are created one at a time (:mod:`full_snapshots`)
    full_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @classmethod
    def for_server(cls, data_path: str | None, env: Mapping[str, str],
                   max_upload_bytes: int | None = None, root: str | None = None) -> SnapshotStore:
        """``root``, else :data:`PATH_ENV`, else ``<data_path>/snapshots``, else a temporary dir."""
        limit = max_upload(env, max_upload_bytes)
        root = root or env.get(PATH_ENV, "").strip() or (
            os.path.join(data_path, "snapshots") if data_path else "")
        if root:
            os.makedirs(root, exist_ok=True)
            return cls(os.path.realpath(root), limit)
        return cls(os.path.realpath(tempfile.mkdtemp(prefix="switchyard-snapshots-")), limit, True)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)

    def directory(self, collection: str) -> str:
        return os.path.join(self.root, quote(collection, safe=""))

    def path(self, collection: str, name: str) -> str:
        """The file of snapshot ``name`` (a plain file name, never a path), 404 if absent."""
        return _existing(self.directory(collection), name)

    def full_path(self, name: str) -> str:
        """The file of full-storage snapshot ``name`` (at the root, as Qdrant keeps them)."""
        return _existing(self.root, name)

    def new_name(self, collection: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", collection)[:100] or "collection"
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
        return f"{safe}-{secrets.randbelow(10**16)}-{stamp}{SUFFIX}"

    def describe(self, file: str) -> models.SnapshotDescription:
        stat = os.stat(file)
        created = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
        checksum = None
        if os.path.exists(file + ".checksum"):
            with open(file + ".checksum") as fh:
                checksum = fh.read().strip() or None
        return models.SnapshotDescription(
            name=os.path.basename(file), creation_time=created.replace(tzinfo=None, microsecond=0).isoformat(),
            size=stat.st_size, checksum=checksum)

    def list_full(self) -> list[models.SnapshotDescription]:
        """The full-storage snapshots: the snapshot files at the root (collection folders and
        the work folders beside them are not files of that name)."""
        return self._listing(self.root)

    def _listing(self, folder: str) -> list[models.SnapshotDescription]:
        if not os.path.isdir(folder):
            return []
        names = sorted(n for n in os.listdir(folder)
                       if _NAME.match(n) and os.path.isfile(os.path.join(folder, n)))
        return [self.describe(os.path.join(folder, n)) for n in names]

    def list(self, collection: str) -> list[models.SnapshotDescription]:
        return self._listing(self.directory(collection))

    def delete(self, collection: str, name: str) -> None:
        remove(self.path(collection, name))

    def delete_full(self, name: str) -> None:
        remove(self.full_path(name))

    def location(self, location: str) -> str:
        """The file a recovery ``location`` names, only when it is a ``file://`` URL of an
        existing file inside the snapshot root (symlinks resolved); anything else is refused."""
        parsed = urlparse(location)
        if parsed.scheme != "file":
            raise BadRequest(
                f"snapshot location {location!r}: the embedded upstream recovers only from file:// "
                f"locations inside its snapshot directory {self.root} (it never fetches URLs)")
        if parsed.netloc not in ("", "localhost"):
            raise BadRequest(f"snapshot location {location!r}: a file:// location must be local")
        file = os.path.realpath(unquote(parsed.path))
        if os.path.commonpath([file, self.root]) != self.root:
            raise BadRequest(
                f"snapshot location {location!r} is outside the embedded upstream's snapshot "
                f"directory {self.root}: refused (the server reads no other path)")
        if not os.path.isfile(file):
            raise NotFound(f"Snapshot file {location} not found")
        return file

    def upload_file(self) -> str:
        """A new temporary file under the root for an upload (the caller removes it)."""
        folder = os.path.join(self.root, ".uploads")
        os.makedirs(folder, exist_ok=True)
        fd, file = tempfile.mkstemp(dir=folder, suffix=".upload")
        os.close(fd)
        return file


def _existing(folder: str, name: str) -> str:
    if not _NAME.match(name):  # a plain file name, never a path: no separator, no leading dot
        raise NotFound(f"Snapshot {name} not found")
    file = os.path.join(folder, name)
    if not os.path.isfile(file):
        raise NotFound(f"Snapshot {name} not found")
    return file


def remove(file: str) -> None:
    """Remove a snapshot file and its ``.checksum``."""
    os.remove(file)
    if os.path.exists(file + ".checksum"):
        os.remove(file + ".checksum")


def seal(temporary: str, final: str) -> None:
    """Write the ``.checksum`` of ``temporary`` beside ``final``, then move it there."""
    with open(final + ".checksum", "w") as fh:
        fh.write(sha256(temporary))
    os.replace(temporary, final)


def sha256(file: str) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_checksum(file: str, expected: str | None) -> None:
    if expected and sha256(file) != expected.strip().lower():
        raise BadRequest(f"Snapshot checksum mismatch: expected {expected}, got {sha256(file)}")


class UploadLimit:
    """Counts an upload's bytes; past the limit it raises 413 (the file is then removed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def add(self, n: int) -> None:
        self.seen += n
        if self.seen > self.limit:
            raise PayloadTooLarge(f"snapshot upload exceeds {self.limit} bytes "
                                  f"(raise it with {UPLOAD_ENV})")


# ---------------------------------------------------------------- create and recover


async def create(engine: EngineSeam, store: SnapshotStore, collection: str) -> models.SnapshotDescription:
    """Write a snapshot of ``collection`` into the store and describe it."""
    from switchyard.proxy.embedded import snapshot_engines

    folder = store.directory(collection)
    os.makedirs(folder, exist_ok=True)
    work = tempfile.mkdtemp(dir=folder, prefix=".work-")
    try:
        manifest = await snapshot_engines.export(engine, collection, work)
        manifest.update(format=FORMAT, version=VERSION, engine=engine.name, collection=collection)
        with open(os.path.join(work, MANIFEST), "wb") as fh:
            fh.write(orjson.dumps(manifest))
        name = store.new_name(collection)
        final = os.path.join(folder, name)
        await asyncio.to_thread(_pack, work, final + ".tmp")
        await asyncio.to_thread(seal, final + ".tmp", final)
        return store.describe(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def recover(engine: EngineSeam, store: SnapshotStore, collection: str, file: str) -> bool:
    """Replace ``collection`` with the snapshot in ``file`` (checked entirely before anything
    of the collection is touched)."""
    from switchyard.proxy.embedded import snapshot_engines

    work = tempfile.mkdtemp(dir=store.root, prefix=".recover-")
    try:
        manifest = _same_engine(await asyncio.to_thread(_unpack, file, work), engine.name)
        await snapshot_engines.restore(engine, collection, work, manifest)
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pack(folder: str, target: str) -> None:
    # gzip level 1: an Edge shard preallocates its WAL and storage files (222 MB for 30
    # points), mostly zeros, which level 1 shrinks to almost nothing at little CPU cost
    with tarfile.open(target, "w:gz", compresslevel=1) as tar:
        for entry in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, entry), arcname=entry)


def _unpack(file: str, folder: str) -> dict[str, Any]:
    """Extract a snapshot (regular files and directories only, no path leaving ``folder``)
    and return its manifest; anything else is refused as not a snapshot."""
    try:
        with tarfile.open(file, "r:*") as tar:
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise BadRequest(f"not a snapshot of the embedded upstream: {exc}") from exc
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as fh:
            manifest = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"not a snapshot of the embedded upstream: no readable {MANIFEST}") from exc
    return _checked(manifest)


def check_recoverable(engine_name: str, file: str) -> None:
    """Refuse, without extracting it, a file that :func:`recover` would refuse for its format,
    version or engine (reads only the manifest, which :func:`_pack` puts first)."""
    try:
        with tarfile.open(file, "r:*") as tar:
            member = tar.extractfile(MANIFEST)
            manifest = orjson.loads(member.read()) if member is not None else None
    except (tarfile.TarError, OSError, KeyError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"not a snapshot of the embedded upstream: {exc}") from exc
    _same_engine(_checked(manifest), engine_name)


def _same_engine(manifest: dict[str, Any], engine_name: str) -> dict[str, Any]:
    if manifest.get("engine") != engine_name:
        raise BadRequest(
            f"this snapshot was written by the {manifest.get('engine')} engine and recovers "
            f"only there; this server runs the {engine_name} engine")
    return manifest


def _checked(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadRequest("not a snapshot of the embedded upstream (unknown format)")
    if manifest.get("version") != VERSION:
        raise BadRequest(f"snapshot format version {manifest.get('version')} is not supported "
                         f"(this server reads version {VERSION})")
    return manifest


def sqlite_copy(connection: sqlite3.Connection, target: str) -> None:
    """A consistent copy of an open SQLite database (the backup API)."""
    out = sqlite3.connect(target)
    try:
        connection.backup(out)
    finally:
        out.close()

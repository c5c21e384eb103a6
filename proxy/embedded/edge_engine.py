"""The Edge engine: Qdrant's own segment, index and storage code (``qdrant-edge-py``) behind the
embedded upstream's engine seam (:mod:`switchyard.proxy.embedded.engines`).

A collection is an Edge shard in a directory of its own (in memory mode: under a temporary
directory removed on close), served by a worker process of its own (:mod:`edge_worker`; the
server's end of it is :class:`edge_shard.Shard`).
The collection list, aliases and per-collection config live in the server
(:mod:`edge_catalog`). Calls take and return qdrant-client's REST models, with ``QdrantLocal``'s
method and keyword names, so both front ends drive either engine the same way.

Why a process per collection: Edge holds the GIL for the whole of every call, an HNSW build
included (7 s at 20,000 x 384 here, minutes at 100,000). Run in the server's process it would
stall the event loop and every other collection; in a worker it stalls only its own collection
(its calls queue in arrival order behind the build, as writes and reads on one collection are
ordered anyway). The pipe costs about 0.1-0.3 ms per call (docs/design.md has the numbers).

Filled in above Edge: point ids as queries and ``lookup_from`` (retrieve the vector, then
query), groups (over-fetch, then group) and the distance matrix (sample, then search), in
:mod:`edge_query_fills`; and here the optimizer: after every acknowledged write the
collection's worker runs Edge's optimizers, which index a segment once Qdrant's thresholds
(``indexing_threshold`` and friends) say so; meanwhile the collection reports ``yellow``.
Snapshots, collection and full-storage, are :mod:`snapshot_engines` and :mod:`full_snapshots`;
which calls are catalog calls, reads or dimension-checked writes, :mod:`edge_calls`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qdrant_client.http import models

from switchyard.proxy.embedded import config_changes, request_checks, strict_enforce, strict_writes
from switchyard.proxy.embedded.edge_calls import CATALOG_METHODS, DIMENSIONED, READS, bind
from switchyard.proxy.embedded.edge_catalog import Catalog, Entry
from switchyard.proxy.embedded.edge_query_fills import QueryFills
from switchyard.proxy.embedded.edge_shard import Shard
from switchyard.proxy.errors import BadRequest, SwitchyardError, Unsupported
from switchyard.proxy.owned_tasks import stop_task

#: seconds without writes before a collection's optimizer pass runs
QUIET = 0.5
#: worker processes kept started ahead, so creating a collection does not wait for one
SPARES = 2
#: longest start-up wait for the spares (EdgeEngine.wait_ready)
WARM_WAIT = 10.0


class _ShardView:
    """What strict mode asks of one collection, answered by its shard (see ``_check_strict``)."""

    def __init__(self, engine: EdgeEngine, name: str) -> None:
        self.engine, self.name = engine, name

    async def _info(self) -> dict[str, Any]:
        shard = await self.engine._shard(self.name)
        return shard.last_info or await self.engine._ordered(shard, "info", {})

    async def schema(self) -> dict[str, str]:
        return {k: v["data_type"] for k, v in (await self._info())["payload_schema"].items()}

    async def points_count(self) -> int:
        return int((await self._info())["points_count"])

    async def storage_sizes(self) -> tuple[int, int]:
        widths = strict_writes.element_bytes(self.engine.catalog.collections[self.name].config.vectors)
        vector_bytes, payload_bytes = await self.engine._shard_call(
            self.name, "storage_sizes", {"widths": widths})
        return int(vector_bytes), int(payload_bytes)

    async def estimate(self, flt: models.Filter) -> int:
        counted = await self.engine._shard_call(self.name, "count",
                                                {"count_filter": flt, "exact": False})
        return int(counted.count)


class EdgeEngine:
    """The engine seam over Edge shards; see the module docstring."""

    name = "edge"
    #: what this engine cannot answer (501 in Qdrant's shape)
    unsupported: frozenset[str] = frozenset()

    def __init__(self, path: str | None = None, readers: int | None = None) -> None:
        self.path = path
        self._temp = None if path else tempfile.mkdtemp(prefix="switchyard-edge-")
        root = path or self._temp
        assert root is not None
        os.makedirs(root, exist_ok=True)
        self.catalog = Catalog.open(root, persistent=path is not None)
        self._shards: dict[str, Shard] = {}
        #: first opens in flight (:meth:`_shard`), one per collection
        self._opening: dict[str, asyncio.Task[Shard]] = {}
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="switchyard-edge")
        self._operations = itertools.count(1)
        self._create_lock = asyncio.Lock()
        self._spares: list[Shard] = []
        self._spares_lock = threading.Lock()  # held while starting spares: a taker waits
        self._warming = self._executor.submit(self._warm)
        #: strict mode, with its rate-limit buckets per collection
        self.strict = strict_enforce.Enforcer()
        #: the queries Edge lacks, filled in with shard calls (:mod:`edge_query_fills`)
        self.queries = QueryFills(self._shard_call, self.catalog.resolve)

    async def wait_ready(self) -> None:
        """Until the first spare workers have started, for at most :data:`WARM_WAIT` seconds.
        The first start launches the forkserver, which imports Edge and the models (seconds on
        a loaded machine); the server waits for it before it says ready, so the first create
        answers within a client's timeout. Bounded so that start-up stays within its own bound
        when the machine is very slow: a create then waits for the spares itself."""
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._warming)), WARM_WAIT)
        except TimeoutError:
            pass

    def _warm(self) -> None:
        with self._spares_lock:
            while len(self._spares) < SPARES:
                self._spares.append(Shard())

    def _open(self, path: str, create: models.CreateCollection | None) -> Shard:
        """A worker serving the shard at ``path`` (blocking: runs on the executor). It is a spare
        started earlier when there is one, and a new spare is started for the next (starting a
        worker costs far more than opening a shard in one)."""
        with self._spares_lock:
            worker = self._spares.pop() if self._spares else Shard()
        self._executor.submit(self._warm)
        return worker.open(path, create)

    def next_operation_id(self) -> int:
        return next(self._operations)

    # ------------------------------------------------------------ dispatch

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run one seam call (``QdrantLocal``'s name and arguments)."""
        timeout = kwargs.pop("timeout", None)  # the request's, for strict mode's max_timeout
        request_checks.check_call(method, args, kwargs)
        if method in self.unsupported:
            raise Unsupported(f"{method} is not supported by the embedded upstream (Edge engine)")
        if method == "query_batch":
            name, batch = args
            await self._check_strict(self.catalog.resolve(name), method, {"batch": batch}, timeout)
            return await self.queries.query_batch(name, batch)
        kw = bind(method, args, kwargs)
        if method in CATALOG_METHODS:
            return await getattr(self, f"_{method}")(**kw)
        name = self.catalog.resolve(kw.pop("collection_name"))
        await self._check_strict(name, method, kw, timeout)
        if method == "query_points":
            return (await self.queries.query_batch(name, [kw]))[0]
        if method == "query_points_groups":
            return await self.queries.groups(name, kw)
        if method in ("search_matrix_pairs", "search_matrix_offsets"):
            return await self.queries.matrix(name, method, kw)
        if method in DIMENSIONED:
            request_checks.check_dimensions(self.catalog.collections[name].config, method, kw)
        if method in ("create_vector_name", "delete_vector_name"):
            return await self._vector_name(name, method, kw)
        return await self._shard_call(name, method, kw)

    async def _check_strict(self, name: str, method: str, kw: dict[str, Any],
                            timeout: int | None) -> None:
        """The collection's strict mode (:mod:`strict_enforce`), before anything runs. The index
        checks read the payload schema and the points-count check the count the shard reported
        with its last write (payload indexes are writes), asking the shard only when it has not
        reported yet; a write by filter is charged the shard's estimate of the points it selects."""
        await self.strict.check(name, self.catalog.collections[name].config.strict_mode_config,
                                method, kw, timeout, _ShardView(self, name))

    async def _vector_name(self, name: str, method: str, kw: dict[str, Any]) -> Any:
        """Add or drop a named vector: checked against the catalog's config first, applied by
        the shard, then recorded (the catalog's config is what writes are checked against and
        what the collection info reports)."""
        entry = self.catalog.collections[name]
        if method == "create_vector_name":
            changed = config_changes.add_vector_name(
                entry.config, kw["vector_name"], kw["vector_name_config"])
        else:
            changed = config_changes.drop_vector_name(entry.config, kw["vector_name"])
        if changed is entry.config:  # re-created identically: Qdrant answers ok, nothing to do
            return None
        result = await self._shard_call(name, method, kw)
        entry.config = changed
        self.catalog.save()
        return result

    async def _shard_call(self, name: str, method: str, kw: dict[str, Any]) -> Any:
        shard = await self._shard(name)
        result = await self._ordered(shard, method, kw)
        if method not in READS:
            self._schedule_optimize(shard)
        return result

    async def _ordered(self, shard: Shard, method: str, kw: dict[str, Any]) -> Any:
        """Run on the worker in arrival order; the order is kept until the worker answers,
        even when the caller stops waiting."""
        await shard.order.acquire()
        loop = asyncio.get_running_loop()
        try:
            job = self._executor.submit(shard.call_sync, method, kw)
        except BaseException:
            shard.order.release()
            raise
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(shard.order.release))
        return await asyncio.wrap_future(job, loop=loop)

    async def _shard(self, name: str) -> Shard:
        """The worker serving ``name``, opened on first use (after a restart: the first request).

        Every request that arrives while it opens awaits the one opening: a second worker on
        the same shard directory fails on its WAL lock (`failed to open WAL`). The opening is
        shielded, so a request that is cancelled meanwhile does not leak a worker holding it."""
        shard = self._shards.get(name)
        if shard is None:
            opening = self._opening.get(name)
            if opening is None:
                opening = asyncio.get_running_loop().create_task(self._open_existing(name),
                                                                 name=f"edge-open-{name}")
                self._opening[name] = opening  # owned: awaited by delete and aclose
            shard = await asyncio.shield(opening)
        return shard

    async def _open_existing(self, name: str) -> Shard:
        try:
            path = self.catalog.shard_path(self.catalog.collections[name])
            loop = asyncio.get_running_loop()
            shard: Shard = await loop.run_in_executor(self._executor, self._open, path, None)
            self._shards[name] = shard
            return shard
        finally:
            self._opening.pop(name, None)

    async def _opened(self, name: str) -> None:
        """Wait for an opening of ``name`` in flight (its outcome is the opener's business)."""
        opening = self._opening.get(name)
        if opening is not None:
            await asyncio.gather(asyncio.shield(opening), return_exceptions=True)

    # ------------------------------------------------------------ optimizer

    def _schedule_optimize(self, shard: Shard) -> None:
        """An optimizer pass once the collection's writes pause for :data:`QUIET` seconds
        (writes queue behind a pass in the worker, so an upload is not cut into rebuilds);
        writes during a pass get one more pass. The collection's owned task, stopped by
        :meth:`aclose`."""
        shard.dirty = True
        shard.writes += 1
        if shard.optimize_task is None or shard.optimize_task.done():
            shard.optimize_task = asyncio.get_running_loop().create_task(self._optimize(shard))

    async def _optimize(self, shard: Shard) -> None:
        while shard.dirty:
            seen = shard.writes
            await asyncio.sleep(QUIET)
            if shard.writes != seen:
                continue  # still being written: wait for a pause
            shard.dirty = False
            try:
                # while the pass runs no write completes: the info of the last one is current
                shard.optimizing = True
                await self._ordered(shard, "optimize", {})
            except SwitchyardError:
                pass  # the shard refused to optimize: it stays unindexed and searchable
            finally:
                shard.optimizing = False

    async def wait_optimized(self, name: str) -> None:
        """Wait until the collection's optimizer pass (if any) has finished (tests, bench)."""
        shard = self._shards.get(self.catalog.resolve(name))
        if shard is not None and shard.optimize_task is not None:
            await asyncio.shield(shard.optimize_task)

    # ------------------------------------------------------------ catalog methods

    async def _create_collection(self, collection_name: str, **kw: Any) -> bool:
        config = models.CreateCollection(
            vectors=kw.get("vectors_config"),
            sparse_vectors=kw.get("sparse_vectors_config"),
            hnsw_config=kw.get("hnsw_config"),
            optimizers_config=kw.get("optimizers_config"),
            quantization_config=kw.get("quantization_config"),
            on_disk_payload=kw.get("on_disk_payload"),
            strict_mode_config=kw.get("strict_mode_config"),
            wal_config=kw.get("wal_config"),
            metadata=kw.get("metadata"),
        )
        if isinstance(config.vectors, models.VectorParams) and not 1 <= config.vectors.size <= 65536:
            raise BadRequest(f"Vector size {config.vectors.size} is invalid. Must be from 1 to 65536.")
        async with self._create_lock:
            entry = self.catalog.new_entry(collection_name, config)
            path = self.catalog.shard_path(entry)
            loop = asyncio.get_running_loop()
            try:
                shard = await loop.run_in_executor(self._executor, self._open, path, config)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            self._shards[collection_name] = shard
            self.catalog.collections[collection_name] = entry
            self.catalog.save()
        return True

    async def _delete_collection(self, collection_name: str, **_: Any) -> bool:
        name = self.catalog.aliases.get(collection_name, collection_name)
        await self._opened(name)  # its worker is then in _shards, closed below
        entry = self.catalog.collections.pop(name, None)
        if entry is None:
            return False
        self.catalog.aliases = {a: c for a, c in self.catalog.aliases.items() if c != name}
        self.catalog.save()
        self.strict.forget(name)
        shard = self._shards.pop(name, None)
        loop = asyncio.get_running_loop()
        if shard is not None:
            shard.dirty = False  # no further optimizer pass; one running is waited for below
            await stop_task(shard.optimize_task)
            async with shard.order:
                await loop.run_in_executor(self._executor, shard.close)
        await loop.run_in_executor(
            self._executor, functools.partial(shutil.rmtree, self.catalog.shard_path(entry), True))
        return True

    async def _collection_exists(self, collection_name: str, **_: Any) -> bool:
        return self.catalog.aliases.get(collection_name, collection_name) in self.catalog.collections

    async def _get_collections(self, **_: Any) -> models.CollectionsResponse:
        return models.CollectionsResponse(
            collections=[models.CollectionDescription(name=n) for n in self.catalog.collections])

    async def _get_collection(self, collection_name: str, **_: Any) -> models.CollectionInfo:
        from switchyard.proxy.embedded.edge_info import collection_info

        name = self.catalog.resolve(collection_name)
        shard = await self._shard(name)
        if shard.optimizing and shard.last_info is not None:
            info, status = shard.last_info, models.CollectionStatus.YELLOW
        else:
            info = shard.last_info = await self._ordered(shard, "info", {})
            status = models.CollectionStatus.GREEN
        return collection_info(self.catalog.collections[name], info, status)

    async def _update_collection(self, collection_name: str, **kw: Any) -> bool:
        name = self.catalog.resolve(collection_name)
        entry: Entry = self.catalog.collections[name]
        if kw.get("metadata") is not None:
            entry.metadata = {**(entry.metadata or {}), **kw["metadata"]}
        # every diff checked before any is recorded; reported from now on, Edge applies a
        # config on the next open (config_changes has Qdrant's merge rules)
        entry.config = config_changes.apply_update(entry.config, **kw)
        self.catalog.save()
        return True

    async def _update_collection_aliases(self, change_aliases_operations: list[Any], **_: Any) -> bool:
        self.catalog.change_aliases(change_aliases_operations)
        return True

    async def _get_aliases(self, **_: Any) -> models.CollectionsAliasesResponse:
        return models.CollectionsAliasesResponse(aliases=[
            models.AliasDescription(alias_name=a, collection_name=c)
            for a, c in self.catalog.aliases.items()])

    async def _get_collection_aliases(self, collection_name: str, **_: Any) -> Any:
        return models.CollectionsAliasesResponse(aliases=[
            models.AliasDescription(alias_name=a, collection_name=c)
            for a, c in self.catalog.aliases.items() if c == collection_name])

    async def _info(self, **_: Any) -> models.VersionInfo:
        from switchyard.proxy.embedded.rest_app import server_version

        return models.VersionInfo(title="qdrant - vector search engine", version=server_version())

    # ------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Stop the optimizer tasks (a pass already running finishes or is cut off by the
        worker's close), then :meth:`close` off the event loop."""
        for name in list(self._opening):
            await self._opened(name)
        for shard in list(self._shards.values()):
            shard.dirty = False
            await stop_task(shard.optimize_task)
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop every worker (flushing its shard), then remove the temporary root if any."""
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards + self._spares:
            shard.close()
        self._spares = []
        self._executor.shutdown(wait=True)
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)

"""REST routes of the embedded upstream for collection snapshots (:mod:`snapshots`).

``POST /collections/{c}/snapshots`` creates, ``GET`` lists, ``GET .../{name}`` downloads the
file, ``DELETE .../{name}`` deletes, ``PUT .../recover`` recovers from a ``file://`` location
inside the server's snapshot directory (nothing else is read), ``POST .../upload`` recovers from
an uploaded file (multipart field ``snapshot``, streamed to disk under the upload bound: 413
past it).

Full-storage snapshots (:mod:`full_snapshots`): ``POST /snapshots`` creates, ``GET /snapshots``
lists, ``GET /snapshots/{name}`` downloads, ``DELETE /snapshots/{name}`` deletes. Read-only keys
may list and download, as on Qdrant (its read-only key allows reads only).

``?wait=false``, as on Qdrant, answers 202 ``{"status": "accepted"}``: a create (collection or
full) at once, the snapshot taken in the background (:class:`BackgroundWork`: an owned task,
its failure logged with the reason, drained at shutdown; a missing collection is still Qdrant's
404 before the 202); a delete after deleting (it takes no time). Recovery and upload always
finish before they answer. ``wait=true`` (the default) answers when the work is done.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from qdrant_client.http import models

from switchyard.proxy.embedded import full_snapshots, snapshots
from switchyard.proxy.embedded.background_work import BackgroundWork
from switchyard.proxy.embedded.rest_codec import Ctx, Route, unsupported
from switchyard.proxy.embedded.snapshots import SnapshotStore
from switchyard.proxy.errors import BadRequest

C = "/collections/{collection_name}/snapshots"
F = "/snapshots"


def routes(store: SnapshotStore | None, work: BackgroundWork) -> list[Route]:
    """The snapshot routes over ``store`` (501 for each without one); ``wait=false`` creates
    run in ``work``, which its owner drains before closing the engine."""
    if store is None:
        off = unsupported("Snapshots")
        return [Route("POST", C + "/upload", off, write=True), Route("PUT", C + "/recover", off, write=True),
                Route("GET", C, off), Route("POST", C, off, write=True),
                Route("DELETE", C + "/{snapshot_name}", off, write=True), Route("GET", C + "/{snapshot_name}", off),
                Route("GET", F, off), Route("POST", F, off, write=True),
                Route("DELETE", F + "/{snapshot_name}", off, write=True), Route("GET", F + "/{snapshot_name}", off)]

    async def exists(ctx: Ctx) -> None:
        await ctx.engine.call("get_collection", ctx.collection)  # Qdrant's 404 for a missing one

    async def create(ctx: Ctx) -> Any:
        started, wait = time.perf_counter(), _wait(ctx)
        await exists(ctx)
        if wait:
            return await snapshots.create(ctx.engine, store, ctx.collection)
        engine, collection = ctx.engine, ctx.collection
        work.start(f"snapshot of collection {collection!r}",
                   lambda: snapshots.create(engine, store, collection))
        return _accepted(started)

    async def list_(ctx: Ctx) -> Any:
        await exists(ctx)
        return store.list(ctx.collection)

    async def download(ctx: Ctx) -> Any:
        file = store.path(ctx.collection, ctx.params["snapshot_name"])
        return web.FileResponse(file, headers={"Content-Type": "application/octet-stream"})

    async def delete(ctx: Ctx) -> Any:
        started, wait = time.perf_counter(), _wait(ctx)
        store.delete(ctx.collection, ctx.params["snapshot_name"])
        return True if wait else _accepted(started)

    async def recover(ctx: Ctx) -> Any:
        req: models.SnapshotRecover = await ctx.parse(models.SnapshotRecover)
        file = store.location(req.location)
        snapshots.check_checksum(file, req.checksum)
        return await snapshots.recover(ctx.engine, store, ctx.collection, file)

    async def upload(ctx: Ctx) -> Any:
        file = store.upload_file()
        try:
            await _receive(ctx.request, file, snapshots.UploadLimit(store.max_upload))
            snapshots.check_checksum(file, ctx.query.get("checksum"))
            return await snapshots.recover(ctx.engine, store, ctx.collection, file)
        finally:
            if os.path.exists(file):
                os.remove(file)

    async def create_full(ctx: Ctx) -> Any:
        started, wait = time.perf_counter(), _wait(ctx)
        if wait:
            return await full_snapshots.create(ctx.engine, store)
        engine = ctx.engine
        work.start("full-storage snapshot", lambda: full_snapshots.create(engine, store))
        return _accepted(started)

    async def list_full(ctx: Ctx) -> Any:
        return store.list_full()

    async def download_full(ctx: Ctx) -> Any:
        file = store.full_path(ctx.params["snapshot_name"])
        return web.FileResponse(file, headers={"Content-Type": "application/octet-stream"})

    async def delete_full(ctx: Ctx) -> Any:
        started, wait = time.perf_counter(), _wait(ctx)
        store.delete_full(ctx.params["snapshot_name"])
        return True if wait else _accepted(started)

    return [
        Route("GET", F, list_full),
        Route("POST", F, create_full, write=True),
        Route("DELETE", F + "/{snapshot_name}", delete_full, write=True),
        Route("GET", F + "/{snapshot_name}", download_full),
        Route("POST", C + "/upload", upload, write=True, raw=True),
        Route("PUT", C + "/recover", recover, write=True),
        Route("GET", C, list_),
        Route("POST", C, create, write=True),
        Route("DELETE", C + "/{snapshot_name}", delete, write=True),
        Route("GET", C + "/{snapshot_name}", download),
    ]


async def _receive(request: web.Request, file: str, limit: snapshots.UploadLimit) -> None:
    """Stream the ``snapshot`` part of a multipart body into ``file``, bounded by ``limit``."""
    if request.content_length is not None and request.content_length > limit.limit + 64 * 1024:
        limit.add(request.content_length)  # refuse before reading what is known to be too big
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:
        raise BadRequest(f"a snapshot upload is a multipart/form-data body: {exc}") from exc
    while True:
        part = await reader.next()
        if part is None:
            raise BadRequest("the upload has no `snapshot` part")
        if isinstance(part, BodyPartReader) and part.name == "snapshot":
            break
    with open(file, "wb") as fh:
        while chunk := await part.read_chunk(1024 * 1024):
            limit.add(len(chunk))
            fh.write(chunk)


def _wait(ctx: Ctx) -> bool:
    """``?wait=`` as Qdrant parses it: ``true`` (the default) or ``false``, else 400."""
    raw = ctx.query.get("wait", "true")
    if raw not in ("true", "false"):
        raise BadRequest(f"Query deserialize error: wait: provided string was not `true` or `false`: {raw!r}")
    return raw == "true"


def _accepted(started: float) -> web.Response:
    """Qdrant's answer to ``wait=false``: 202 with ``{"status": "accepted", "time": t}``."""
    body = orjson.dumps({"status": "accepted", "time": time.perf_counter() - started})
    return web.Response(status=202, body=body, content_type="application/json")

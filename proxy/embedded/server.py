"""Lifecycle of the embedded upstream: REST (aiohttp) and gRPC (grpc.aio) over one :class:`Engine`.

:class:`EmbeddedUpstream` runs on the caller's event loop (``async with``); ports may be 0 and
the bound ones are read back from the sockets. :class:`BackgroundUpstream` runs the same thing
on its own thread and uvloop event loop, for synchronous code (sync tests, sync qdrant-client).

Stopping drains: listeners close first (in-flight requests get a grace period), then the engine
finishes its queued calls and closes storage, which releases the local engine's lock file.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from switchyard.proxy.embedded import snapshots
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.background_work import BackgroundWork
from switchyard.proxy.embedded.engines import EngineSeam, choose, make_engine
from switchyard.proxy.embedded.rest_app import DEFAULT_MAX_BODY, ResponseHook, build_app

log = logging.getLogger(__name__)

GRPC_MODULE = "switchyard.proxy.embedded.grpc_app"
GRACE_SECONDS = 2.0
START_TIMEOUT = 30.0


def _load_grpc_app() -> Any | None:
    """The gRPC front end module; ``None`` only while it does not exist at all.

    Any other import failure propagates: once the module exists, gRPC is never skipped silently.
    """
    try:
        return importlib.import_module(GRPC_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != GRPC_MODULE:
            raise
        log.warning("embedded upstream: %s does not exist yet, serving REST only", GRPC_MODULE)
        return None


IDLE_TIMEOUT_ENV = "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT"
IDLE_TIMEOUT_DEFAULT = 60.0


def idle_timeout(env: Mapping[str, str]) -> float:
    """Seconds an idle (or never-finished) REST connection to the embedded upstream may stay."""
    raw = env.get(IDLE_TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else IDLE_TIMEOUT_DEFAULT
    except ValueError as exc:
        raise ValueError(f"{IDLE_TIMEOUT_ENV}: expected seconds, got {raw!r}") from exc
    if not 0 < value < float("inf"):
        raise ValueError(f"{IDLE_TIMEOUT_ENV}: must be a positive number of seconds, got {raw!r}")
    return value


class EmbeddedUpstream:
    """A Qdrant-compatible server on ``host``; ``path=None`` keeps data in memory."""

    def __init__(
        self,
        path: str | None = None,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int = 0,
        keys: ApiKeys = ApiKeys(),
        *,
        max_body: int = DEFAULT_MAX_BODY,
        on_response: ResponseHook | None = None,
        readers: int | None = None,
        engine: str | None = None,
        max_snapshot_upload: int | None = None,
        snapshots_path: str | None = None,
        storage_snapshot: str | None = None,
        force_snapshot: bool = False,
    ) -> None:
        self.path = path
        #: a full-storage snapshot to recover at start, before the listeners open (Qdrant's
        #: ``--storage-snapshot``); ``force_snapshot`` lets it overwrite collections and aliases
        self.storage_snapshot = storage_snapshot
        self.force_snapshot = force_snapshot
        #: where collection snapshots live (None: SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH, else
        #: <path>/snapshots, else a temporary directory removed on stop)
        self.snapshots_path = snapshots_path
        #: largest snapshot upload in bytes (None: SWITCHYARD_UPSTREAM_MAX_SNAPSHOT_UPLOAD or 1 GiB)
        self.max_snapshot_upload = snapshots.max_upload(os.environ, max_snapshot_upload)
        self.snapshots: snapshots.SnapshotStore | None = None
        #: ``?wait=false`` snapshot creations still running (drained by :meth:`stop`)
        self.background = BackgroundWork()
        self.engine_name, self.engine_reason = choose(engine)
        self.readers = readers
        self.host = host
        self._want_http = http_port
        self._want_grpc = grpc_port
        self.keys = keys
        self.max_body = max_body
        self.on_response = on_response
        self._engine: EngineSeam | None = None
        self._runner: web.AppRunner | None = None
        self._grpc: Any = None
        self._http_port = 0
        self._grpc_port = 0

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def grpc_port(self) -> int:
        """The bound gRPC port; 0 while not started (or while the gRPC front end is missing)."""
        return self._grpc_port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self._grpc_port}"

    @property
    def engine(self) -> EngineSeam:
        if self._engine is None:
            raise RuntimeError("embedded upstream is not started")
        return self._engine

    async def start(self) -> None:
        """Open storage, bind both listeners; on any failure undo what was started."""
        grpc_app = _load_grpc_app()
        self.background = BackgroundWork()  # a stopped server started again takes new work
        self._engine = make_engine(self.engine_name, self.path, readers=self.readers)
        self.snapshots = snapshots.SnapshotStore.for_server(
            self.path, os.environ, self.max_snapshot_upload, self.snapshots_path)
        try:
            ready = getattr(self._engine, "wait_ready", None)
            if ready is not None:  # the edge engine's first workers (see EdgeEngine.wait_ready)
                await ready()
            if self.storage_snapshot:
                from switchyard.proxy.embedded import full_snapshots

                restored = await full_snapshots.restore(
                    self.engine, self.snapshots, self.storage_snapshot, self.force_snapshot)
                log.info("embedded upstream: recovered %s from storage snapshot %s",
                         ", ".join(restored) or "no collections", self.storage_snapshot)
            await self._start_rest()
            if grpc_app is not None:
                await self._start_grpc(grpc_app)
        except BaseException:
            await self.stop()
            raise
        log.info("embedded upstream ready http=%s grpc=%s engine: %s",
                 self.rest_url, self.grpc_address, self.engine_reason)

    async def _start_rest(self) -> None:
        app = build_app(
            self.engine, self.keys, max_body=self.max_body, on_response=self.on_response,
            snapshots=self.snapshots, background=self.background,
        )
        # idle keep-alive connections, and connections that never finish a request head, close
        # after this long (aiohttp's keepalive timer covers both): issue 11, connection hygiene
        self._runner = web.AppRunner(app, shutdown_timeout=GRACE_SECONDS, access_log=None,
                                     keepalive_timeout=idle_timeout(os.environ))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_http)
        await site.start()
        self._http_port = int(self._runner.addresses[0][1])

    async def _start_grpc(self, grpc_app: Any) -> None:
        import grpc  # only front ends import grpc; lazily, so REST-only use never needs it

        server = grpc.aio.server()
        grpc_app.add_services(server, self.engine, self.keys, self.snapshots)
        port = server.add_insecure_port(f"{self.host}:{self._want_grpc}")
        if port == 0:
            raise OSError(f"cannot bind gRPC on {self.host}:{self._want_grpc}")
        self._grpc = server
        await server.start()
        self._grpc_port = port

    async def stop(self) -> None:
        """Close listeners (in-flight calls get a grace period), let background snapshot work
        finish (:meth:`BackgroundWork.drain`), then drain and close the engine."""
        grpc_server, self._grpc = self._grpc, None
        runner, self._runner = self._runner, None
        engine, self._engine = self._engine, None
        store, self.snapshots = self.snapshots, None
        if grpc_server is not None:
            await grpc_server.stop(GRACE_SECONDS)
        if runner is not None:
            await runner.cleanup()
        await self.background.drain()
        if engine is not None:
            aclose = getattr(engine, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                await asyncio.to_thread(engine.close)
        if store is not None:
            store.close()  # removes only a temporary snapshot directory

    async def __aenter__(self) -> EmbeddedUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where available, else the default one."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class BackgroundUpstream:
    """:class:`EmbeddedUpstream` on a private thread and event loop, driven synchronously."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.server = EmbeddedUpstream(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    http_port = property(lambda self: self.server.http_port)
    grpc_port = property(lambda self: self.server.grpc_port)
    rest_url = property(lambda self: self.server.rest_url)
    grpc_address = property(lambda self: self.server.grpc_address)

    def start(self) -> None:
        """Start the loop thread and the server; raises what the server's start raised."""
        loop = new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="switchyard-embedded-upstream", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), loop).result(START_TIMEOUT)
        except BaseException:
            self._halt()
            raise

    def stop(self) -> None:
        """Stop the server (draining), then the loop and its thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result(START_TIMEOUT)
        finally:
            self._halt()

    def _halt(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        loop.close()

    def __enter__(self) -> BackgroundUpstream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

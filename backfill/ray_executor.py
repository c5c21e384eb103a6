"""The backfill's embedding step on a Ray Data actor pool (``switchyard backfill --executor ray``).

:class:`RayEmbedder` is an :class:`~switchyard.proxy.embedders.Embedder`: the daemon keeps its
leases, checkpoints, fencing, re-read and throttle, and only ``embed`` runs elsewhere -- on
``actors`` Ray actors, each of which builds the model's embedder once
(:func:`~switchyard.proxy.embedders.make_embedder`) and runs its async ``embed`` on an event
loop of its own; an actor reserves ``spec.gpus`` GPUs when the model spec asks for them.

Why one long-lived dataset and not one per batch: a Ray Data execution starts its actor pool
anew, which costs about 2 s per dataset on a 2-core machine (measured: 64 texts, 2 actors,
2.0-2.9 s per ``from_items(...).map_batches(...).take_all()`` after the first). So the
embedder starts **one** streaming execution when first used and feeds it for its whole life:
``read_datasource`` over a source whose single read task pulls requests from a Ray queue (one
row per daemon batch: request id and texts), ``map_batches`` on an ``ActorPoolStrategy`` pool,
and a pump thread iterating the output that hands each result to the waiting ``embed`` call.
Every in-flight batch of the daemon (``--concurrency``) shares that execution; the actors load
the model once. Two settings make it stream: a block target of 1 byte on the read side (each
request leaves the read task as its own block at once instead of being coalesced towards
128 MiB) and no no-progress timeout (a daemon draining the repair log may be idle for hours).
``RAY_DATA_METADATA_PREFETCH_ON_THREAD=0`` (set unless given) cuts a request's round trip from
~0.33 s to ~0.12 s here. Under heavy load an execution was once seen holding finished results
back (with Ray's default fetch thread too, in every run tried); a result
that does not arrive within ``call_timeout`` marks the execution stuck: the call fails with
``ProviderDown`` and the next one starts a fresh execution.

The daemon's event loop never blocks on Ray: starting Ray and submitting a request run in
``asyncio.to_thread``; the result comes back through ``loop.call_soon_threadsafe``. Errors keep
their meaning across the boundary: an embedder error raised in an actor (``RateLimited``,
``ProviderDown``, ``EmbedderBadInput``...) is raised again here as the same class, so the
daemon's outage handling is unchanged; a Ray failure (an actor or the execution died, the
cluster unreachable) is ``ProviderDown`` -- transient: the daemon retries from its checkpoint and
the next ``embed`` starts a fresh execution.

``ray`` is imported here only, when the first embedder starts (``switchyard --help`` never
loads it). With no ``address`` (and no ``RAY_ADDRESS``) a local Ray instance is started bound
to the loopback interface, without dashboard or usage statistics, and shut down by
:meth:`RayEmbedder.aclose`; with an address the embedder connects to that cluster, whose
nodes need ``switchyard[ray]`` installed (the UDF is
:class:`~switchyard.backfill.ray_actor.EmbedActor`, which runs on the workers; that module also
holds the actor's row format -- :func:`error_text`, :func:`error_from_text`, :func:`decode` --
and this one re-exports those names).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

import numpy as np

from switchyard.backfill.ray_actor import _SOURCE
from switchyard.backfill.ray_actor import EmbedActor as EmbedActor  # re-exported
from switchyard.backfill.ray_actor import decode as decode
from switchyard.backfill.ray_actor import error_from_text as error_from_text
from switchyard.backfill.ray_actor import error_text as error_text
from switchyard.proxy import errors
from switchyard.proxy.embedders.base import check_texts, empty_result
from switchyard.proxy.errors import ConfigError, EmbedderError, ProviderDown
from switchyard.proxy.modelspec import ModelSpec

log = logging.getLogger("switchyard.backfill.ray")

MISSING_RAY = "--executor ray needs the ray extra: pip install 'switchyard[ray]'"
#: how long one embed call may wait for its result before it counts as a Ray failure
DEFAULT_CALL_TIMEOUT = 300.0


def import_ray(local: bool) -> Any:
    """``ray`` with Ray Data, or :class:`ConfigError` naming the extra. ``local``: the caller
    will start its own single-node instance, so Ray binds the loopback interface only (Ray reads
    this at import, hence here). No usage statistics are sent unless the operator says so."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_METADATA_PREFETCH_ON_THREAD", "0")  # see module docstring
    if local:
        # Ray's own switch: node address 127.0.0.1, every server on loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # probed, not required: without the extra the daemon still runs (--executor local)
    if find_spec("ray") is None or find_spec("pyarrow") is None:
        raise ConfigError(MISSING_RAY)
    try:
        import ray
        import ray.data  # noqa: F401 -- the extra's other half
        import ray.util.queue  # noqa: F401
    except ImportError as exc:
        raise ConfigError(MISSING_RAY) from exc
    return ray


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[np.ndarray]
    count: int


@dataclass
class Pipeline:
    """One streaming Ray Data execution fed by a queue, and the thread reading its output."""

    ray: Any
    spec: ModelSpec
    actors: int
    queue: Any = None
    thread: threading.Thread | None = None
    failure: str = ""
    waiters: dict[int, _Waiter] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Create the queue and the dataset, and start the pump (blocking: call in a thread)."""
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        dataset = self._dataset()
        self.thread = threading.Thread(target=self._pump, args=(dataset,), daemon=True,
                                       name="switchyard-ray-pump")
        self.thread.start()

    def _dataset(self) -> Any:
        rd = self.ray.data
        source = queue_source(rd, self.queue)
        ds = rd.read_datasource(source, num_cpus=0, override_num_blocks=1).map_batches(
            EmbedActor, fn_constructor_kwargs={"spec": self.spec.to_dict()},
            compute=rd.ActorPoolStrategy(size=self.actors), batch_size=None,
            batch_format="pyarrow", **actor_resources(self.spec))
        ctx = ds.context
        ctx.target_max_block_size = 1  # each request its own block, at once (module docstring)
        ctx.execution_no_progress_timeout_s = -1
        ctx.enable_progress_bars = False
        return ds

    def _pump(self, dataset: Any) -> None:
        """Hand every output row to its waiter; on a failure of the execution, fail them all."""
        try:
            for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow",
                                              prefetch_batches=0):
                rows = zip(table.column("req").to_pylist(), table.column("vectors").to_pylist(),
                           table.column("error").to_pylist())
                for req, blob, error in rows:
                    self._resolve(req, blob, error)
            reason = "the ray executor was closed"
        except Exception as exc:  # noqa: BLE001 -- every waiter learns why
            reason = f"{_SOURCE} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.warning("%s", reason)
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """Mark the execution unusable (the first reason stays) and fail every waiter with
        ``ProviderDown``; the embedder starts a fresh execution on its next call."""
        with self.lock:
            self.failure = self.failure or reason
            waiters, self.waiters = self.waiters, {}
        for w in waiters.values():
            _hand_over(w, None, ProviderDown(reason))

    def _resolve(self, req: int, blob: bytes, error: str) -> None:
        with self.lock:
            w = self.waiters.pop(req, None)
        if w is None:
            return  # its caller gave up (timeout, cancelled session)
        try:
            if error:
                raise error_from_text(error)
            result, exc = decode(self.spec, blob, w.count), None
        except errors.SwitchyardError as failed:
            result, exc = None, failed
        _hand_over(w, result, exc)

    def register(self, req: int, waiter: _Waiter) -> None:
        with self.lock:
            if self.failure:
                raise ProviderDown(self.failure)
            self.waiters[req] = waiter

    def forget(self, req: int) -> None:
        with self.lock:
            self.waiters.pop(req, None)

    def submit(self, req: int, texts: list[str]) -> None:
        """Put one request on the queue (blocking remote call: run in a thread)."""
        try:
            self.queue.put({"req": req, "texts": texts})
        except Exception as exc:  # noqa: BLE001 -- a Ray failure is an unavailable provider
            raise ProviderDown(f"{_SOURCE}: could not submit a batch: {type(exc).__name__}") from exc

    def stop(self, timeout: float = 30.0) -> None:
        """End the execution (the read task sees the sentinel), join the pump (blocking)."""
        if self.queue is not None:
            try:
                self.queue.put(None)
            except Exception as exc:  # noqa: BLE001 -- Ray may already be gone
                log.debug("could not stop the ray executor cleanly: %s", exc)
        if self.thread is not None:
            self.thread.join(timeout)
        if self.queue is not None:
            try:
                self.queue.shutdown(force=True)
            except Exception as exc:  # noqa: BLE001
                log.debug("could not stop the ray queue: %s", exc)


def actor_resources(spec: ModelSpec) -> dict[str, float]:
    """What each embedding actor reserves: one CPU, and ``spec.gpus`` GPUs when set."""
    out: dict[str, float] = {"num_cpus": 1}
    if spec.gpus:
        out["num_gpus"] = spec.gpus
    return out


def _hand_over(w: _Waiter, result: np.ndarray | None, exc: BaseException | None) -> None:
    """Settle ``w``'s future on its own loop (from the pump thread); a closed loop has no one
    waiting any more."""
    try:
        w.loop.call_soon_threadsafe(_settle, w.future, result, exc)
    except RuntimeError:  # the loop is closed: its caller is gone
        pass


def _settle(future: asyncio.Future[np.ndarray], result: np.ndarray | None,
            exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)


def queue_source(ray_data: Any, queue: Any) -> Any:
    """A Ray Data source with one read task that yields each queued request as its own block
    until it takes the ``None`` sentinel: the unbounded input of the long-lived execution."""
    import pyarrow as pa
    from ray.data.block import BlockMetadata

    def read() -> Iterator[Any]:
        while True:
            item = queue.get(block=True)
            if item is None:
                return
            yield pa.table({"req": pa.array([item["req"]], pa.int64()),
                            "texts": pa.array([item["texts"]], pa.list_(pa.string()))})

    class QueueSource(ray_data.Datasource):  # type: ignore[misc,name-defined]
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ray_data.ReadTask(read, meta)]

    return QueueSource()


class RayEmbedder:
    """``spec``'s embedder running on a Ray Data actor pool of ``actors`` actors.

    ``address``: a Ray cluster (``ray://host:10001``, ``host:6379`` or ``auto``); ``None`` uses
    ``RAY_ADDRESS`` if set, else starts a local loopback-only instance. If Ray is already
    initialised in this process (a test, a driver script) that connection is used and left
    open. Safe for concurrent ``embed`` calls from one event loop."""

    def __init__(self, spec: ModelSpec, *, address: str | None = None, actors: int = 2,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT, owns_ray: bool = False) -> None:
        if actors < 1:
            raise ConfigError(f"--actors must be at least 1, got {actors}")
        self.spec, self.address, self.actors, self.call_timeout = spec, address, actors, call_timeout
        self._pipeline: Pipeline | None = None
        #: shut Ray down in :meth:`aclose` (this embedder, or its factory, started it)
        self._owns_ray = owns_ray
        self._start_lock = asyncio.Lock()
        self._ids: Iterator[int] = itertools.count(1)
        self._closed = False
        #: texts embedded on the actor pool so far
        self.embedded = 0

    def __repr__(self) -> str:
        return f"RayEmbedder(id={self.spec.id!r}, actors={self.actors}, address={self.address!r})"

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return empty_result(self.spec)
        pipeline = await self._running()
        loop = asyncio.get_running_loop()
        req = next(self._ids)
        waiter = _Waiter(loop, loop.create_future(), len(items))
        pipeline.register(req, waiter)
        try:
            await asyncio.to_thread(pipeline.submit, req, items)
            try:
                vectors = await asyncio.wait_for(waiter.future, self.call_timeout)
            except TimeoutError:
                reason = f"{_SOURCE}: no result within {self.call_timeout:g} s"
                pipeline.fail(reason)  # stuck: the next call starts a fresh execution
                raise ProviderDown(reason) from None
            self.embedded += len(items)
            return vectors
        finally:
            pipeline.forget(req)

    async def _running(self) -> Pipeline:
        """The live pipeline, started (or restarted after a failure) on first use."""
        async with self._start_lock:
            if self._closed:
                raise EmbedderError(f"{_SOURCE} is closed")
            old = self._pipeline
            if old is not None and not old.failure:
                return old
            if old is not None:
                log.warning("restarting the ray executor after: %s", old.failure)
                await asyncio.to_thread(old.stop, 5.0)
            try:
                self._pipeline = await asyncio.to_thread(self._start)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 -- Ray unreachable: transient for the daemon
                raise ProviderDown(f"{_SOURCE}: could not start: {type(exc).__name__}: {exc}") from exc
            return self._pipeline

    def _start(self) -> Pipeline:
        ray, started = connect(self.address)
        self._owns_ray = self._owns_ray or started
        pipeline = Pipeline(ray, self.spec, self.actors)
        pipeline.start()
        return pipeline

    async def aclose(self) -> None:
        """End the execution, and the local Ray instance if this embedder started it."""
        async with self._start_lock:
            self._closed = True
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            await asyncio.to_thread(pipeline.stop)
            if self._owns_ray:
                await asyncio.to_thread(pipeline.ray.shutdown)


def connect(address: str | None) -> tuple[Any, bool]:
    """``(ray, started)``: Ray initialised in this process -- already, or now at ``address``
    (``None``: ``RAY_ADDRESS``, else a local loopback-only instance); ``started`` when this
    call initialised it (its caller shuts it down). Blocking."""
    ray = import_ray(address is None and not os.environ.get("RAY_ADDRESS"))
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is not None:
        kwargs["address"] = address
    ray.init(**kwargs)
    return ray, True


def factory(address: str | None, actors: int) -> Callable[[ModelSpec], RayEmbedder]:
    """``make_embedder``'s stand-in for the daemon: B's spec -> its Ray embedder.

    Connects to Ray now, before the daemon holds any lease, on the calling (main) thread: a
    missing extra or an unreachable cluster fails at start-up (:class:`ConfigError`, exit 2),
    and Ray's SIGTERM handler is installed, so a stopped daemon (``kubectl delete pod``) shuts
    its local instance down on exit instead of leaving Ray's agents behind."""
    try:
        _, started = connect(address)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 -- said in one line, at start-up
        where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
        raise ConfigError(f"--executor ray could not start Ray at {where}: "
                          f"{type(exc).__name__}: {exc}") from exc
    owned = [started]  # the first embedder built owns the instance (the daemon builds one)

    def build(spec: ModelSpec) -> RayEmbedder:
        owns, owned[0] = owned[0], False
        return RayEmbedder(spec, address=address, actors=actors, owns_ray=owns)

    return build

"""The server's end of one Edge shard worker process (:mod:`edge_worker`), for
:mod:`edge_engine`: start a worker (unopened, from a forkserver that has Edge imported), open
one shard in it, call it over the pipe one call at a time, and stop it.

Calls are blocking (the engine runs them on its executor); the ``order`` lock, the optimizer
state and the last reported info are the engine's, kept here with the worker they belong to.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from typing import Any

from qdrant_client.http import models

from switchyard.proxy import errors
from switchyard.proxy.embedded import edge_worker
from switchyard.proxy.errors import SwitchyardError

#: seconds a worker gets to flush and stop before it is terminated
CLOSE_GRACE = 5.0

_CONTEXT: Any = None


def _context() -> Any:
    """A forkserver context whose server has Edge and the models imported (fast worker starts;
    never ``fork`` from a process running grpc and event-loop threads)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["switchyard.proxy.embedded.edge_worker", "switchyard.proxy.embedded.edge_convert"])
        _CONTEXT = ctx
    return _CONTEXT


class Shard:
    """The server's end of one worker: calls in arrival order, one at a time.

    A worker process starts unopened (:meth:`spawn` returns at once; the child finishes
    starting in the background) and serves one shard once :meth:`open` names it.
    """

    def __init__(self) -> None:
        ctx = _context()
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=edge_worker.serve, args=(child,), daemon=True,
                                   name="switchyard-edge-shard")
        self.process.start()
        child.close()
        self._pipe = threading.Lock()
        self.order = asyncio.Lock()
        self.optimizing = False
        self.dirty = False
        self.writes = 0
        self.optimize_task: asyncio.Task[None] | None = None
        self.last_info: dict[str, Any] | None = None

    def open(self, path: str, create: models.CreateCollection | None) -> Shard:
        """Create (``create`` given, no segments yet) or load the shard at ``path`` (blocking)."""
        try:
            self.call_sync("open", {"path": path, "create": create})
        except BaseException:
            self.close()
            raise
        return self

    def _unpack(self, reply: tuple[Any, ...]) -> Any:
        if reply[0] == "ok":
            if len(reply) == 3:  # a write: the shard's info as of it
                self.last_info = reply[2]
            return reply[1]
        _, kind, message = reply
        cls = getattr(errors, kind, SwitchyardError)
        raise cls(message, raw=True)

    def call_sync(self, method: str, kwargs: dict[str, Any]) -> Any:
        with self._pipe:
            if not self.process.is_alive():
                raise SwitchyardError("the collection's engine worker has stopped")
            self._conn.send((method, kwargs))
            return self._unpack(self._conn.recv())

    def close(self) -> None:
        """Flush and stop the worker; one still busy after the grace period is terminated."""
        if self._pipe.acquire(timeout=CLOSE_GRACE):
            try:
                if self.process.is_alive():
                    self._conn.send(("close", {}))
                    if self._conn.poll(CLOSE_GRACE):
                        self._conn.recv()
            except (OSError, EOFError):
                pass
            finally:
                self._pipe.release()
        self.process.join(CLOSE_GRACE)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(CLOSE_GRACE)
        self._conn.close()

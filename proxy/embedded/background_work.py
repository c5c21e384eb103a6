"""Work the embedded upstream answers before it is done: Qdrant's ``?wait=false`` snapshot
creation, which answers 202 ``{"status": "accepted"}`` at once and runs on.

Each piece of work is an owned task (never a bare ``create_task``): kept here until it ends, its
failure logged with the reason (nobody waits for its answer, so the log is where it shows), and
on shutdown :meth:`BackgroundWork.drain` lets running work finish, for up to ``grace`` seconds,
before the engine it uses is closed; only work still running after that is cancelled. Draining
rather than cancelling at once matters because cancelled work leaves no snapshot behind, though
the client was told it was accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from switchyard.proxy.owned_tasks import stop_task

log = logging.getLogger("switchyard.embedded")

#: seconds shutdown waits for running background work before cancelling it
DRAIN_SECONDS = 60.0


class BackgroundWork:
    """The running background work of one server; see the module docstring."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        #: set by :meth:`drain`: no new work is started from then on
        self.draining = False

    @property
    def running(self) -> int:
        return len(self._tasks)

    def start(self, what: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Run ``work()`` in the background; ``what`` names it in the log. Refused (a
        ``RuntimeError``) once the server is draining."""
        if self.draining:
            raise RuntimeError("the embedded upstream is shutting down")

        async def run() -> None:
            await work()

        task = asyncio.get_running_loop().create_task(run(), name=f"background {what}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(what, done))

    def _done(self, what: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            log.warning("embedded upstream: background %s cancelled at shutdown", what)
            return
        exc = task.exception()
        if exc is not None:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.error("embedded upstream: background %s failed: %s", what, reason,
                      exc_info=exc if not hasattr(exc, "message") else None)

    async def drain(self, grace: float = DRAIN_SECONDS) -> None:
        """Refuse new work, wait up to ``grace`` seconds for the running work, cancel the rest."""
        self.draining = True
        pending = set(self._tasks)
        if not pending:
            return
        log.info("embedded upstream: waiting for %d background task(s) to finish", len(pending))
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            await stop_task(task)

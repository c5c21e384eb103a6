"""Owned background tasks: the one way a component stops the task it started.

Every long-running loop (state refresh, heartbeats, spool replay, the async mirror worker)
keeps its task and, on shutdown, cancels it and waits for it to finish, so nothing outlives
the component that started it and no exception is lost on an orphaned task.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished; its outcome is discarded."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

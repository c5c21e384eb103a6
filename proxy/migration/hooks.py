"""Lifecycle webhooks: a JSON body POSTed to every configured URL on each transition and refusal.

Best effort by contract: each call has a timeout and a bounded number of retries with a short
back-off, runs as an owned background task (the transition never waits on it), and
:meth:`Hooks.drain` waits a bounded time for the ones in flight at shutdown, then cancels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.secret_sources import redact_url

log = logging.getLogger("switchyard.hooks")

Poster = Callable[[str, bytes, float], Awaitable[int]]


async def _default_post(url: str, body: bytes, timeout: float) -> int:
    from switchyard.proxy.upstream.webhook_client import post_json

    return await post_json(url, body, timeout)


class Hooks:
    def __init__(self, urls: Sequence[str] = (), *, timeout: float = 2.0, retries: int = 2,
                 backoff: float = 0.2, post: Poster | None = None) -> None:
        self.urls = tuple(urls)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._post = post or _default_post
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def notify(self, event: dict[str, Any]) -> None:
        """Schedule delivery of ``event`` to every URL; returns at once."""
        if not self.urls:
            return
        body = orjson.dumps(event)
        loop = asyncio.get_running_loop()
        for url in self.urls:
            task = loop.create_task(self._deliver(url, body), name=f"webhook {redact_url(url)}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            try:
                status = await self._post(url, body, self.timeout)
                if status < 500:
                    self.delivered += 1
                    if status >= 400:
                        log.warning("webhook %s answered %d", redact_url(url), status)
                    return
                why = f"status {status}"
            except SwitchyardError as exc:
                why = str(exc)
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2 ** attempt))
        self.failed += 1
        log.warning("webhook %s gave up after %d attempts: %s", redact_url(url), self.retries + 1, why)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` for deliveries in flight, then cancel the rest."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

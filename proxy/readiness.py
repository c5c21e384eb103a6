"""Readiness: is this proxy able to serve, not just alive? (``/switchyard/readyz``, the ready line)

``/switchyard/healthz`` is liveness: the process answers. Readiness needs two more things, and
:func:`not_ready` is the decision, pure and tested as a table:

===============  =====================  ===============  ==================================
stopping         upstream probe         state snapshot   verdict
===============  =====================  ===============  ==================================
yes              any                    any              not ready: stopping
no               failed (reason)        any              not ready: upstream unreachable ...
no               ok                     stale (reason)   not ready: Switchyard cannot read ...
no               ok                     fresh / none     ready
===============  =====================  ===============  ==================================

The upstream probe is one cheap call (Qdrant's own ``GET /readyz``, which needs no API key),
bounded by a timeout and cached for ``ttl`` seconds so a load balancer polling readyz many
times a second costs the upstream one call a second. The state check is the same bound the
writes obey (``switchyard.proxy.state.freshness``). :meth:`Readiness.wait` is the bounded wait behind the
``ready`` line: it returns once ready, or raises :class:`NotReady` naming what is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from switchyard.proxy.errors import StateUnavailable, SwitchyardError

#: How long one upstream probe may take.
PROBE_TIMEOUT = 2.0
#: How long a probe's outcome is reused.
PROBE_TTL = 1.0


class NotReady(StateUnavailable):
    """503 / UNAVAILABLE: the proxy is alive but cannot serve yet; the message says why."""

    prefix = "Service unavailable: "


def not_ready(stopping: bool, upstream_error: str | None, state_stale: str | None) -> str | None:
    """Why the proxy is not ready (``None``: it is). See the module table."""
    if stopping:
        return "the proxy is stopping"
    if upstream_error is not None:
        return f"upstream unreachable: {upstream_error}"
    return state_stale


class Readiness:
    """The live check: ``probe()`` raises (any :class:`SwitchyardError`) when the upstream does
    not answer; ``stale()`` gives the state snapshot's reason, or ``None``."""

    def __init__(self, probe: Callable[[], Awaitable[None]],
                 stale: Callable[[], str | None] | None = None, *,
                 ttl: float = PROBE_TTL, timeout: float = PROBE_TIMEOUT) -> None:
        self._probe, self._stale = probe, stale
        self.ttl, self.timeout = ttl, timeout
        self.stopping = False
        self._checked_at = -1e9
        self._upstream_error: str | None = None
        self._lock = asyncio.Lock()

    async def _upstream(self) -> str | None:
        async with self._lock:  # concurrent readyz calls share one probe
            if time.monotonic() - self._checked_at >= self.ttl:
                try:
                    await asyncio.wait_for(self._probe(), self.timeout)
                    self._upstream_error = None
                except asyncio.TimeoutError:
                    self._upstream_error = f"no answer within {self.timeout:g} s"
                except SwitchyardError as exc:
                    self._upstream_error = str(exc.args[0]) if exc.args else str(exc)
                self._checked_at = time.monotonic()
            return self._upstream_error

    async def check(self) -> str | None:
        """Why not ready now, or ``None``."""
        if self.stopping:
            return not_ready(True, None, None)
        upstream = await self._upstream()
        return not_ready(False, upstream, self._stale() if self._stale is not None else None)

    async def wait(self, timeout: float, poll: float = 0.2) -> None:
        """Return once ready; raise :class:`NotReady` with the last reason after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (reason := await self.check()) is not None:
            if time.monotonic() >= deadline:
                raise NotReady(f"not ready after {timeout:g} s: {reason}")
            await asyncio.sleep(poll)

"""An immutable view of shared state, and the proxy's cache that refreshes it.

The proxy decides on every intercepted call from a :class:`StateSnapshot`: a frozen, in-memory
copy of the model specs, bindings and aliases, replaced wholesale by :class:`StateCache` every
``ttl`` seconds. Reading it costs a dict lookup and needs no lock; ``plan()`` takes it as its
``state`` argument, which keeps planning pure. A proxy therefore acts on state at most ``ttl``
old (plus one refresh), which the control plane accounts for when it waits for acknowledgement.

When a refresh fails the cache keeps the last good snapshot and records why, so a state store
outage never turns metadata stamping off silently: the reason shows in status and logs. A
snapshot's ``taken_at`` is when its read *began* (the records are at least that old), and
:meth:`StateCache.age` is what ``switchyard.proxy.state.freshness`` compares with ``state_max_staleness``
to fail closed. :meth:`StateCache.start` raises :class:`StateUnreadable` when the very first read
fails: a proxy that cannot read its state at start-up must not serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from switchyard.proxy.errors import SwitchyardError, UpstreamError
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.state")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What a proxy knows at one instant. ``aliases`` maps alias name to collection name."""

    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    bindings: Mapping[str, Binding] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    taken_at: float = 0.0
    #: Migration records by id (every phase; routing picks the one governing a name).
    migrations: Mapping[str, Migration] = field(default_factory=dict)

    def binding_for(self, name: str) -> tuple[Binding, ModelSpec] | None:
        """The binding that governs writes to ``name`` (as named, else through its alias)."""
        binding = self.bindings.get(name)
        if binding is None and name in self.aliases:
            binding = self.bindings.get(self.aliases[name])
        if binding is None:
            return None
        spec = self.models.get(binding.model_id)
        return (binding, spec) if spec is not None else None

    def is_bound(self, name: str) -> bool:
        return name in self.bindings or self.aliases.get(name, "") in self.bindings

    def binding_name(self, name: str, physical: str) -> str:
        """The name whose binding governs a call the client made on ``name`` that routing sent
        to ``physical`` (a migration's source or target): ``physical`` when it is bound, else
        ``name`` when ``name`` is an alias of ``physical``. A binding on an alias
        (``switchyard bind docs``) thus still governs the writes and reads a migration routes to
        the alias's own collection, while a target the migration routes to has its own binding
        (model B), which wins. Pure."""
        if not self.is_bound(physical) and physical != name and self.aliases.get(name) == physical:
            return name
        return physical


class StateUnreadable(UpstreamError):
    """The state store could not be read at start-up; the message says why and what to set."""

    prefix = ""


def _status_of(exc: BaseException) -> int | None:
    """The upstream's HTTP status behind a store error (``None``: it did not answer)."""
    cause: BaseException | None = exc
    while cause is not None:
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            return status
        cause = cause.__cause__
    return None


def unreadable_hint(exc: BaseException) -> str:
    """What to do about a failed first read, from the upstream's status code when there is one."""
    if _status_of(exc) in (401, 403):
        return ("; set --upstream-api-key (env SWITCHYARD_UPSTREAM_API_KEY) to a read-write key "
                "the upstream accepts")
    return "; check that the upstream is running and --upstream-rest-url points at it"


class StateCache:
    """Keeps a fresh :class:`StateSnapshot`; one owned refresh task, stopped by :meth:`stop`."""

    def __init__(self, store: StateStore, ttl: float = 2.0) -> None:
        self._store = store
        self.ttl = ttl
        self.snapshot = StateSnapshot()
        self.last_error: str | None = None
        self.last_exception: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> StateSnapshot:
        """Read everything once; on failure keep the old snapshot and remember the reason."""
        started = time.monotonic()
        try:
            models = {
                e.key: ModelSpec.from_dict(e.data) for e in await self._store.list("model")
            }
            bindings = {
                e.key: Binding.from_dict(e.data) for e in await self._store.list(Binding.KIND)
            }
            aliases = await self._store.aliases()
            migrations = {
                e.key: Migration.from_envelope(e) for e in await self._store.list(Migration.KIND)
            }
        except (SwitchyardError, ValueError, KeyError) as exc:
            reason = f"state refresh failed, acting on state from {self._age():.1f}s ago: {exc}"
            if reason != self.last_error:
                log.warning(reason)
            self.last_error = reason
            self.last_exception = exc
            return self.snapshot
        self.last_error = None
        self.last_exception = None
        self.snapshot = StateSnapshot(
            models=MappingProxyType(models),
            bindings=MappingProxyType(bindings),
            aliases=MappingProxyType(aliases),
            taken_at=started,
            migrations=MappingProxyType(migrations),
        )
        return self.snapshot

    def _age(self) -> float:
        return time.monotonic() - self.snapshot.taken_at if self.snapshot.taken_at else 0.0

    def age(self) -> float | None:
        """Seconds since the current snapshot's read began; ``None`` before the first success."""
        return time.monotonic() - self.snapshot.taken_at if self.snapshot.taken_at else None

    async def start(self, wait: float = 0.0) -> None:
        """First refresh inline (so the proxy starts informed), then every ``ttl`` seconds.

        A first read that fails is retried for up to ``wait`` seconds (an upstream still starting),
        except when the upstream refused the key (401 / 403: waiting cannot help). Then
        :class:`StateUnreadable` is raised and nothing is started."""
        deadline = time.monotonic() + wait
        await self.refresh()
        while (self.last_exception is not None and time.monotonic() < deadline
               and _status_of(self.last_exception) not in (401, 403)):
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            await self.refresh()
        if self.last_exception is not None:
            exc = self.last_exception
            detail = exc.args[0] if isinstance(exc, SwitchyardError) and exc.args else exc
            raise StateUnreadable(f"state store unreadable: {detail}{unreadable_hint(exc)}") from exc
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="state-refresh")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl)
            await self.refresh()

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

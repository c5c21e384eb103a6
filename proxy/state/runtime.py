"""The proxy's shared-state runtime: store client, cached snapshot, and the interceptor over them.

One object the proxy app starts and stops, so the app does not need to know how state is kept:
``ProxyState(...).interceptor`` goes to both front ends; ``start()`` does the first refresh
(creating ``_switchyard`` on first use) and starts the refresh loop; ``stop()`` drains it.
"""

from __future__ import annotations

from proxy.intercept.executor import PointWriteInterceptor
from proxy.state.snapshot import StateCache
from proxy.state.store import StateStore


class ProxyState:
    def __init__(
        self, upstream_rest_url: str, *, api_key: str | None = None, ttl: float = 2.0,
        timeout: float = 10.0,
    ) -> None:
        self.store = StateStore.connect(upstream_rest_url, api_key=api_key, timeout=timeout)
        self.cache = StateCache(self.store, ttl=ttl)
        self.interceptor = PointWriteInterceptor(self.cache)

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()
        await self.store.close()

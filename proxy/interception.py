"""The proxy's interception path, assembled from config (``build_interceptor``).

Returns the interceptor both front ends consult, with its shared-state runtime attached:
``start()`` performs the first state refresh (creating ``_switchyard`` on first use) and starts
the refresh loop; ``stop()`` drains it and closes the store client. ``ProxyServer`` calls both.
"""

from __future__ import annotations

from proxy.config import ProxyConfig
from proxy.intercept.executor import PointWriteInterceptor
from proxy.state.snapshot import StateCache
from proxy.state.store import StateStore


class ProxyInterceptor(PointWriteInterceptor):
    """:class:`PointWriteInterceptor` that owns its state cache's lifecycle."""

    def __init__(self, store: StateStore, cache: StateCache) -> None:
        super().__init__(cache)
        self.store = store
        self.cache = cache

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()
        await self.store.close()


def build_interceptor(config: ProxyConfig) -> ProxyInterceptor:
    store = StateStore.connect(
        config.upstream_rest_url,
        api_key=getattr(config, "upstream_api_key", None),
        timeout=min(config.upstream_timeout, 10.0),
    )
    return ProxyInterceptor(store, StateCache(store, ttl=config.state_cache_ttl))

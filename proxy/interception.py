"""The proxy's Switchyard runtime, assembled from config (``build_interceptor``).

One object gives the proxy app everything beyond pass-through:

- the interceptor both front ends consult (point-write metadata today);
- the shared-state cache it decides from, refreshed every ``state_cache_ttl`` seconds;
- the heartbeat that tells the control plane which migration revisions this proxy acts on;
- the admin API (REST ``/switchyard/v1/...`` and gRPC ``switchyard.v1.Admin``) over the
  migration service.

``ProxyServer.start()`` calls ``start(server)`` before it binds its listeners, so the runtime
can add its routes and gRPC handlers; ``stop()`` drains everything in reverse order.
"""

from __future__ import annotations

import os
from typing import Any

from proxy.config import ProxyConfig
from proxy.intercept.executor import PointWriteInterceptor
from proxy.state.snapshot import StateCache
from proxy.state.store import StateStore

#: Comma-separated webhook URLs called on every migration transition and refusal.
HOOKS_ENV = "SWITCHYARD_WEBHOOKS"


class ProxyInterceptor(PointWriteInterceptor):
    """The interceptor plus the state, heartbeat and admin services it needs."""

    def __init__(self, config: ProxyConfig, store: StateStore, cache: StateCache) -> None:
        super().__init__(cache)
        self.config = config
        self.store = store
        self.cache = cache
        self._heartbeat: Any = None
        self._migrations: Any = None

    async def start(self, server: Any = None) -> None:
        from proxy.admin.service import AdminService
        from proxy.migration.heartbeats import HeartbeatLoop
        from proxy.migration.hooks import Hooks
        from proxy.migration.service import MigrationService

        await self.cache.start()
        urls = [u.strip() for u in os.environ.get(HOOKS_ENV, "").split(",") if u.strip()]
        self._migrations = MigrationService(self.store, self.store.client, hooks=Hooks(urls))
        if server is not None:
            from proxy.frontend.admin_grpc import admin_handlers
            from proxy.frontend.admin_rest import admin_routes

            admin = AdminService(self._migrations)
            server.add_routes(admin_routes(admin, self.config.admin_key))
            server.add_grpc_handlers(admin_handlers(admin, self.config.admin_key))
        self._heartbeat = HeartbeatLoop(
            self.store, self.config.instance_id, self.cache, self.config.heartbeat_interval
        )
        self._heartbeat.start()

    async def stop(self) -> None:
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._migrations is not None:
            await self._migrations.close()
        await self.cache.stop()
        await self.store.close()


def build_interceptor(config: ProxyConfig) -> ProxyInterceptor:
    store = StateStore.connect(
        config.upstream_rest_url,
        api_key=getattr(config, "upstream_api_key", None),
        timeout=min(config.upstream_timeout, 10.0),
    )
    return ProxyInterceptor(config, store, StateCache(store, ttl=config.state_cache_ttl))

"""The proxy's Switchyard runtime, assembled from config (``build_interceptor``).

One object gives the proxy app everything beyond pass-through:

- the interceptor both front ends consult (point-write metadata today);
- the shared-state cache it decides from, refreshed every ``state_cache_ttl`` seconds;
- the heartbeat that tells the control plane which migration revisions this proxy acts on;
- the admin API (REST ``/switchyard/v1/...`` and gRPC ``switchyard.v1.Admin``) over the
  migration service, whose verifications run as owned background jobs (one per migration).

``ProxyServer.start()`` calls ``start(server)`` before it binds its listeners, so the runtime
can add its routes and gRPC handlers; ``stop()`` drains everything in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from switchyard.proxy.config import ProxyConfig
from switchyard.proxy.intercept.executor import Executor
from switchyard.proxy.owned_tasks import stop_task
from switchyard.proxy.intercept.listing import ReservedGate
from switchyard.proxy.state.freshness import StateGuard
from switchyard.proxy.state.snapshot import StateCache, StateUnreadable, unreadable_hint
from switchyard.proxy.state.store import StateStore

log = logging.getLogger("switchyard.runtime")


class ProxyInterceptor(Executor):
    """The interceptor plus the state, heartbeat and admin services it needs."""

    def __init__(self, config: ProxyConfig, store: StateStore, cache: StateCache) -> None:
        super().__init__(cache)
        self.config = config
        self.store = store
        self.cache = cache
        self._heartbeat: Any = None
        self._migrations: Any = None
        self._verify_jobs: Any = None
        self._legs: Any = None
        self._grpc_legs: Any = None
        self._pool: Any = None
        self._replayer: asyncio.Task[None] | None = None

    async def start(self, server: Any = None) -> None:
        from switchyard.proxy.admin.service import AdminService
        from switchyard.proxy.migration.heartbeats import HeartbeatLoop
        from switchyard.proxy.migration.hooks import Hooks
        from switchyard.proxy.migration.service import MigrationService, ServiceConfig
        from switchyard.proxy.migration.verify_jobs import VerifyJobs

        # raises StateUnreadable: a proxy that cannot read its state never serves
        await self.cache.start(wait=self.config.ready_timeout)
        self.state_guard = StateGuard(self.cache, self.config.max_staleness)
        self.reserved = ReservedGate(self.config.admin_key, self.config.admin_trust_loopback)
        await self._start_mirror()
        service_config = ServiceConfig(ack_timeout=self.config.ack_timeout,
                                       heartbeat_ttl=self.config.heartbeat_ttl,
                                       max_active=self.config.max_active_migrations,
                                       instance_id=self.config.instance_id)
        self._migrations = MigrationService(self.store, self.store.client, service_config,
                                            hooks=Hooks(self.config.webhooks))
        self._verify_jobs = VerifyJobs(self._migrations)
        if server is not None:
            from switchyard.proxy.frontend.admin_grpc import admin_handlers
            from switchyard.proxy.frontend.admin_rest import admin_routes
            from switchyard.proxy.frontend.status_page import status_routes

            admin = AdminService(self._migrations, self._verify_jobs)
            trust = self.config.admin_trust_loopback
            server.add_routes(admin_routes(admin, self.config.admin_key, trust_loopback=trust))
            server.add_routes(status_routes())
            server.add_grpc_handlers(admin_handlers(admin, self.config.admin_key, trust_loopback=trust))
        self._heartbeat = HeartbeatLoop(
            self.store, self.config.instance_id, self.cache, self.config.heartbeat_interval,
            stale=self.state_guard.stale,
        )
        await _first_beat(self._heartbeat)
        self._heartbeat.start()

    async def _start_mirror(self) -> None:
        """Mirrored writes: own embedder pool, own pooled upstream client, repair log + spool."""
        from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
        from switchyard.proxy.dataplane.mirror import Mirror
        from switchyard.proxy.dataplane.repair_spool import RepairLog
        from switchyard.proxy.upstream.rest_client import RestUpstream

        self._legs = RestUpstream(self.config.upstream_rest_url, timeout=self.config.upstream_timeout,
                                  ca_file=self.config.upstream_ca_file)
        from switchyard.proxy.intercept.credentials import CredentialGate
        from switchyard.proxy.intercept.inference import InferenceLimits

        self._pool = EmbedderPool(InferenceLimits(self.config.max_inference_text_chars,
                                                  self.config.max_inference_request_chars))
        self.credentials = CredentialGate(self.config.credential_check_ttl, self.config.credential_cache_size)
        spool_dir = self.config.spool_dir or os.path.join(os.path.expanduser("~"), ".switchyard")
        repair = RepairLog(self.store, os.path.join(spool_dir, f"repair-spool-{self.config.instance_id}.jsonl"),
                           rate=self.config.repair_log_rate, burst=self.config.repair_log_burst)
        from switchyard.proxy.dataplane.intents import IntentLog, adopt

        intents = IntentLog(spool_dir, self.config.instance_id, fsync=self.config.intent_fsync)
        intents.open()  # refuses a second live process with this identity and spool directory
        await adopt(intents, repair)  # pending intents of a killed predecessor -> repair records
        grpc_leg = None
        if self.config.mirror_secondary_grpc:
            from switchyard.proxy.upstream.grpc_client import GrpcUpstream

            self._grpc_legs = GrpcUpstream(self.config.upstream_grpc_address, tls=self.config.upstream_grpc_tls,
                                           ca_file=self.config.upstream_ca_file)
            grpc_leg = self._grpc_legs.call
        self.mirror = Mirror(self._pool, repair, self._legs.request, intents=intents, grpc_forward=grpc_leg)
        self.pool = self._pool
        from switchyard.proxy.dataplane.adapter_store import AdapterCache
        from switchyard.proxy.dataplane.hot_counts import HotCounts
        from switchyard.proxy.dataplane.query_sample import QuerySamples
        from switchyard.proxy.dataplane.reads import MergedReader

        self.reader = MergedReader(self._pool, adapters=AdapterCache(self.store),
                                   hot=HotCounts(self.store, self.config.instance_id),
                                   queries=QuerySamples(self.store, self.config.instance_id))
        self._replayer = asyncio.get_running_loop().create_task(self._replay_loop(repair), name="spool-replay")

    async def _replay_loop(self, repair: Any) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.config.heartbeat_interval))
            try:
                if (mirror := self.mirror) is not None:
                    await mirror.sweep()  # writes whose handler was cancelled mid-mirror
                    if mirror.intents is not None:
                        from switchyard.proxy.dataplane.intents import adopt

                        await adopt(mirror.intents, repair)  # proxies of this spool that died
                await repair.replay()
            except Exception as exc:  # noqa: BLE001 - the store may still be down; retried next round
                log.debug("spool replay postponed: %s", exc)

    async def draining(self) -> None:
        """The server stops taking calls: stop the verify jobs now, so a caller awaiting one
        (``wait=true``) is answered within the drain instead of holding it to its end."""
        if self._verify_jobs is not None:
            await self._verify_jobs.stop()

    async def stop(self) -> None:
        await self.draining()  # first (again, if the server already did): jobs use the store
        await stop_task(self._replayer)
        if self.mirror is not None:
            await self.mirror.aclose()
            if self.mirror.intents is not None:
                self.mirror.intents.close()
        if self.reader is not None:
            await self.reader.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        if self._legs is not None:
            await self._legs.close()
        if self._grpc_legs is not None:
            await self._grpc_legs.close()
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._migrations is not None:
            await self._migrations.close()
        await self.cache.stop()
        await self.store.close()


async def _first_beat(loop: Any) -> None:
    """One heartbeat before serving: a proxy whose key may read but not write the state store
    (a read-only key) would otherwise serve without ever being counted by the control plane."""
    from switchyard.proxy.errors import SwitchyardError
    from switchyard.proxy.migration.heartbeats import beat

    try:
        await beat(loop.store, loop.instance_id, loop.cache)
    except SwitchyardError as exc:
        detail = exc.args[0] if exc.args else exc
        raise StateUnreadable(f"state store unwritable (heartbeat): {detail}"
                              f"{unreadable_hint(exc)}") from exc


def build_interceptor(config: ProxyConfig) -> ProxyInterceptor:
    store = StateStore.connect(
        config.upstream_rest_url,
        api_key=config.upstream_api_key,
        timeout=min(config.upstream_timeout, 10.0),
        admin_key="",  # talks to the upstream directly: no admin key in its headers
    )
    return ProxyInterceptor(config, store, StateCache(store, ttl=config.state_cache_ttl))

"""A Switchyard proxy with its real interception path, in front of the session's upstream.

Used by the proxy-level tests (``switchyard`` fixture in conftest): the proxy runs on its own
event loop thread so sync and async clients alike can use it, with a short state TTL so tests
see bindings quickly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.proxy.app import ThreadedProxy
from switchyard.proxy.config import load_config
from switchyard.proxy.interception import ProxyInterceptor, build_interceptor
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.registry import bind, register_model
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore


@dataclass
class RunningProxy:
    proxy: ThreadedProxy
    interceptor: ProxyInterceptor
    upstream_rest_url: str

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.rest_port}"

    @property
    def grpc_port(self) -> int:
        return self.proxy.grpc_port

    def wait_bound(self, collection: str, present: bool = True, timeout: float = 10.0) -> None:
        """Block until the proxy's snapshot has (or no longer has) a binding for ``collection``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.interceptor.cache.snapshot.is_bound(collection) == present:
                return
            time.sleep(0.05)
        raise AssertionError(f"proxy never saw binding of {collection!r} (present={present})")

    def register_and_bind(self, spec: ModelSpec, binding: Binding) -> None:
        """Register ``spec`` and bind through the state store, as the CLI does; wait for the proxy."""

        async def go() -> None:
            client = AsyncQdrantClient(url=self.upstream_rest_url, check_compatibility=False)
            store = StateStore(client)
            try:
                if await store.get("model", spec.id) is None:
                    await register_model(store, spec)
                await bind(store, client, binding)
            finally:
                await client.close()

        # a thread of its own, so this works from sync and async tests alike
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, go()).result(30)
        self.wait_bound(binding.collection)


def start_proxy(upstream_rest_url: str, grpc_host: str, grpc_port: int,
                overrides: dict[str, str] | None = None) -> RunningProxy:
    """A proxy with the test defaults below; ``overrides`` (option -> text) win."""
    config = load_config(
        {
            "upstream_rest_url": upstream_rest_url,
            "upstream_grpc_address": f"{grpc_host}:{grpc_port}",
            "listen_rest": "127.0.0.1:0",
            "listen_grpc": "127.0.0.1:0",
            "state_cache_ttl": "0.2",
            "heartbeat_interval": "0.5",
            "heartbeat_ttl": "3",
            "ack_timeout": "15",
            # tests share one state store: the product default of 3 would couple them
            "max_active_migrations": "1000",
            **(overrides or {}),
        },
        {},
        None,
    )
    interceptor = build_interceptor(config)
    proxy = ThreadedProxy(config, interceptor).start()
    return RunningProxy(proxy, interceptor, upstream_rest_url)


def client_kwargs(running: RunningProxy, mode: str) -> dict[str, Any]:
    return {"url": running.rest_url, "prefer_grpc": mode.endswith("grpc"), "grpc_port": running.grpc_port}


@pytest.fixture(scope="session")
def switchyard(upstream: Any) -> Iterator[RunningProxy]:
    """One proxy with the real interception path for the session, in front of ``upstream``."""
    running = start_proxy(upstream.rest_url, upstream.grpc_host, upstream.grpc_port)
    try:
        yield running
    finally:
        running.proxy.stop()

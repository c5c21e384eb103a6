"""Issue 11 item 4 on real processes: a proxy that cannot read its state store fails closed.

* At start-up: ``switchyard proxy`` without ``--upstream-api-key`` in front of a keyed embedded
  upstream exits non-zero, naming the 401 and the option to set, and never prints ``ready``.
* At run time: a proxy whose state reads are cut (``tests/fault_relay.py`` drops every connection
  that addresses ``_switchyard``) refuses writes to a migrating collection with 503 / UNAVAILABLE
  in Qdrant's shape once its snapshot is older than ``state_max_staleness``, keeps serving reads
  by its last routing, and stops heartbeating; healed, it writes (mirrored) and beats again.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import grpc
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from fault_relay import FaultRelay
from proxy_fixtures import RunningProxy, start_proxy
from switchyard.proxy.migration.heartbeats import KIND as HEARTBEAT_KIND
from switchyard.proxy.state.store import StateStore
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from upstream_process import UpstreamProcess, run_proxy_until_exit


@pytest.mark.embedded_only
def test_proxy_without_upstream_key_exits_with_the_reason() -> None:
    key = "k-" + uuid.uuid4().hex[:8]
    with UpstreamProcess(api_key=key) as up:
        rc, out, err = run_proxy_until_exit(up, [])
    assert rc != 0
    assert "ready" not in out
    assert "state store unreadable" in err and "401" in err, err
    assert "--upstream-api-key" in err, err
    assert key not in err  # no secret in what it prints


ADMIN_KEY = "admin-" + uuid.uuid4().hex[:8]


def _admin(proxy: RunningProxy, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        proxy.rest_url + "/switchyard/v1" + path, method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json", "switchyard-admin-key": ADMIN_KEY})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return dict(json.loads(resp.read())["result"])


def start_migration(proxy: RunningProxy, upstream: Any, prefix: str) -> tuple[Any, ...]:
    """Alias ``<prefix>docs`` over an empty source bound to model A, migrating to model B, in
    ``dual_write`` (started through the proxy's admin API, which waits for acknowledgement)."""
    tag = uuid.uuid4().hex[:6]
    spec_a = ModelSpec(id=f"a-{tag}", provider="hashing", model=f"a-{tag}", dimensions=8)
    spec_b = ModelSpec(id=f"b-{tag}", provider="hashing", model=f"b-{tag}", dimensions=12)
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    source, alias = f"{prefix}docs_v1", f"{prefix}docs"
    direct.create_collection(source, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])
    proxy.register_and_bind(spec_a, Binding(source, spec_a.id))
    proxy.register_and_bind(spec_b, Binding(source, spec_a.id))  # registers B too
    planned = _admin(proxy, "/migrations", {"logical": alias, "to_model": spec_b.id})
    mid, target = planned["migration"]["id"], planned["migration"]["target"]
    _admin(proxy, f"/migrations/{mid}/transition", {"name": "start"})
    _wait(lambda: getattr(proxy.interceptor.cache.snapshot.migrations.get(mid), "phase", "") == "dual_write",
          "the proxy acting on dual_write")
    return alias, source, target, direct, mid


@pytest.fixture
def cut_proxy(upstream: Any) -> Iterator[tuple[RunningProxy, FaultRelay]]:
    """A proxy whose REST upstream (data plane and state store alike) is reached via a relay."""
    parsed = urlparse(upstream.rest_url)
    relay = FaultRelay(parsed.hostname or "127.0.0.1", parsed.port or 6333).start()
    running = start_proxy(relay.url, upstream.grpc_host, upstream.grpc_port,
                          {"state_max_staleness": "1", "instance_id": f"stale-{uuid.uuid4().hex[:6]}",
                           "admin_key": ADMIN_KEY})
    try:
        yield running, relay
    finally:
        relay.fail(None)
        running.proxy.stop()
        relay.stop()


def _last_seen(upstream: Any, instance: str) -> float:
    async def go() -> float:
        client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
        try:
            env = await StateStore(client).get(HEARTBEAT_KIND, instance)
            return float(env.data["last_seen"]) if env is not None else 0.0
        finally:
            await client.close()
    return asyncio.run(go())


def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_stale_state_refuses_governed_writes_keeps_reads(
        cut_proxy: tuple[RunningProxy, FaultRelay], upstream: Any, prefix: str) -> None:
    proxy, relay = cut_proxy
    alias, source, target, direct, mid = start_migration(proxy, upstream, prefix)
    rest = QdrantClient(url=proxy.rest_url, check_compatibility=False, timeout=30)
    grpc_client = QdrantClient(url=proxy.rest_url, prefer_grpc=True, grpc_port=proxy.grpc_port,
                               check_compatibility=False, timeout=30)
    instance = proxy.interceptor.config.instance_id
    try:
        rest.upsert(alias, [models.PointStruct(id=1, vector={}, payload={"text": "one"})], wait=True)
        assert direct.count(target).count == 1  # mirrored while fresh

        relay.fail("/collections/_switchyard/")  # every state read and heartbeat is cut
        _wait(lambda: (proxy.interceptor.cache.age() or 0) > 1.5, "snapshot older than the bound")
        beat_before = _last_seen(upstream, instance)

        with pytest.raises(UnexpectedResponse) as refused:
            rest.upsert(alias, [models.PointStruct(id=2, vector={}, payload={"text": "two"})], wait=True)
        assert refused.value.status_code == 503
        message = refused.value.content.decode()
        assert '"status":{"error":' in message.replace(" ", "")
        assert "cannot read its migration state" in message and f"writes to {alias}" in message
        with pytest.raises(grpc.RpcError) as grpc_refused:
            grpc_client.upsert(alias, [models.PointStruct(id=3, vector={}, payload={"text": "3"})])
        assert grpc_refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot read its migration state" in (grpc_refused.value.details() or "")
        assert direct.count(source).count == 1 and direct.count(target).count == 1  # nothing applied

        # reads keep their last routing (source), both protocols
        assert [p.id for p in rest.retrieve(alias, [1])] == [1]
        assert grpc_client.count(alias).count == 1
        # a collection no migration governs still takes writes
        other = f"{prefix}plain"
        direct.create_collection(other, vectors_config={})
        rest.upsert(other, [models.PointStruct(id=9, vector={}, payload={})], wait=True)

        # no heartbeat while stale: its record does not move over several intervals
        time.sleep(4 * proxy.interceptor.config.heartbeat_interval)
        assert _last_seen(upstream, instance) == beat_before

        relay.fail(None)  # healed: fresh again, writes are mirrored, heartbeats resume
        _wait(lambda: (proxy.interceptor.cache.age() or 9) < 1.0, "a fresh snapshot")
        rest.upsert(alias, [models.PointStruct(id=4, vector={}, payload={"text": "four"})], wait=True)
        assert direct.count(target).count == 2
        _wait(lambda: _last_seen(upstream, instance) > beat_before, "a new heartbeat")
    finally:
        _admin(proxy, f"/migrations/{mid}/transition", {"name": "cancel"})
        rest.close()
        grpc_client.close()
        direct.close()

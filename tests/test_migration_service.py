"""The migration service against a real Qdrant-compatible server: plan, walk, rollbacks, races,
verification, acknowledgement by proxies (real state caches and heartbeat loops), hooks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy import registry
from switchyard.proxy.errors import Conflict, SwitchyardError
from switchyard.proxy.migration.heartbeats import Heartbeat, HeartbeatLoop
from switchyard.proxy.migration.hooks import Hooks
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.record import Refused
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateCache
from switchyard.proxy.state.store import StateStore

A = ModelSpec(id="mod-a", provider="hashing", model="a", dimensions=4)
B = ModelSpec(id="mod-b", provider="hashing", model="b", dimensions=8, price_per_million_tokens=1.0)
B4 = ModelSpec(id="mod-b4", provider="hashing", model="b4", dimensions=4)


class World:
    def __init__(self, client: AsyncQdrantClient, store: StateStore, prefix: str) -> None:
        self.client, self.store, self.prefix = client, store, prefix
        self.logical, self.source = f"{prefix}docs", f"{prefix}docs_v1"

    def service(self, **config: Any) -> MigrationService:
        return MigrationService(self.store, self.client, ServiceConfig(**config))

    async def alias_target(self) -> str | None:
        for a in (await self.client.get_aliases()).aliases:
            if a.alias_name == self.logical:
                return a.collection_name
        return None


@pytest.fixture
async def world(upstream: Any, prefix: str) -> AsyncIterator[World]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    store = StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")
    w = World(client, store, prefix)
    await client.create_collection(w.source, vectors_config=models.VectorParams(
        size=4, distance=models.Distance.COSINE))
    await client.create_payload_index(w.source, "doc_id", models.PayloadSchemaType.KEYWORD)
    await client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=w.source, alias_name=w.logical))])
    for spec in (A, B, B4):
        await registry.register_model(store, spec)
    await registry.bind(store, client, Binding(w.logical, A.id))
    yield w
    await client.delete_collection(store.collection)
    await client.close()


async def planned(w: World, svc: MigrationService, model: str = B.id) -> str:
    report = await svc.plan(PlanRequest(w.logical, model))
    return str(report["migration"]["id"])


async def test_full_walk_on_empty_source_repoints_alias_and_keeps_source(world: World) -> None:
    svc = world.service()
    report = await svc.plan(PlanRequest(world.logical, B.id))
    mid, target = report["migration"]["id"], report["target"]
    info = await world.client.get_collection(target)
    assert info.config.params.vectors.size == 8  # B's vector params
    # the source's payload indexes (the embedded upstream reports none; a real Qdrant does)
    source_schema = (await world.client.get_collection(world.source)).payload_schema or {}
    assert set(source_schema) - {"embedding_model_id", "embedding_version"} <= set(info.payload_schema or {})
    assert (await world.store.require("binding", target)).data["model_id"] == B.id
    assert report["estimate"]["points"] == 0
    for step, phase in [("start", "dual_write"), ("verify", "verified"),
                        ("switch_reads", "reads_switched"), ("switch_writes", "writes_switched"),
                        ("complete", "complete")]:
        m = await (svc.verify(mid) if step == "verify" else svc.transition(mid, step))
        assert m.phase == phase
    assert await world.alias_target() == target
    assert await world.client.collection_exists(world.source)
    assert (await world.store.require("binding", world.logical)).data["model_id"] == B.id
    with pytest.raises(Refused, match="pass --yes"):
        await svc.cleanup(mid, yes=False)
    assert await world.client.collection_exists(world.source)
    await svc.cleanup(mid, yes=True)
    assert not await world.client.collection_exists(world.source)
    with pytest.raises(Refused, match="already cleaned up"):
        await svc.cleanup(mid, yes=True)


ROLLBACKS = {
    "planned": [],
    "dual_write": ["start"],
    "verified": ["start", "verify"],
    "reads_switched": ["start", "verify", "switch_reads", "switch_reads_back"],
    "writes_switched": ["start", "verify", "switch_reads", "switch_writes",
                        "switch_writes_back", "switch_reads_back"],
}


@pytest.mark.parametrize("stop", list(ROLLBACKS))
async def test_rollback_from_each_phase(world: World, stop: str) -> None:
    svc = world.service()
    mid = await planned(world, svc)
    for step in ROLLBACKS[stop]:
        await (svc.verify(mid) if step == "verify" else svc.transition(mid, step))
    m = await svc.transition(mid, "cancel")
    assert m.phase == "cancelled"
    assert [e.action for e in m.history][-1] == "cancel"
    assert await world.alias_target() == world.source
    assert await world.client.collection_exists(world.source)
    assert await world.client.collection_exists(m.target)  # kept; only cleanup deletes
    assert (await world.store.require("binding", world.logical)).data["model_id"] == A.id
    with pytest.raises(Refused, match="only runs after complete"):
        await svc.cleanup(mid, yes=True)


async def test_complete_cannot_be_cancelled(world: World) -> None:
    svc = world.service()
    mid = await planned(world, svc)
    for step in ("start", "verify", "switch_reads", "switch_writes", "complete"):
        await (svc.verify(mid) if step == "verify" else svc.transition(mid, step))
    with pytest.raises(Refused, match="cannot cancel from phase complete"):
        await svc.transition(mid, "cancel")
    assert (await svc.get(mid)).last_refusal is not None


async def test_two_operators_racing_exactly_one_wins(world: World) -> None:
    svc_a, svc_b = world.service(), world.service()
    mid = await planned(world, svc_a)
    rev = (await svc_a.get(mid)).rev
    results = await asyncio.gather(svc_a.transition(mid, "start", rev), svc_b.transition(mid, "start", rev),
                                   return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], Conflict) and "phase dual_write" in str(losses[0])
    with pytest.raises(Conflict, match="phase dual_write"):
        await svc_b.transition(mid, "start", rev)  # a stale revision names the current phase


async def test_verify_refuses_on_non_empty_source(world: World) -> None:
    svc = world.service()
    mid = await planned(world, svc)
    await svc.transition(mid, "start")
    await world.client.upsert(world.source, [models.PointStruct(id=1, vector=[0.1, 0.2, 0.3, 0.4])])
    with pytest.raises(Refused, match="non-empty source needs the backfill"):
        await svc.verify(mid)
    m = await svc.get(mid)
    assert m.phase == "dual_write" and m.verification is None
    assert m.last_refusal is not None and "1 points" in m.last_refusal.reason
    with pytest.raises(Refused, match="no verification"):
        await svc.transition(mid, "verify")


async def test_plan_reports_missing_text_and_refuses_unless_copy_vectors(world: World) -> None:
    points = [models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, float(i)],
                                 payload={"text": f"doc {i}"} if i % 4 else {"other": 1})
              for i in range(1, 21)]
    await world.client.upsert(world.source, points)
    svc = world.service()
    dry = await svc.plan(PlanRequest(world.logical, B.id, dry_run=True))
    assert dry["ok"] is False and "5 of 20 sampled points (25%) lack the text field" in dry["reasons"][0]
    assert dry["estimate"]["missing_text"] == 5 and dry["estimate"]["points"] == 20
    assert not await world.client.collection_exists(dry["target"])  # dry run changes nothing
    with pytest.raises(Refused, match="25%"):
        await svc.plan(PlanRequest(world.logical, B.id))
    with pytest.raises(Refused, match="--copy-vectors needs"):
        await svc.plan(PlanRequest(world.logical, B.id, copy_vectors=True))
    ok = await svc.plan(PlanRequest(world.logical, B4.id, copy_vectors=True))
    assert ok["migration"]["phase"] == "planned" and ok["migration"]["copy_vectors"] is True
    again = await svc.plan(PlanRequest(world.logical, B4.id, copy_vectors=True, target="x" + world.prefix,
                                       dry_run=True))
    assert any("already active" in r for r in again["reasons"])


async def test_plan_estimates_with_embedder_probe(world: World) -> None:
    await world.client.upsert(world.source, [
        models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, float(i)], payload={"text": "x" * 40})
        for i in range(1, 11)])
    report = await world.service().plan(PlanRequest(world.logical, B.id, throttle=5.0, dry_run=True))
    est = report["estimate"]
    assert report["ok"] is True and est["text_bytes"] == 400 and est["tokens"] == 100
    assert est["throughput"] > 0 and est["rate"] == min(5.0, est["throughput"])
    assert est["eta_seconds"] == pytest.approx(10 / est["rate"])
    assert est["cost"] == pytest.approx(100 / 1e6)


async def test_transition_waits_for_proxies_and_ends_when_one_goes_silent(world: World) -> None:
    svc = world.service(heartbeat_ttl=1.5, ack_timeout=15.0, ack_poll=0.05)
    mid = await planned(world, svc)
    cache = StateCache(world.store, ttl=0.1)
    await cache.start()
    alive = HeartbeatLoop(world.store, "proxy-alive", cache, interval=0.1)
    alive.start()
    try:
        # a second proxy that acted on revision 1 and then died (its last heartbeat is now)
        await world.store.upsert("proxy", "proxy-dead", Heartbeat("proxy-dead", {mid: 1}, time.time()).to_dict())
        m = await svc.transition(mid, "start")
        assert m.phase == "dual_write"
        status = await svc.status(mid)
        states = {p["instance_id"]: (p["state"], p["acted_rev"]) for p in status["proxies"]}
        assert states == {"proxy-alive": ("acked", m.route_rev), "proxy-dead": ("gone", 1)}
        assert status["laggards"] == []
    finally:
        await alive.stop()
        await cache.stop()


async def test_ack_timeout_names_laggards_and_blocks_next_step(world: World) -> None:
    svc = world.service(heartbeat_ttl=60.0, ack_timeout=0.3, ack_poll=0.05)
    mid = await planned(world, svc)
    await world.store.upsert("proxy", "p-slow", Heartbeat("p-slow", {mid: 1}, time.time()).to_dict())
    with pytest.raises(Refused, match="proxies p-slow did not acknowledge"):
        await svc.transition(mid, "start")
    m = await svc.get(mid)
    assert m.phase == "dual_write" and m.last_refusal is not None
    await svc.verify(mid)  # verification does not change what proxies do
    with pytest.raises(Refused, match="p-slow have not acknowledged revision"):
        await svc.transition(mid, "switch_reads")
    await world.store.upsert("proxy", "p-slow", Heartbeat("p-slow", {mid: m.route_rev}, time.time()).to_dict())
    # the guard now passes; the step commits and then waits again for p-slow's next revision
    with pytest.raises(Refused, match="switch_reads is committed"):
        await svc.transition(mid, "switch_reads")
    assert (await svc.get(mid)).phase == "reads_switched"


async def test_knobs_and_read_mode(world: World) -> None:
    svc = world.service()
    mid = await planned(world, svc)
    before = await svc.get(mid)
    m = await svc.throttle(mid, 25)
    m = await svc.pause(mid)
    assert (m.paused, m.throttle, m.route_rev) == (True, 25.0, before.route_rev)
    assert not (await svc.resume(mid)).paused
    m = await svc.set_read_mode(mid, "merged")
    assert m.read_mode == "merged" and m.route_rev == m.rev
    with pytest.raises(SwitchyardError, match=">= 0"):
        await svc.throttle(mid, -1)


async def test_hooks_called_on_transition_and_refusal_with_retry(world: World) -> None:
    calls: list[tuple[str, bytes]] = []
    answers = iter([500, 200, 200, 200, 200])

    async def post(url: str, body: bytes, timeout: float) -> int:
        calls.append((url, body))
        return next(answers)

    hooks = Hooks(["http://hook.invalid/a"], retries=2, backoff=0.01, post=post)
    svc = MigrationService(world.store, world.client, ServiceConfig(), hooks)
    mid = await planned(world, svc)
    with pytest.raises(Refused):
        await svc.transition(mid, "complete")
    await svc.close()
    bodies = [b for _, b in calls]
    plan_calls = [b for b in bodies if b'"event":"transition"' in b]
    refusals = [b for b in bodies if b'"event":"refusal"' in b]
    assert len(plan_calls) == 2 and plan_calls[0] == plan_calls[1]  # retried once after the 500
    assert len(refusals) == 1 and b"cannot complete" in refusals[0]
    assert (hooks.delivered, hooks.failed) == (2, 0)


# -- admin API over REST and gRPC (real servers on 127.0.0.1 port 0)

async def test_admin_api_rest_and_grpc_require_the_key(world: World) -> None:
    import aiohttp
    import grpc
    from aiohttp import web

    from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
    from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc
    from switchyard.proxy.admin.service import AdminService
    from switchyard.proxy.frontend.admin_grpc import add_admin_service
    from switchyard.proxy.frontend.admin_rest import admin_routes

    admin = AdminService(world.service())
    app = web.Application()
    app.add_routes(admin_routes(admin, "s3cret"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = grpc.aio.server()
    add_admin_service(server, admin, "s3cret")
    gport = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    base = f"http://127.0.0.1:{port}/switchyard/v1"
    key = {"switchyard-admin-key": "s3cret"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/migrations") as resp:
                body = await resp.json()
                assert resp.status == 401 and "admin key" in body["status"]["error"]
            async with http.post(f"{base}/migrations", json={"logical": world.logical, "to_model": B.id},
                                 headers={"authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 200
                mid = (await resp.json())["result"]["migration"]["id"]
            async with http.post(f"{base}/migrations/{mid}/transition",
                                 json={"name": "switch_reads"}, headers=key) as resp:
                body = await resp.json()
                assert resp.status == 409 and "cannot switch-reads from phase planned" in body["status"]["error"]
            async with http.post(f"{base}/migrations/{mid}/transition",
                                 json={"name": "start", "expected_rev": 1}, headers=key) as resp:
                assert resp.status == 409  # the refusal above bumped the revision
            async with http.get(f"{base}/migrations/{mid}/watch?interval=0.1", headers=key) as resp:
                first = orjson_loads(await resp.content.readline())
                assert first["migration"]["phase"] == "planned"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}") as channel:
            stub = pb_grpc.AdminStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Get(pb.MigrationRef(id=mid))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            meta = (("switchyard-admin-key", "s3cret"),)
            reply = await stub.Transition(pb.TransitionRequest(id=mid, name="start"), metadata=meta)
            assert reply.result["migration"]["phase"] == "dual_write"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Get(pb.MigrationRef(id="nope"), metadata=meta)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            stream = stub.Watch(pb.WatchRequest(id=mid, interval_seconds=0.1), metadata=meta)
            first_reply = await stream.read()
            assert first_reply.result["migration"]["phase"] == "dual_write"
            stream.cancel()
    finally:
        await server.stop(0)
        await runner.cleanup()


def orjson_loads(raw: bytes) -> Any:
    import orjson

    return orjson.loads(raw)


def test_generated_admin_code_is_current(tmp_path: Any) -> None:
    from pathlib import Path

    from switchyard.proxy.admin.protogen import ROOT, generate

    fresh = generate(tmp_path)
    assert fresh, "protoc generated nothing"
    for path in fresh:
        rel = path.relative_to(tmp_path)
        committed = Path(ROOT) / rel
        assert committed.exists() and committed.read_bytes() == path.read_bytes(), (
            f"{rel} is stale: run `python -m switchyard.proxy.admin.protogen`")


async def test_cli_drives_a_migration_over_rest(world: World, capsys: Any) -> None:
    from aiohttp import web

    from switchyard.proxy import cli
    from switchyard.proxy.admin.service import AdminService
    from switchyard.proxy.frontend.admin_rest import admin_routes

    app = web.Application()
    app.add_routes(admin_routes(AdminService(world.service()), "k"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def run(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(cli.main, ["migrate", *argv, "--url", url, "--admin-key", "k"])
        return code, capsys.readouterr().out

    try:
        code, out = await run("plan", world.logical, "--to-model", B.id, "--json")
        assert code == 0
        mid = json_loads(out)["migration"]["id"]
        code, out = await run("start", mid)
        assert code == 0 and "phase dual_write" in out and "last refusal: none" in out
        code, out = await run("switch-writes", mid)
        assert code == 1
        code, out = await run("status", mid)
        assert "last refusal: switch_writes: cannot switch-writes from phase dual_write" in out
        code, out = await run("list")
        assert mid in out and "dual_write" in out
        code = await asyncio.to_thread(cli.main, ["migrate", "list", "--url", url])
        assert code == 1 and "admin key" in capsys.readouterr().err
    finally:
        await runner.cleanup()


def json_loads(raw: str) -> Any:
    import json

    return json.loads(raw)


@pytest.mark.parametrize("sample, schema", [
    (7, models.PayloadSchemaType.INTEGER),
    ("d7", models.PayloadSchemaType.KEYWORD),
    (None, models.PayloadSchemaType.KEYWORD),  # no point has the field yet
    (True, models.PayloadSchemaType.KEYWORD),  # a bool is not an integer doc key
])
def test_doc_key_index_schema(sample: Any, schema: models.PayloadSchemaType) -> None:
    from switchyard.proxy.migration.facts import doc_key_schema

    assert doc_key_schema(sample) == schema


class IndexSpy(AsyncQdrantClient):
    """The real client, recording the payload indexes it is asked to create."""

    indexed: list[tuple[str, str, Any]]

    async def create_payload_index(self, collection_name: str, field_name: str,  # type: ignore[override]
                                   field_schema: Any = None, **kwargs: Any) -> Any:
        self.indexed.append((collection_name, field_name, field_schema))
        return await super().create_payload_index(collection_name, field_name, field_schema, **kwargs)


async def test_plan_indexes_the_doc_key_on_the_target(upstream: Any, prefix: str) -> None:
    """Merged reads look source hits' documents up in the target by the doc key: the target
    gets an index of it, typed by the source's values (here integers)."""
    client = IndexSpy(url=upstream.rest_url, check_compatibility=False)
    client.indexed = []
    store = StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")
    w = World(client, store, prefix)
    try:
        await client.create_collection(w.source, vectors_config=models.VectorParams(
            size=4, distance=models.Distance.COSINE))
        await client.upsert(w.source, [models.PointStruct(id=1, vector=[1.0, 0, 0, 0],
                                                          payload={"doc_id": 41, "text": "x"})])
        for spec in (A, B):
            await registry.register_model(store, spec)
        await registry.bind(store, client, Binding(w.source, A.id))
        report = await w.service().plan(PlanRequest(w.source, B.id))
        assert (report["target"], "doc_id", models.PayloadSchemaType.INTEGER) in client.indexed
    finally:
        await client.delete_collection(store.collection)
        await client.close()

"""Verify as a background job of a real proxy (embedded upstream): the REST and gRPC admin API
with ``repair`` and ``wait``, progress in the status, one job per migration, the CLI following
it, and a proxy stopping while a verify runs.

Model B is either the hashing provider (fast) or an OpenAI-compatible stub whose first embedding
request is held (:class:`openai_stub.Hold`), which keeps a repairing verify running for as long
as a test needs it, without timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from qdrant_client import AsyncQdrantClient, models

from backfill_helpers import B, dump, setup_migration
from openai_stub import Hold, OpenAIStub
from switchyard.proxy import registry
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.store import StateStore
from proxy_fixtures import RunningProxy, start_proxy, switchyard  # noqa: F401  (fixture)


@pytest.fixture
def proxy(switchyard: RunningProxy) -> RunningProxy:  # noqa: F811
    """The session's proxy (tests that stop a proxy start their own)."""
    return switchyard


@pytest.fixture
async def world(upstream: Any) -> AsyncIterator[tuple[AsyncQdrantClient, StateStore]]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    yield client, StateStore(client)  # the proxies' own state store
    await client.close()


@pytest.fixture
async def stub_model(world: Any, prefix: str) -> AsyncIterator[tuple[OpenAIStub, ModelSpec]]:
    """An OpenAI-compatible stub serving 8-dimensional vectors, registered as a model."""
    stub = OpenAIStub(default_dimensions=8)
    await stub.start()
    spec = ModelSpec(id=f"stub-{prefix}", provider="openai", model="m", dimensions=8,
                     base_url=stub.base_url, timeout_s=600)
    await registry.register_model(world[1], spec)
    yield stub, spec
    await stub.stop()


async def admin(p: RunningProxy, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{p.rest_url}/switchyard/v1{path}", json=body) as resp:
            return resp.status, await resp.json()


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def status(p: RunningProxy, mid: str) -> dict[str, Any]:
    code, body = await admin(p, "GET", f"/migrations/{mid}")
    assert code == 200, body
    return dict(body["result"])


async def assert_target_matches(client: AsyncQdrantClient, m: dict[str, Any], model: str) -> None:
    src, tgt = await dump(client, m["source"]), await dump(client, m["target"])
    assert set(src) == set(tgt)
    for i, (payload, _) in src.items():
        assert tgt[i][0][DIGEST_FIELD] == source_digest(payload), i
        assert tgt[i][0]["embedding_model_id"] == model


async def test_rest_repair_fixes_missing_extra_stale_and_verifies(
        proxy: RunningProxy, world: Any, prefix: str) -> None:
    client, store = world
    mid = await setup_migration(client, store, prefix, list(range(1, 31)))
    code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify")
    assert code == 409 and "missing=30, extra=0, stale=0" in body["status"]["error"], body
    v = (await status(proxy, mid))["verify"]
    assert v["state"] == "refused" and not v["running"] and not v["repair"]
    assert v["counts"]["missing"] == 30 and "missing=30" in v["reason"]

    code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify?wait=true", {"repair": True})
    assert code == 200, body
    result = body["result"]
    m = result["migration"]
    assert result["status"] == "completed" and m["phase"] == "verified"
    assert m["verification"]["counts"]["repaired"] == 30 and result["verify"]["state"] == "clean"
    await assert_target_matches(client, m, B.id)

    # a missing, an extra and a stale point, made behind the proxy's back
    await client.delete(m["target"], models.PointIdsList(points=[3]), wait=True)
    kept = (await client.retrieve(m["target"], [4], with_vectors=True))[0]
    await client.upsert(m["target"], [models.PointStruct(id=999, vector=kept.vector, payload={"text": "stray"})])
    await client.set_payload(m["source"], {"text": "document 5, edited"}, points=[5], wait=True)
    code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify")
    error = body["status"]["error"]
    assert code == 409 and "missing=1, extra=1, stale=1" in error and "'extra': [999]" in error, body
    assert "last REFUSED (without repair" in _render(await status(proxy, mid))

    code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify", {"repair": True})
    assert code == 200, body
    m = body["result"]["migration"]
    assert m["phase"] == "verified" and m["verification"]["note"] == "repaired"
    assert {k: m["verification"]["counts"][k] for k in ("missing", "extra", "stale", "repaired")} == {
        "missing": 1, "extra": 1, "stale": 1, "repaired": 3}
    await assert_target_matches(client, m, B.id)


def _render(result: dict[str, Any]) -> str:
    from switchyard.proxy.migration.command import render

    return render(result)


async def test_wait_false_runs_in_background_joins_and_refuses_the_other_repair(
        proxy: RunningProxy, world: Any, prefix: str, stub_model: Any) -> None:
    client, store = world
    stub, spec = stub_model
    mid = await setup_migration(client, store, prefix, list(range(1, 41)), model_b=spec.id)
    release = asyncio.Event()
    stub.script(Hold(release))  # the repair's first embedding call waits for the test
    try:
        code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify?wait=false", {"repair": True})
        assert code == 200 and body["result"]["status"] == "acknowledged", body
        v = body["result"]["verify"]
        assert v["running"] and v["repair"] and v["joined"] is False
        assert v["owner"] == proxy.interceptor.config.instance_id
        await until(lambda: _held(stub), "the repair's embedding call reached the stub")
        v = (await status(proxy, mid))["verify"]
        assert v["state"] == "running" and v["stage"] == "repair" and v["checked"] == 40
        assert "RUNNING, verify with repair" in _render(await status(proxy, mid))

        code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify?wait=false", {"repair": True})
        assert code == 200 and body["result"]["verify"]["joined"] is True, body
        code, body = await admin(proxy, "POST", f"/migrations/{mid}/verify", {"repair": False})
        assert code == 409 and "with repair of migration" in body["status"]["error"]
        assert "already running in this proxy" in body["status"]["error"]
    finally:
        release.set()
    done = await until(lambda: _finished(proxy, mid), "the background verify ended")
    assert done["verify"]["state"] == "clean" and done["verify"]["counts"]["missing"] == 40
    assert done["migration"]["phase"] == "verified"
    assert done["migration"]["verification"]["counts"]["repaired"] == 40
    await assert_target_matches(client, done["migration"], spec.id)


async def _held(stub: OpenAIStub) -> bool:
    return stub.in_flight == 1


async def _finished(p: RunningProxy, mid: str) -> dict[str, Any] | None:
    current = await status(p, mid)
    return None if current["verify"]["running"] else current


async def test_grpc_verify_with_repair(proxy: RunningProxy, world: Any, prefix: str) -> None:
    import grpc

    from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
    from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc

    client, store = world
    mid = await setup_migration(client, store, prefix, list(range(1, 11)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as channel:
        stub = pb_grpc.AdminStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Verify(pb.VerifyRequest(id=mid))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "missing=10" in str(err.value.details())
        reply = await stub.Verify(pb.VerifyRequest(id=mid, repair=True))
        assert reply.result["status"] == "completed" and reply.result["migration"]["phase"] == "verified"
        assert reply.result["migration"]["verification"]["counts"]["repaired"] == 10
        again = await stub.Verify(pb.VerifyRequest(id=mid, wait=False))
        assert again.result["status"] == "acknowledged"
    await assert_target_matches(client, (await status(proxy, mid))["migration"], B.id)


async def test_cli_migrate_verify_repair_follows_progress(
        proxy: RunningProxy, world: Any, prefix: str, stub_model: Any, capsys: Any) -> None:
    from switchyard.proxy import cli

    client, store = world
    stub, spec = stub_model
    mid = await setup_migration(client, store, prefix, list(range(1, 21)), model_b=spec.id)
    release = asyncio.Event()
    stub.script(Hold(release))
    argv = ["migrate", "verify", mid, "--repair", "--url", proxy.rest_url, "--interval", "0.05"]
    running = asyncio.ensure_future(asyncio.to_thread(cli.main, argv))
    out: list[str] = []

    async def progress_printed() -> bool:
        out.append(capsys.readouterr().out)
        return "on " + proxy.interceptor.config.instance_id + ": repair 0/20 differences, checked 20 points" \
            in "".join(out)

    try:
        await until(progress_printed, "the CLI printed the repair's progress")
    finally:
        release.set()
    assert await running == 0
    out.append(capsys.readouterr().out)
    text = "".join(out)
    assert "phase verified" in text and "verify job: last CLEAN (with repair" in text, text

    m = (await status(proxy, mid))["migration"]
    await client.delete(m["target"], models.PointIdsList(points=[7]), wait=True)
    code = await asyncio.to_thread(cli.main, ["migrate", "verify", mid, "--url", proxy.rest_url])
    err = capsys.readouterr().err
    assert code == 1 and "Refused: source" in err and "missing=1, extra=0, stale=0" in err, err


async def test_stopping_the_proxy_cancels_a_running_verify(
        upstream: Any, proxy: RunningProxy, world: Any, prefix: str, stub_model: Any) -> None:
    client, store = world
    stub, spec = stub_model
    own = await asyncio.to_thread(start_proxy, upstream.rest_url, upstream.grpc_host, upstream.grpc_port)
    stopped = False
    release = asyncio.Event()
    try:
        mid = await setup_migration(client, store, prefix, list(range(1, 21)), model_b=spec.id)
        stub.script(Hold(release))
        code, body = await admin(own, "POST", f"/migrations/{mid}/verify?wait=false", {"repair": True})
        assert code == 200 and body["result"]["verify"]["running"], body
        run_id = body["result"]["verify"]["id"]
        await until(lambda: _held(stub), "the repair's embedding call reached the stub")
        await asyncio.to_thread(own.proxy.stop)  # raises TimeoutError if the stop hangs
        stopped = True
    finally:
        release.set()
        if not stopped:
            await asyncio.to_thread(own.proxy.stop)
    record = await store.get("verify_run", f"{mid}/{run_id}")  # the run's own record
    assert record is not None and record.data["outcome"] == "cancelled", record
    current = await status(proxy, mid)  # another proxy sees the outcome
    assert current["verify"]["state"] == "cancelled" and current["migration"]["phase"] == "dual_write"


async def test_two_processes_claiming_one_verify_at_once_one_wins(world: Any, prefix: str) -> None:
    """The claim is a compare-and-set: started at the same instant by two owners, exactly one
    verify gets the migration's pointer to its run; the other is refused with the winner's name
    in the reason, and leaves no run record behind."""
    from switchyard.proxy.errors import Conflict
    from switchyard.proxy.migration import verify_state
    from switchyard.proxy.migration.record import Migration

    _, store = world
    mid = f"{prefix}race"
    m = Migration(id=mid, logical=mid, source=f"{mid}_a", target=f"{mid}_b", model_a="a", model_b="b")
    await store.create(Migration.KIND, mid, m.stored())
    outcomes = await asyncio.gather(
        *(verify_state.claim(store, mid, owner, False, time.time()) for owner in ("p1", "p2")),
        return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, verify_state.Run)]
    lost = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert f"already running on {won[0].owner} (run {won[0].id}" in str(lost[0])
    stored = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert stored.verify_runs == (won[0].id,)
    assert [e.key for e in await store.list(verify_state.KIND) if e.key.startswith(f"{mid}/")] == [won[0].key]
    await store.delete(verify_state.KIND, won[0].key)
    await store.delete(Migration.KIND, mid)


async def test_a_caller_waiting_on_a_verify_is_answered_when_the_proxy_stops(
        upstream: Any, world: Any, prefix: str, stub_model: Any) -> None:
    """``wait=true`` callers get Qdrant's error shape saying why, within the drain: the jobs
    stop when the server starts draining, not after the drain gave up on them."""
    client, store = world
    stub, spec = stub_model
    own = await asyncio.to_thread(start_proxy, upstream.rest_url, upstream.grpc_host, upstream.grpc_port)
    release = asyncio.Event()
    try:
        mid = await setup_migration(client, store, prefix, list(range(1, 21)), model_b=spec.id)
        stub.script(Hold(release))
        waiting = asyncio.ensure_future(admin(own, "POST", f"/migrations/{mid}/verify", {"repair": True}))
        await until(lambda: _held(stub), "the repair's embedding call reached the stub")
        stopping = asyncio.ensure_future(asyncio.to_thread(own.proxy.stop))
        code, body = await asyncio.wait_for(waiting, 30)
        await stopping
    finally:
        release.set()
    assert code == 500 and "the proxy is shutting down" in body["status"]["error"], body

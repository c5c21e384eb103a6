"""The ``copy`` kind end to end on real processes: the embedded upstream, a proxy and backfill
daemons as subprocesses, two application writers (official qdrant-client, REST and gRPC)
upserting, editing payloads and deleting by id and by filter through the proxy the whole time.

A schema change (HNSW ``m``, the unnamed vector becoming a named ``dense`` one stored as
float16, payload indexes) is planned through the
admin REST API, backfilled by a daemon SIGKILLed three times and restarted, verified, switched
and completed; the logical name then holds exactly what the writers' logs say (0 lost,
0 resurrected, 0 stale). Then the same with a rollback from every phase before ``complete``:
the source holds exactly the logs' state (writes mirrored back from the target after
``switch-writes`` included). The plan's dry run is also read through the CLI and admin gRPC.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from migration_e2e import ROOT, Stack, Writer, backfill_with_kills, compare, dump, finish_backfill, seed_point
from switchyard.proxy import registry
from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.migration.command import AdminClient
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

pytestmark = pytest.mark.embedded_only  # it starts its own upstream process

N = 400  # seeded points; writers use ids up to N + 100
A = ModelSpec(id="copy-a", provider="hashing", model="copy-a", dimensions=4)
OPTIONS: dict[str, Any] = {
    "set": {"hnsw_config.m": 32},
    "vectors_config": {"dense": {"size": 4, "distance": "Cosine", "datatype": "float16"}},
    "indexes": {"tag": "integer"}, "drop_indexes": ["owner"],
    "clients_follow_layout": True,  # the writers switch to `dense` at switch-writes
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
async def direct(stack: Stack) -> AsyncIterator[AsyncQdrantClient]:
    client = stack.direct()
    try:
        yield client
    finally:
        await client.close()


async def seed(client: AsyncQdrantClient, name: str) -> dict[int, dict[str, Any]]:
    """Source ``<name>_v1`` behind alias ``name``, bound to A, with N points and an index."""
    source, rng = f"{name}_v1", random.Random(name)
    await client.create_collection(source, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    await client.create_payload_index(source, "owner", models.PayloadSchemaType.KEYWORD, wait=True)
    await client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=name))])
    store = StateStore(client)
    await registry.register_model(store, A, replace=True)
    await registry.bind(store, client, Binding(name, A.id))
    points = [seed_point(i, rng) for i in range(N)]
    await client.upsert(source, points, wait=True)
    return {int(p.id): {"vector": p.vector, "payload": p.payload} for p in points}  # type: ignore[arg-type]


def call(admin: AdminClient, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return admin.call(method, path, body)


async def step(admin: AdminClient, mid: str, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(call, admin, "POST", f"/migrations/{mid}/transition", {"name": name})


async def verify(admin: AdminClient, mid: str) -> dict[str, Any]:
    """A verify through the admin API; retried (bounded) while the writers keep writing."""
    last: Exception | None = None
    for _ in range(4):
        try:
            return await asyncio.to_thread(call, admin, "POST", f"/migrations/{mid}/verify", {})
        except SwitchyardError as exc:
            last = exc
            await asyncio.sleep(0.5)
    raise AssertionError(f"verify stayed dirty: {last}")


class Writers:
    """The two application writers (REST and gRPC) running in the background."""

    def __init__(self, stack: Stack, logical: str, seeded: dict[int, dict[str, Any]]) -> None:
        self.clients = [stack.client(grpc=False), stack.client(grpc=True)]
        self.writers = [Writer(self.clients[0], logical, "rest", seeded, N + 100, 1),
                        Writer(self.clients[1], logical, "grpc", seeded, N + 100, 2)]
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Writers:
        self.tasks = [asyncio.get_running_loop().create_task(w.run(self.stop)) for w in self.writers]
        return self

    def layout(self, name: str | None) -> None:
        """The vector layout the application writes from now on (None: unchanged): the target's
        named vector once writes are switched to it, unnamed again once they are switched back."""
        if name is not None:
            for w in self.writers:
                w.vector_name = name

    async def halt(self) -> dict[int, dict[str, Any]]:
        """Stop writing; the expected state of every id (both logs)."""
        self.stop.set()
        await asyncio.gather(*self.tasks)
        for w in self.writers:
            assert min(w.ops[k] for k in ("upsert", "set_payload", "delete_ids")) > 0, w.ops
        return {**self.writers[0].expected, **self.writers[1].expected}

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in self.clients:
            await c.close()


def plan_body(logical: str, **extra: Any) -> dict[str, Any]:
    return {"logical": logical, "kind": "copy", "options": OPTIONS, "throttle": 150, **extra}


async def test_copy_end_to_end_with_kills_then_complete(stack: Stack, direct: AsyncQdrantClient) -> None:
    logical = "copy_e2e"
    seeded = await seed(direct, logical)
    admin, store = stack.admin(), stack.store(direct)
    async with Writers(stack, logical, seeded) as writers:
        report = await asyncio.to_thread(call, admin, "POST", "/migrations", plan_body(logical))
        mid, target = report["migration"]["id"], report["target"]
        assert report["kind"] == "copy" and report["estimate"]["cost"] is None
        assert "hnsw_config.m: 16 -> 32" in report["layout"]["diff"], report["layout"]["diff"]
        info = await direct.get_collection(target)
        assert info.config.hnsw_config.m == 32
        assert info.config.params.vectors["dense"].datatype == models.Datatype.FLOAT16  # type: ignore[index]
        assert "tag" in (info.payload_schema or {}) and "owner" not in (info.payload_schema or {})
        await step(admin, mid, "start")
        kills = await backfill_with_kills(stack, store, mid, 3, extra=("--batch-size", "10", "--concurrency", "1"))
        assert kills >= 3, kills
        await asyncio.to_thread(call, admin, "POST", f"/migrations/{mid}/throttle", {"unthrottled": True})
        await finish_backfill(stack, mid)
        await verify(admin, mid)
        for name in ("switch_reads", "switch_writes", "complete"):
            await step(admin, mid, name)
            writers.layout("dense" if name == "switch_writes" else None)
            await asyncio.sleep(1.0)  # the writers keep writing in every phase
        expected = await writers.halt()
    status = await asyncio.to_thread(call, admin, "GET", f"/migrations/{mid}")
    assert status["migration"]["phase"] == "complete"
    aliases = {a.alias_name: a.collection_name for a in (await direct.get_aliases()).aliases}
    assert aliases[logical] == target
    result = compare(await dump(direct, logical), expected, "dense")
    assert (result["lost"], result["resurrected"], result["stale"]) == (0, 0, 0), result
    await asyncio.to_thread(call, admin, "POST", f"/migrations/{mid}/cleanup", {"yes": True})
    assert not await direct.collection_exists(f"{logical}_v1")
    assert compare(await dump(direct, logical), expected, "dense")["lost"] == 0


#: How each phase before `complete` is rolled back to the source.
ROLLBACK = {"planned": ["cancel"], "dual_write": ["cancel"], "verified": ["cancel"],
            "reads_switched": ["switch_reads_back", "cancel"],
            "writes_switched": ["switch_writes_back", "switch_reads_back", "cancel"]}
FORWARD = ["start", "verify", "switch_reads", "switch_writes"]


@pytest.mark.parametrize("phase", list(ROLLBACK))
async def test_copy_rollback_from_every_phase_loses_nothing(stack: Stack, direct: AsyncQdrantClient,
                                                            phase: str) -> None:
    logical = f"copy_rb_{phase}"
    seeded = await seed(direct, logical)
    admin = stack.admin()
    async with Writers(stack, logical, seeded) as writers:
        report = await asyncio.to_thread(call, admin, "POST", "/migrations", plan_body(logical, throttle=None))
        mid = report["migration"]["id"]
        for name in FORWARD[:list(ROLLBACK).index(phase)]:
            if name == "verify":
                await finish_backfill(stack, mid)
                await verify(admin, mid)
            else:
                await step(admin, mid, name)
            writers.layout("dense" if name == "switch_writes" else None)
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        assert (await asyncio.to_thread(call, admin, "GET", f"/migrations/{mid}"))["migration"]["phase"] == phase
        for name in ROLLBACK[phase]:
            await step(admin, mid, name)
            writers.layout("" if name == "switch_writes_back" else None)
            await asyncio.sleep(0.5)
        expected = await writers.halt()
    aliases = {a.alias_name: a.collection_name for a in (await direct.get_aliases()).aliases}
    assert aliases[logical] == f"{logical}_v1"
    result = compare(await dump(direct, f"{logical}_v1"), expected)
    assert (result["lost"], result["resurrected"], result["stale"]) == (0, 0, 0), result


async def test_copy_dry_run_through_cli_and_admin_grpc(stack: Stack, direct: AsyncQdrantClient, tmp_path: Any) -> None:
    import grpc

    from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
    from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc

    logical = "copy_dry"
    await seed(direct, logical)
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({"dense": {"size": 4, "distance": "Cosine"}}))
    runs = [await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "switchyard.proxy", "migrate", "plan", logical, "--kind", "copy",
        "--url", stack.rest_url, "--vectors-config", str(vectors), "--set", "hnsw_config.m=24",
        "--index", "tag:integer", "--drop-index", "owner", "--dry-run", "--json", *follow],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
        for follow in ([], ["--option", "clients_follow_layout=true"])]
    refused = json.loads(runs[0].stdout)  # fails closed: clients would get Qdrant's errors
    assert runs[0].returncode != 0 and not refused["ok"], refused
    assert any("renames or drops vectors (`` -> `dense`" in r for r in refused["reasons"]), refused
    done = runs[1]
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["dry_run"], report
    diff = report["layout"]["diff"]
    assert "vector `` -> `dense`" in diff and "hnsw_config.m: 16 -> 24" in diff, diff
    assert "payload_indexes.owner: 'keyword' -> (none)" in diff, diff
    assert report["cleanup"] == [f"collection `{logical}_v1` (the source) and its binding"]
    assert report["estimate"]["points"] == N
    assert not await direct.collection_exists(report["target"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stub = pb_grpc.AdminStub(channel)
        req = pb.PlanRequest(logical=logical, kind="copy", dry_run=True)
        req.options.update({"set": {"hnsw_config.m": 8, "bogus.x": 1}})
        reply = await stub.Plan(req)
        assert reply.result["ok"] is False
        assert any("--set `bogus.x`" in r for r in reply.result["reasons"]), reply.result["reasons"]
        req = pb.PlanRequest(logical=logical, kind="copy", dry_run=True)
        req.options.update({"vectors_config": {"size": 8, "distance": "Cosine"}})
        reply = await stub.Plan(req)
        assert any("needs --kind reembed" in r for r in reply.result["reasons"]), reply.result["reasons"]

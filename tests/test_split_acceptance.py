"""Issue 12, split: seeded from 3 sources x 2 types, the plan (through the migration service)
creates 6 targets named by the template, 8 dims for text and 16 for code, each with an index on
the split fields; mirrored writes through the proxy's executor route, move, delete and refuse
per point; verify is per target; after switch-reads the logical name answers searches (with and
without the field filter), scroll, count and retrieve exactly like the right target(s) directly.

The executor runs in-process over the real upstream, the official client plans and seeds; the
proxy's state snapshot is the seam (its migration record is the one the service stored).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client import grpc as pb
from qdrant_client.conversions.conversion import RestToGrpc

from dataplane_reads_fixtures import Forwarders
from switchyard.backfill.daemon import Daemon
from switchyard.backfill.settings import DaemonConfig
from switchyard.proxy import registry
from switchyard.proxy.dataplane import split_level
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.mirror import Mirror
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.dataplane.repair_spool import RepairLog
from switchyard.proxy.dataplane.split_mirror import layout_of
from switchyard.proxy.dataplane.split_reads import merge_scored
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.intercept.executor import Executor
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.record import Migration, Refused
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.state.store import StateStore
from switchyard.proxy.wire import GrpcCall, RestCall

A = ModelSpec(id="split-a", provider="hashing", model="a", dimensions=4)
TEXT = ModelSpec(id="split-text", provider="hashing", model="t", dimensions=8)
CODE = ModelSpec(id="split-code", provider="hashing", model="c", dimensions=16)
SOURCES = ("wiki", "news", "docs")
TYPES = ("text", "code")
JSON = (("content-type", "application/json"),)
QUERIES = ("alpha beta", "gamma wiki", "code delta", "news of the day")


@dataclasses.dataclass
class State:
    snapshot: StateSnapshot


@dataclasses.dataclass
class World:
    client: AsyncQdrantClient
    store: StateStore
    pool: EmbedderPool
    fw: Forwarders
    prefix: str
    source: str
    state: State | None = None
    executor: Executor | None = None
    m: Migration | None = None

    async def snapshot(self, m: Migration) -> StateSnapshot:
        bindings = {e.key: Binding.from_dict(e.data) for e in await self.store.list(Binding.KIND)}
        return StateSnapshot({s.id: s for s in (A, TEXT, CODE)}, bindings, {}, 0.0, {m.id: m})

    async def rest(self, method: str, rest: str, body: Any) -> Any:
        assert self.executor is not None
        call = RestCall(method, f"/collections/{self.source}{rest}", "", JSON, orjson.dumps(body))
        reply = await self.executor.rest(call, self.fw.rest)
        assert reply.ok, reply.body
        return orjson.loads(reply.body)["result"]

    async def direct(self, name: str, rest: str, body: Any) -> Any:
        reply = await self.fw.rest(RestCall("POST", f"/collections/{name}{rest}", "", JSON, orjson.dumps(body)))
        assert reply.ok, reply.body
        return orjson.loads(reply.body)["result"]


def payload(pid: int, s: str, t: str) -> dict[str, Any]:
    return {"source_title": s, "type": t, "doc_id": f"d{pid}", "text": f"{s} {t} alpha {pid} gamma delta"[: 20 + pid % 17]}


@pytest.fixture
async def world(upstream: Any, prefix: str, tmp_path: Path) -> AsyncIterator[World]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    store = StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")
    pool = EmbedderPool()
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    w = World(client, store, pool, fw, prefix, f"{prefix}shared")
    await client.create_collection(w.source, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    await client.create_payload_index(w.source, "doc_id", models.PayloadSchemaType.KEYWORD)
    for field in ("source_title", "type"):  # indexed: discovery uses facets
        await client.create_payload_index(w.source, field, models.PayloadSchemaType.KEYWORD)
    for spec in (A, TEXT, CODE):
        await registry.register_model(store, spec)
    await registry.bind(store, client, Binding(w.source, A.id))
    points, pid = [], 0
    for s in SOURCES:
        for t in TYPES:
            for _ in range(5):
                pid += 1
                points.append((pid, payload(pid, s, t)))
    vecs = await pool.embed(A, [p["text"] for _, p in points])
    await client.upsert(w.source, [models.PointStruct(id=i, vector=v.tolist(), payload=p)
                                   for (i, p), v in zip(points, vecs)], wait=True)
    try:
        yield w
    finally:
        await fw.aclose()
        await pool.aclose()
        await client.delete_collection(store.collection)
        await client.close()


def template(w: World) -> str:
    return w.prefix + "{source_title}_{type}"


def target(w: World, s: str, t: str) -> str:
    return f"{w.prefix}{s}_{t}"


async def plan(w: World, tmp_path: Path) -> Migration:
    svc = MigrationService(w.store, w.client, ServiceConfig())
    options = {"template": template(w), "vectors": {
        "default": {"model": TEXT.id}, "values": {target(w, s, "code"): {"model": CODE.id} for s in SOURCES}}}
    report = await svc.plan(PlanRequest(logical=w.source, to_model="", kind="split", options=options))
    assert report["ok"], report["reasons"]
    m = Migration.from_dict(report["migration"])
    m = await svc.transition(m.id, "start")
    assert m.phase == "dual_write"
    pool_reader = MergedReader(w.pool)
    mirror = Mirror(w.pool, RepairLog(w.store, tmp_path / "spool.jsonl"), w.fw.rest)
    w.state = State(await w.snapshot(m))
    w.executor = Executor(w.state, mirror=mirror, pool=None, reader=pool_reader)
    w.m = m
    return m


async def test_plan_creates_six_targets_by_template_with_sizes_and_indexes(world: World, tmp_path: Path) -> None:
    w = world
    m = await plan(w, tmp_path)
    layout = layout_of(m)
    assert set(layout.collections) == {target(w, s, t) for s in SOURCES for t in TYPES}
    for s in SOURCES:
        for t in TYPES:
            info = await w.client.get_collection(target(w, s, t))
            assert info.config.params.vectors.size == (16 if t == "code" else 8)  # type: ignore[union-attr]
            assert {"source_title", "type"} <= set(info.payload_schema or {})
    assert m.options["derived"]["discovery"]["method"] == "facet"


async def test_writes_route_move_delete_and_refuse_then_verify_and_reads(world: World, tmp_path: Path) -> None:
    w = world
    m = await plan(w, tmp_path)
    assert w.executor is not None and w.executor.mirror is not None
    stats = await Daemon(w.store, m.id, DaemonConfig(batch_size=8, lease_ttl=3.0, refresh=0.2, int_partitions=4, uuid_partitions=2, idle_poll=0.1)).run(once=True)  # the split backfill
    assert stats.written == 30 and stats.no_text == 0
    for s in SOURCES:
        for t in TYPES:
            assert (await w.client.count(target(w, s, t), exact=True)).count == 5
    # writes through the executor: new points, a move (type changes), deletes by id and filter
    vec = (await w.pool.embed(A, ["new one"]))[0].tolist()
    await w.rest("PUT", "/points", {"points": [{"id": 100, "vector": vec, "payload": payload(100, "news", "code")},
                                              {"id": 101, "vector": vec, "payload": payload(101, "docs", "text")}]})
    await w.rest("POST", "/points/payload", {"points": [1], "payload": {"type": "code"}})  # wiki text -> code
    await w.rest("POST", "/points/delete", {"points": [2, 101]})
    await w.rest("POST", "/points/delete", {"filter": {"must": [{"key": "doc_id", "match": {"value": "d7"}}]}})
    with pytest.raises(BadRequest, match="point 102 cannot be routed"):
        await w.rest("PUT", "/points", {"points": [{"id": 102, "vector": vec, "payload": {"type": "text"}}]})
    with pytest.raises(BadRequest, match="no target was created"):
        await w.rest("POST", "/points/payload", {"points": [3], "payload": {"source_title": "blog"}})
    assert (await w.client.count(w.source, exact=True)).count == 30 + 2 - 2 - 1
    assert 102 not in {p.id for p in (await w.client.retrieve(w.source, [102]))}
    got = await w.client.retrieve(target(w, "wiki", "code"), [1], with_payload=True)
    assert got and got[0].payload["type"] == "code"  # type: ignore[index]
    assert not await w.client.retrieve(target(w, "wiki", "text"), [1])  # moved, not copied
    diff = await split_level.verify(w.client, w.source, layout_of(m))
    assert diff.clean, diff.counts()
    svc = MigrationService(w.store, w.client, ServiceConfig())
    m = await svc.verify(m.id)  # the service's verify: per target for a split
    assert m.phase == "verified", m.last_refusal
    # a point placed in the wrong target is an error of verify
    wrong = await w.client.retrieve(target(w, "news", "code"), [100], with_vectors=True, with_payload=True)
    await w.client.upsert(target(w, "news", "text"), [models.PointStruct(
        id=100, vector=[0.1] * 8, payload=wrong[0].payload)], wait=True)
    bad = await split_level.verify(w.client, w.source, layout_of(m))
    assert bad.wrong_target == ["100"] and not bad.clean
    with pytest.raises(Refused, match="extra=1"):
        await svc.verify(m.id)
    m = await svc.verify(m.id, repair=True)  # repair levels it: removed from the wrong target
    assert not await w.client.retrieve(target(w, "news", "text"), [100])
    m = await svc.transition(m.id, "switch-reads")
    assert m.phase == "reads_switched"
    w.state.snapshot = await w.snapshot(m)  # type: ignore[union-attr]
    await check_reads(w, m)
    await check_cleanup(w, svc, m)


async def check_cleanup(w: World, svc: MigrationService, m: Migration) -> None:
    """switch-writes, complete, cleanup: the source goes; reads of the logical name keep fanning
    out to the targets; writes to it are refused with the reason over both protocols, and
    change nothing."""
    assert w.state is not None
    for step in ("switch-writes", "complete"):
        m = await svc.transition(m.id, step)
    assert m.phase == "complete"
    w.state.snapshot = await w.snapshot(m)
    await w.rest("POST", "/points/delete", {"points": [3]})  # before cleanup: source-primary, levelled
    assert not await w.client.retrieve(target(w, "wiki", "text"), [3])
    with pytest.raises(Refused, match="writes to .* are refused from then on.*pass --yes"):
        await svc.cleanup(m.id, yes=False)
    every = [target(w, s, t) for s in SOURCES for t in TYPES]
    held = {n: sorted(p.id for p in (await w.client.scroll(n, limit=1000))[0]) for n in every}
    m = await svc.cleanup(m.id, yes=True)
    assert not await w.client.collection_exists(w.source)
    assert await w.store.get(Binding.KIND, w.source) is None
    w.state.snapshot = await w.snapshot(m)
    total = sum(len(ids) for ids in held.values())
    assert (await w.rest("POST", "/points/count", {"exact": True}))["count"] == total
    got = await w.rest("POST", "/points/query", {"query": {"text": "alpha beta", "model": A.id}, "limit": 5})
    assert got["points"] and all(any(p["id"] in ids for ids in held.values()) for p in got["points"])
    vec = (await w.pool.embed(A, ["late"]))[0].tolist()
    closed = "writes to `" + w.source + "` are closed: split migration"
    for method, rest, body in (("PUT", "/points", {"points": [{"id": 500, "vector": vec,
                                                                "payload": payload(500, "wiki", "text")}]}),
                               ("POST", "/points/delete", {"points": [4]}),
                               ("POST", "/points/payload", {"points": [5], "payload": {"x": 1}})):
        with pytest.raises(BadRequest, match=closed):
            await w.rest(method, rest, body)
    assert w.executor is not None
    grpc_delete = pb.DeletePoints(collection_name=w.source, points=pb.PointsSelector(
        points=pb.PointsIdsList(ids=[pb.PointId(num=4)])))
    with pytest.raises(BadRequest, match=closed):
        await w.executor.grpc(GrpcCall("/qdrant.Points/Delete", grpc_delete.SerializeToString(), ()), w.fw.grpc)
    assert {n: sorted(p.id for p in (await w.client.scroll(n, limit=1000))[0]) for n in every} == held


async def direct_search(w: World, names: list[str], q: str, limit: int, offset: int, flt: Any) -> list[Any]:
    answers = []
    for name in sorted(names):
        spec = CODE if name.endswith("_code") else TEXT
        vec = (await w.pool.embed(spec, [q]))[0].tolist()
        body: dict[str, Any] = {"query": vec, "limit": limit + offset, "with_payload": False}
        if flt:
            body["filter"] = flt
        answers.append((await w.direct(name, "/points/query", body))["points"])
    return [(p["id"], round(p["score"], 6)) for p in merge_scored(answers, limit, offset)]


async def grpc_call(w: World, method: str, msg: Any, response: Any) -> Any:
    assert w.executor is not None
    reply = await w.executor.grpc(GrpcCall(f"/qdrant.Points/{method}", msg.SerializeToString(), ()), w.fw.grpc)
    assert reply.ok, (reply.code, reply.details)
    return response.FromString(reply.response)


async def grpc_query(w: World, q: str, limit: int, offset: int, flt: Any) -> list[int]:
    """The same query over gRPC through the executor: the ids in order."""
    msg = pb.QueryPoints(collection_name=w.source, limit=limit, offset=offset, query=pb.Query(
        nearest=pb.VectorInput(document=pb.Document(text=q, model=A.id))))
    if flt:
        msg.filter.CopyFrom(RestToGrpc.convert_filter(models.Filter.model_validate(flt)))
    out = await grpc_call(w, "Query", msg, pb.QueryResponse)
    return [p.id.num for p in out.result]


async def check_reads(w: World, m: Migration) -> None:
    every = [target(w, s, t) for s in SOURCES for t in TYPES]
    cases: list[tuple[Any, list[str]]] = [
        (None, every),
        ({"must": [{"key": "type", "match": {"value": "code"}}]}, [target(w, s, "code") for s in SOURCES]),
        ({"must": [{"key": "source_title", "match": {"value": "news"}}, {"key": "type", "match": {"value": "text"}}]},
         [target(w, "news", "text")]),
        ({"must": [{"must": [{"key": "type", "match": {"value": "text"}}]},
                   {"key": "source_title", "match": {"any": ["wiki", "docs"]}}]},
         [target(w, "wiki", "text"), target(w, "docs", "text")]),
    ]
    compared = 0
    for flt, names in cases:
        for q in QUERIES:
            for limit, offset in ((5, 0), (4, 3)):
                body: dict[str, Any] = {"query": {"text": q, "model": A.id}, "limit": limit, "offset": offset}
                if flt:
                    body["filter"] = flt
                got = [(p["id"], round(p["score"], 6)) for p in (await w.rest("POST", "/points/query", body))["points"]]
                assert got == await direct_search(w, names, q, limit, offset, flt), (flt, q)
                assert await grpc_query(w, q, limit, offset, flt) == [i for i, _ in got], (flt, q)
                compared += len(got)
    assert compared > 0
    # scroll pages through the logical name: every point once, in id order
    seen, offset = [], None
    for _ in range(20):
        body = {"limit": 7, "with_payload": False}
        if offset is not None:
            body["offset"] = offset
        page = await w.rest("POST", "/points/scroll", body)
        seen += [p["id"] for p in page["points"]]
        offset = page["next_page_offset"]
        if offset is None:
            break
    source_ids = sorted(p.id for p in (await w.client.scroll(w.source, limit=1000))[0])
    assert seen == source_ids
    assert (await w.rest("POST", "/points/count", {"exact": True}))["count"] == len(source_ids)
    pinned = {"must": [{"key": "type", "match": {"value": "code"}}]}
    code_points = [(await w.client.count(target(w, s, "code"), exact=True)).count for s in SOURCES]
    assert (await w.rest("POST", "/points/count", {"exact": True, "filter": pinned}))["count"] == sum(code_points)
    got = await w.rest("POST", "/points", {"ids": [100, 1, 999], "with_payload": True})
    assert [p["id"] for p in got] == [100, 1]
    # gRPC: scroll pages, count and get through the executor agree with REST
    seen_grpc: list[int] = []
    nxt = None
    for _ in range(20):
        msg = pb.ScrollPoints(collection_name=w.source, limit=7)
        if nxt is not None:
            msg.offset.CopyFrom(nxt)
        page_g = await grpc_call(w, "Scroll", msg, pb.ScrollResponse)
        seen_grpc += [p.id.num for p in page_g.result]
        nxt = page_g.next_page_offset if page_g.HasField("next_page_offset") else None
        if nxt is None:
            break
    assert seen_grpc == source_ids
    counted = await grpc_call(w, "Count", pb.CountPoints(collection_name=w.source, exact=True), pb.CountResponse)
    assert counted.result.count == len(source_ids)
    ids = [pb.PointId(num=i) for i in (100, 1, 999)]
    fetched = await grpc_call(w, "Get", pb.GetPoints(collection_name=w.source, ids=ids), pb.GetResponse)
    assert [p.id.num for p in fetched.result] == [100, 1]


async def test_dry_run_shows_layout_estimate_and_cleanup_and_creates_nothing(world: World) -> None:
    w = world
    svc = MigrationService(w.store, w.client, ServiceConfig())
    options = {"by": ["source_title", "type"], "vectors": {"default": {"model": TEXT.id}}}
    report = await svc.plan(PlanRequest(logical=w.source, to_model="", kind="split", options=options,
                                        dry_run=True))
    assert report["ok"] and report["kind"] == "split", report["reasons"]
    targets = report["layout"]["targets"]
    assert set(targets) == {f"{w.source}_{s}_{t}" for s in SOURCES for t in TYPES}  # default template
    assert all(t["vectors"]["size"] == 8 and t["points"] == 5 for t in targets.values())
    assert report["layout"]["diff"][0].startswith("split by source_title, type: 6 targets (values by facet)")
    assert report["estimate"]["points"] == 30
    assert report["cleanup"][0].startswith(f"the source collection `{w.source}` and its binding")
    assert "writes to" in report["cleanup"][0] and "refused" in report["cleanup"][0]
    names = {c.name for c in (await w.client.get_collections()).collections}
    assert not names & set(targets)
    bad = await svc.plan(PlanRequest(logical=w.source, to_model="", kind="split", dry_run=True,
                                     options={"template": "{source_title}/{type}"}))
    assert not bad["ok"] and any("may not contain" in r for r in bad["reasons"])
    unknown = await svc.plan(PlanRequest(logical=w.source, to_model="", kind="split", dry_run=True,
                                         options={"by": "type", "colour": 1}))
    assert any("unknown split option `colour`" in r for r in unknown["reasons"])

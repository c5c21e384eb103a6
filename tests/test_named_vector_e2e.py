"""Acceptance of the ``named-vector`` (in place) kind on real processes: the embedded upstream
(``upstream_process``), a proxy process (``keyed_proxy``), the backfill daemon as a subprocess
SIGKILLed and restarted (``test_backfill_kill``), and the official qdrant-client over REST and
gRPC writing through the proxy for the whole migration.

- the whole migration under a writer (upserts, payload updates, deletes by id and by filter),
  ending with the collection equal to the writer's log: 0 lost, 0 resurrected, 0 stale (content,
  A's vector until cleanup, B's vector and its digest);
- rollback from every phase before ``complete``, with nothing lost;
- clients that never change: after ``switch-reads`` a query with no ``using`` (or naming the
  old vector) is answered from the new vector, REST and gRPC.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from keyed_proxy import _ready, _spawn
from test_backfill_kill import copied, start as start_daemon
from upstream_process import UpstreamProcess
from switchyard.backfill.daemon import Daemon
from switchyard.backfill.settings import DaemonConfig
from switchyard.proxy import registry
from switchyard.proxy.dataplane.in_place import VECTOR_DIGEST, check_point, InPlace
from switchyard.proxy.embedders.hashing import HashingEmbedder
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

pytestmark = pytest.mark.embedded_only

A = ModelSpec(id="nv-a", provider="hashing", model="nv-a", dimensions=4)
B = ModelSpec(id="nv-b", provider="hashing", model="nv-b", dimensions=8)
CFG = InPlace(new="b", old="a", text_field="text")
FAST = DaemonConfig(batch_size=50, concurrency=1, lease_ttl=3.0, refresh=0.2, int_partitions=2,
                    progress_interval=0.5, idle_poll=0.1)


@dataclass
class Stack:
    upstream: UpstreamProcess
    proc: Any
    rest_url: str
    grpc_port: int
    key: str

    def client(self, grpc: bool = False, direct: bool = False) -> QdrantClient:
        url = self.upstream.rest_url if direct else self.rest_url
        port = int(self.upstream.grpc_address.rsplit(":", 1)[1]) if direct else self.grpc_port
        return QdrantClient(url=url, grpc_port=port, prefer_grpc=grpc, api_key=self.key, https=False,
                            check_compatibility=False, cloud_inference=True, timeout=120)

    def admin(self) -> AsyncQdrantClient:
        return AsyncQdrantClient(url=self.upstream.rest_url, api_key=self.key, https=False,
                                 check_compatibility=False, timeout=120)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    key = "sk-" + uuid.uuid4().hex
    up = UpstreamProcess(api_key=key).start()
    try:
        proc = _spawn(up, key, ())  # type: ignore[arg-type]
        rest, grpc_port = _ready(proc)
    except BaseException:
        up.stop()
        raise
    try:
        yield Stack(up, proc, rest, grpc_port, key)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
        up.stop()


def embed(spec: ModelSpec, texts: list[str]) -> np.ndarray:
    return HashingEmbedder(spec).embed_sync(texts)


#: a delete by filter removes about 1/SLOTS of the points
SLOTS = 97


def payload_of(pid: int, rev: int) -> dict[str, Any]:
    """Point ``pid``'s payload at revision ``rev`` of the writer's log."""
    return {"text": f"document {pid} revision {rev}", "doc_id": str(pid), "v": 0, "slot": pid % SLOTS}


async def seed(stack: Stack, name: str, n: int) -> tuple[str, StateStore, MigrationService, AsyncQdrantClient]:
    """Collection ``<name>_v1`` (vector ``a``, model A, bound) under alias ``<name>``."""
    client = stack.admin()
    store = StateStore(client)
    source = f"{name}_v1"
    await client.create_collection(source, vectors_config={"a": A.vector_params()})
    await client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=name))])
    for spec in (A, B):
        await registry.register_model(store, spec, replace=True)
    await registry.bind(store, client, Binding(source, A.id, vector="a"))
    payloads = [payload_of(i, 0) for i in range(n)]
    vectors = embed(A, [p["text"] for p in payloads])
    for k in range(0, n, 500):
        await client.upsert(source, [models.PointStruct(id=i, vector={"a": vectors[i].tolist()}, payload=payloads[i])
                                     for i in range(k, min(n, k + 500))], wait=True)
    svc = MigrationService(store, client, ServiceConfig(ack_timeout=20.0, max_active=1000))
    return source, store, svc, client


async def plan(svc: MigrationService, name: str, throttle: float | None = None) -> str:
    report = await svc.plan(PlanRequest(name, B.id, kind="named-vector", options={"vector": "b"},
                                        throttle=throttle))
    assert report["ok"], report["reasons"]
    return str(report["migration"]["id"])


# ---------------------------------------------------------------- the writer and its log

@dataclass
class LogWriter:
    """Writes through the proxy (REST and gRPC in turn) and keeps what the collection must hold:
    upserts, payload updates, deletes by id and by filter. A kind's writer says how an upsert's
    points carry their vectors (:meth:`points_for`); ``test_reembed_e2e`` has the other one."""

    stack: Stack
    name: str
    ids: int
    seed: int = 1
    expected: dict[int, dict[str, Any]] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    #: attempts at a refused write before the test fails
    retries: ClassVar[int] = 20

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clients = [self.stack.client(False), self.stack.client(True)]
        self.rev = 0

    def run(self, max_ops: int = 3000, max_seconds: float = 240.0) -> None:
        deadline = time.monotonic() + max_seconds
        try:
            for _ in range(max_ops):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                self.step()
                time.sleep(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _retry(self, fn: Any) -> None:
        for attempt in range(self.retries):
            try:
                fn()
                return
            except Exception:  # noqa: BLE001 - a refused write (e.g. stale state) did not apply: retried as a client would
                if attempt == self.retries - 1:
                    raise
                time.sleep(0.2)

    def _count(self, what: str) -> None:
        self.ops[what] = self.ops.get(what, 0) + 1

    def step(self) -> None:
        client = self.rng.choice(self.clients)
        roll = self.rng.random()
        if roll < 0.5:
            self.upsert(client)
        elif roll < 0.7 and self.expected:
            ids = self.rng.sample(sorted(self.expected), min(3, len(self.expected)))
            value = self.rng.randint(1, 10**6)
            self._retry(lambda: client.set_payload(self.name, {"v": value}, points=ids, wait=True))
            for i in ids:
                self.expected[i]["v"] = value
            self._count("set_payload")
        elif roll < 0.9:
            ids = [self.rng.randrange(self.ids) for _ in range(3)]
            self._retry(lambda: client.delete(self.name, models.PointIdsList(points=ids), wait=True))
            for i in ids:
                self.expected.pop(i, None)
            self._count("delete_ids")
        else:
            slot = self.rng.randrange(SLOTS)
            flt = models.Filter(must=[models.FieldCondition(key="slot", match=models.MatchValue(value=slot))])
            self._retry(lambda: client.delete(self.name, models.FilterSelector(filter=flt), wait=True))
            for i in [i for i, p in self.expected.items() if p["slot"] == slot]:
                del self.expected[i]
            self._count("delete_filter")

    def upsert(self, client: QdrantClient) -> None:
        self.rev += 1
        ids = sorted({self.rng.randrange(self.ids) for _ in range(self.rng.randint(1, 4))})
        payloads = {i: payload_of(i, self.rev) for i in ids}
        build = self.points_for(ids, payloads)
        self._retry(lambda: client.upsert(self.name, build(), wait=True))
        self.expected.update(payloads)
        self._count("upsert")

    def points_for(self, ids: list[int], payloads: dict[int, dict[str, Any]]) -> Callable[[], list[models.PointStruct]]:
        """The upsert's points, built at every attempt (its random choices made once, here)."""
        raise NotImplementedError

    def close(self) -> None:
        for c in self.clients:
            c.close()


@dataclass
class Writer(LogWriter):
    """The named-vector kind's writer: vector ``a`` as a raw vector or a document the proxy
    embeds; once ``send_b_only``, some upserts carry only model B's vector ``b``."""

    send_b_only: bool = False  # after switch-writes: some upserts carry only model B's vector

    def points_for(self, ids: list[int], payloads: dict[int, dict[str, Any]]) -> Callable[[], list[models.PointStruct]]:
        style = self.rng.random()
        points = []
        for i in ids:
            text = payloads[i]["text"]
            if self.send_b_only and style < 0.4:
                vector: Any = {"b": embed(B, [text])[0].tolist()}  # the client sends B's vector itself
            elif style < 0.7:
                vector = {"a": embed(A, [text])[0].tolist()}
            else:
                vector = {"a": models.Document(text=text, model=A.id)}  # the proxy embeds A's too
            points.append(models.PointStruct(id=i, vector=vector, payload=payloads[i]))
        return lambda: points


def start_writer(w: Writer) -> threading.Thread:
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    return thread


async def dump(client: AsyncQdrantClient, collection: str) -> dict[int, models.Record]:
    out: dict[int, models.Record] = {}
    offset: Any = None
    while True:
        recs, offset = await client.scroll(collection, offset=offset, limit=500, with_payload=True,
                                           with_vectors=True)
        out.update({int(r.id): r for r in recs})
        if offset is None:
            return out


async def differences(client: AsyncQdrantClient, collection: str, expected: dict[int, dict[str, Any]],
                      vectors: tuple[str, ...]) -> dict[str, list[int]]:
    """lost / resurrected / stale ids of ``collection`` against the writer's log (seed included)."""
    got = await dump(client, collection)
    out: dict[str, list[int]] = {"lost": sorted(set(expected) - set(got)),
                                 "resurrected": sorted(set(got) - set(expected)), "stale": []}
    for i in sorted(set(got) & set(expected)):
        payload = got[i].payload or {}
        content = {k: v for k, v in payload.items() if k in ("text", "doc_id", "v", "slot")}
        vec = got[i].vector if isinstance(got[i].vector, dict) else {}
        ok = content == expected[i]
        for name, spec in (("a", A), ("b", B)):
            if name in vectors:
                want = embed(spec, [expected[i]["text"]])[0]
                ok = ok and name in vec and np.allclose(np.asarray(vec[name]), want, atol=1e-5)
        if "b" in vectors:
            ok = ok and check_point(list(vec), payload, CFG)[0] == "ok"
        if not ok:
            out["stale"].append(i)
    return out


async def wait_phase(svc: MigrationService, mid: str, name: str, expected_rev: int | None = None) -> Migration:
    return await svc.transition(mid, name, expected_rev)


# ---------------------------------------------------------------- the whole migration under a writer

KILLS = 3


async def test_whole_migration_under_writer_with_daemon_kills(stack: Stack, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    n = 1500
    name = f"nv_{uuid.uuid4().hex[:6]}"
    source, store, svc, client = await seed(stack, name, n)
    writer = Writer(stack, name, ids=n + 300, expected={i: payload_of(i, 0) for i in range(n)})
    thread: threading.Thread | None = None
    try:
        mid = await plan(svc, name, throttle=150)
        info = await client.get_collection(source)
        assert set(info.config.params.vectors) == {"a", "b"}  # type: ignore[arg-type]
        await svc.transition(mid, "start")
        thread = start_writer(writer)
        monkeypatch.setenv("SWITCHYARD_API_KEY", stack.key)
        count_file = tmp_path / "prepared"
        kills, rng, deadline = 0, random.Random(3), time.monotonic() + 240
        while kills < KILLS and time.monotonic() < deadline:
            proc = start_daemon(stack.upstream, store.collection, mid, count_file)
            try:
                before = await copied(store, mid)
                while await copied(store, mid) == before and proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(rng.uniform(0.0, 0.3))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=10)
        assert kills == KILLS, kills
        await svc.throttle(mid, None)
        proc = start_daemon(stack.upstream, store.collection, mid, count_file)
        _, err = await asyncio.to_thread(proc.communicate, timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]

        await svc.set_read_mode(mid, "merged")
        await asyncio.sleep(1.0)
        for grpc in (False, True):
            merged = stack.client(grpc)
            try:
                hits = merged.query_points(name, query=models.Document(text="document 7 revision 0", model=A.id),
                                           limit=5).points
                assert hits, f"merged read answered nothing (grpc={grpc})"
            finally:
                merged.close()
        m = await svc.verify(mid)
        assert m.phase == "verified", m.last_refusal
        await svc.transition(mid, "switch-reads")
        await svc.transition(mid, "switch-writes")
        writer.send_b_only = True
        await asyncio.sleep(3.0)
        writer.stop.set()  # after complete, points written with B's vector alone lack A's (by design)
        await asyncio.to_thread(thread.join, 60)
        await svc.transition(mid, "complete")
        assert writer.error is None, repr(writer.error)
        assert writer.ops.get("upsert", 0) > 20 and writer.ops.get("delete_filter", 0) > 0, writer.ops
        diff = await differences(client, source, writer.expected, ("a", "b"))
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}

        await svc.cleanup(mid, yes=True)
        info = await client.get_collection(source)
        assert set(info.config.params.vectors) == {"b"}  # type: ignore[arg-type]
        diff = await differences(client, source, writer.expected, ("b",))
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}
        print(f"writer ops {writer.ops}, kills {kills}, points {len(writer.expected)}")
    finally:
        writer.stop.set()
        if thread is not None:
            thread.join(60)
        writer.close()
        await client.close()


# ---------------------------------------------------------------- rollback from every phase

ROLLBACKS = {
    "planned": [],
    "dual_write": ["start"],
    "verified": ["start", "backfill", "verify"],
    "reads_switched": ["start", "backfill", "verify", "switch-reads"],
    "writes_switched": ["start", "backfill", "verify", "switch-reads", "switch-writes"],
}
BACK = {"reads_switched": ["switch-reads-back"], "writes_switched": ["switch-writes-back", "switch-reads-back"]}


@pytest.mark.parametrize("phase", list(ROLLBACKS))
async def test_rollback_from_every_phase_loses_nothing(stack: Stack, phase: str) -> None:
    n = 200
    name = f"nvr_{uuid.uuid4().hex[:6]}"
    source, store, svc, client = await seed(stack, name, n)
    writer = Writer(stack, name, ids=n + 50, seed=hash(phase) % 1000,
                    expected={i: payload_of(i, 0) for i in range(n)})
    try:
        mid = await plan(svc, name)
        for step in ROLLBACKS[phase]:
            for _ in range(15):
                writer.step()
            if step == "backfill":
                await Daemon(store, mid, FAST).run(once=True)
            elif step == "verify":
                assert (await svc.verify(mid)).phase == "verified"
            else:
                await svc.transition(mid, step)
            if step == "switch-writes":
                writer.send_b_only = True
        for _ in range(15):
            writer.step()
        for step in [*BACK.get(phase, []), "cancel"]:
            # until cancel, B's vector alone is enough (the proxy adds A's); after it the
            # migration is over and the client sends A's vectors again
            writer.send_b_only = writer.send_b_only and step != "cancel"
            await svc.transition(mid, step)
            for _ in range(5):
                writer.step()
        assert (await svc.get(mid)).phase == "cancelled"
        diff = await differences(client, source, writer.expected, ("a",))
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}
        # the old vector still answers as before the migration, for every point
        direct = stack.client(direct=True)
        try:
            ids = sorted(writer.expected)
            held = {int(r.id): r.vector for r in direct.retrieve(source, ids, with_vectors=["a"])}
            wants = embed(A, [writer.expected[i]["text"] for i in ids])
            assert all(np.allclose(held[i]["a"], w, atol=1e-5) for i, w in zip(ids, wants))  # type: ignore[index]
            # and a search by it ranks the point first (4-d hashing vectors can tie: any of the
            # points at the top score)
            probe = ids[0]
            top = direct.query_points(source, query=wants[0].tolist(), using="a", limit=20).points
            assert top and probe in {int(h.id) for h in top if h.score >= top[0].score - 1e-6}
        finally:
            direct.close()
    finally:
        writer.close()
        await client.close()


# ---------------------------------------------------------------- clients that never change

@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
async def test_after_switch_reads_unchanged_clients_get_the_new_vector(stack: Stack, grpc: bool) -> None:
    n = 300
    name = f"nvs_{uuid.uuid4().hex[:6]}"
    source, store, svc, client = await seed(stack, name, n)
    proxied, direct = stack.client(grpc), stack.client(grpc, direct=True)
    try:
        mid = await plan(svc, name)
        await svc.transition(mid, "start")
        await Daemon(store, mid, FAST).run(once=True)
        assert (await svc.verify(mid)).phase == "verified"
        text = "document 42 revision 0"
        before = proxied.query_points(name, query=models.Document(text=text, model=A.id), using="a", limit=10)
        await svc.transition(mid, "switch-reads")
        want = direct.query_points(source, query=embed(B, [text])[0].tolist(), using="b", limit=10).points
        want_ids = [p.id for p in want]
        assert want_ids != [p.id for p in before.points]  # the two vectors rank differently
        cases = {
            "document, no using": dict(query=models.Document(text=text, model=A.id)),
            "document, old name": dict(query=models.Document(text=text, model=A.id), using="a"),
            "B's raw vector, no using": dict(query=embed(B, [text])[0].tolist()),
        }
        for case, kw in cases.items():
            got = proxied.query_points(name, limit=10, **kw).points
            assert [p.id for p in got] == want_ids, case
        batch = proxied.query_batch_points(name, [models.QueryRequest(
            query=models.Document(text=text, model=A.id), limit=10)])
        assert [p.id for p in batch[0].points] == want_ids
        # a raw vector of model A keeps being ranked by A's vector (still there until cleanup)
        a_vec = embed(A, [text])[0].tolist()
        a_ids = [p.id for p in direct.query_points(source, query=a_vec, using="a", limit=10).points]
        for kw in ({"using": "a"}, {}):
            kept = proxied.query_points(name, query=a_vec, limit=10, **kw).points
            assert [p.id for p in kept] == a_ids, kw
    finally:
        proxied.close()
        direct.close()
        await client.close()

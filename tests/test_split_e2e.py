"""Issue 12, split, end to end on real processes: a proxy process in front of the upstream, the
backfill daemon as a subprocess SIGKILLed at least three times and restarted, and writers using
the official client over REST and gRPC through the proxy (upserts, payload updates that move
points between targets, deletes by id and by filter) for the whole migration. At the end the
source and the six targets hold exactly what the writers' log says: 0 lost, 0 resurrected,
0 stale. A second test rolls back from every phase before ``complete`` with nothing lost.

Reuses the proxy process of ``tests/keyed_proxy.py`` and the daemon invocation of
``tests/test_backfill_kill.py``; the operator's steps go through the migration service.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from keyed_proxy import ROOT, _ready, _spawn
from switchyard.backfill.split_copier import SplitCopier  # noqa: F401  (imported: the daemon's copier)
from switchyard.proxy import registry
from switchyard.proxy.dataplane import split_level
from switchyard.proxy.dataplane.digest import content_of
from switchyard.proxy.dataplane.split_mirror import layout_of
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

A = ModelSpec(id="split-e2e-a", provider="hashing", model="a", dimensions=4)
TEXT = ModelSpec(id="split-e2e-text", provider="hashing", model="t", dimensions=8)
CODE = ModelSpec(id="split-e2e-code", provider="hashing", model="c", dimensions=16)
SOURCES = ("wiki", "news", "docs")
TYPES = ("text", "code")
SEED_EACH = 60  # points per (source, type)
KILLS = 3
WRITER_OPS = 400


def payload(pid: int, rng: random.Random, s: str | None = None, t: str | None = None) -> dict[str, Any]:
    s, t = s or rng.choice(SOURCES), t or rng.choice(TYPES)
    return {"source_title": s, "type": t, "doc_id": f"d{pid}", "text": f"{s} {t} {pid} {rng.random():.6f}"}


def vector(rng: random.Random) -> list[float]:
    return [rng.uniform(0.1, 1.0) for _ in range(4)]


@dataclass
class Log:
    """The writers' log: what the source must hold (id -> payload), as acknowledged."""

    expected: dict[int, dict[str, Any]] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, op: str) -> None:
        self.ops[op] = self.ops.get(op, 0) + 1


class Writer:
    """Writes through the proxy from a thread, alternating a REST and a gRPC official client."""

    def __init__(self, source: str, rest_url: str, grpc_port: int, log: Log, seed: int, first_id: int,
                 share: tuple[int, int] = (0, 1)) -> None:
        self.clients = [QdrantClient(url=rest_url, check_compatibility=False, timeout=60),
                        QdrantClient(url=rest_url, grpc_port=grpc_port, prefer_grpc=True,
                                     check_compatibility=False, timeout=60)]
        self.source, self.log, self.rng, self.next_id = source, log, random.Random(seed), first_id
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.first_id, self.share = first_id, share

    def owns(self, pid: int) -> bool:
        """Its own range, and its share of the seeded points: two writers never touch one id, so a
        set_payload never races the other writer's delete (Qdrant answers that with 404)."""
        k, n = self.share
        return self.first_id <= pid < self.first_id + 10_000 or (pid < 10_000 and pid % n == k)

    def run(self, max_ops: int, deadline: float) -> None:
        try:
            for i in range(max_ops):
                if self.stop.is_set() or time.monotonic() > deadline:
                    break
                self.step(self.clients[i % 2])
                time.sleep(0.005)
        finally:
            for c in self.clients:
                c.close()

    def step(self, client: QdrantClient) -> None:
        log, rng = self.log, self.rng
        with log.lock:
            ids = sorted(i for i in log.expected if self.owns(i))
        op = rng.choice(("upsert", "upsert", "move", "text", "delete", "delete_filter"))
        try:
            if op == "upsert" or not ids:
                self.next_id += 1
                pid, body = self.next_id, payload(self.next_id, rng)
                client.upsert(self.source, [models.PointStruct(id=pid, vector=vector(rng), payload=body)], wait=True)
                with log.lock:
                    log.expected[pid] = body
            elif op in ("move", "text"):
                pid = rng.choice(ids)
                change = {"type": rng.choice(TYPES)} if op == "move" else {"text": f"edited {rng.random():.6f}"}
                client.set_payload(self.source, change, points=[pid], wait=True)
                with log.lock:
                    if pid in log.expected:
                        log.expected[pid] = {**log.expected[pid], **change}
            elif op == "delete":
                pid = rng.choice(ids)
                client.delete(self.source, [pid], wait=True)
                with log.lock:
                    log.expected.pop(pid, None)
            else:
                pid = rng.choice(ids)
                flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=f"d{pid}"))])
                client.delete(self.source, models.FilterSelector(filter=flt), wait=True)
                with log.lock:
                    log.expected.pop(pid, None)
            log.count(op)
        except Exception as exc:  # noqa: BLE001 - classified below
            if "cannot read its migration state" in str(exc):
                log.count("refused_stale")  # fail closed before the source: not applied, log unchanged
            else:
                self.errors.append(f"{op}: {type(exc).__name__}: {str(exc)[:200]}")


@dataclass
class Env:
    client: AsyncQdrantClient
    store: StateStore
    svc: MigrationService
    source: str
    prefix: str
    rest_url: str
    grpc_port: int
    upstream: Any
    log: Log


def start_daemon(upstream: Any, mid: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    return subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url",
         upstream.rest_url, "--once", "--owner", f"split-{uuid.uuid4().hex[:6]}", "--batch-size", "16",
         "--concurrency", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
async def env(upstream: Any, prefix: str) -> AsyncIterator[Env]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=60)
    store = StateStore(client)
    source = f"{prefix}shared"
    await client.create_collection(source, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    for name in ("doc_id", "source_title", "type"):
        await client.create_payload_index(source, name, models.PayloadSchemaType.KEYWORD)
    for spec in (A, TEXT, CODE):
        if await store.get("model", spec.id) is None:
            await registry.register_model(store, spec)
    await registry.bind(store, client, Binding(source, A.id))
    rng, log = random.Random(3), Log()
    points, pid = [], 0
    for s in SOURCES:
        for t in TYPES:
            for _ in range(SEED_EACH):
                pid += 1
                body = payload(pid, rng, s, t)
                log.expected[pid] = body
                points.append(models.PointStruct(id=pid, vector=vector(rng), payload=body))
    await client.upsert(source, points, wait=True)
    up = types.SimpleNamespace(rest_url=upstream.rest_url, grpc_address=f"{upstream.grpc_host}:{upstream.grpc_port}")
    # a loaded machine reads the state slowly: a longer staleness bound, fewer fail-closed refusals
    proc = _spawn(up, "", ("--state-max-staleness", "15"))  # type: ignore[arg-type]
    try:
        rest_url, grpc_port = _ready(proc)
        svc = MigrationService(store, client, ServiceConfig(ack_timeout=30, heartbeat_ttl=3, max_active=1000))
        yield Env(client, store, svc, source, prefix, rest_url, grpc_port, upstream, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        await client.close()


async def plan(e: Env, tag: str) -> Migration:
    options = {"template": f"{e.prefix}{tag}" + "{source_title}_{type}", "vectors": {
        "default": {"model": TEXT.id}, "values": {f"{e.prefix}{tag}{s}_code": {"model": CODE.id} for s in SOURCES}}}
    report = await e.svc.plan(PlanRequest(logical=e.source, to_model="", kind="split", options=options))
    assert report["ok"], report["reasons"]
    return Migration.from_dict(report["migration"])


class Writers:
    """Two writer threads (seeds apart, id ranges apart) for the duration of a ``with``."""

    def __init__(self, e: Env, seed: int, seconds: float = 240.0) -> None:
        self.writers = [Writer(e.source, e.rest_url, e.grpc_port, e.log, seed + k, 10_000 * (2 * seed + k + 1),
                               share=(k, 2)) for k in range(2)]
        deadline = time.monotonic() + seconds
        self.threads = [threading.Thread(target=w.run, args=(WRITER_OPS, deadline), daemon=True)
                        for w in self.writers]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for w in self.writers:
            w.stop.set()
        for t in self.threads:
            t.join(120)

    @property
    def errors(self) -> list[str]:
        return [x for w in self.writers for x in w.errors]


async def check_final(e: Env, m: Migration) -> dict[str, int]:
    """Source and targets against the writers' log: lost / resurrected / stale, per target too."""
    src = {int(k): v for k, v in (await split_level._all_points(e.client, e.source)).items()}
    lost = [i for i in e.log.expected if i not in src]
    resurrected = [i for i in src if i not in e.log.expected]
    stale = [i for i, p in e.log.expected.items() if i in src and content_of(src[i]) != content_of(p)]
    layout = layout_of(m)
    diff = await split_level.verify(e.client, e.source, layout)
    targets = {n: {int(k): v for k, v in (await split_level._all_points(e.client, n)).items()}
               for n in layout.collections}
    for i, p in e.log.expected.items():
        home = layout.target_of(p)[0]
        if home is None or i not in targets[home]:
            lost.append(i)
        elif content_of(targets[home][i]) != content_of(p):
            stale.append(i)
    resurrected += [i for pts in targets.values() for i in pts if i not in e.log.expected]
    return {"lost": len(lost), "resurrected": len(resurrected), "stale": len(stale),
            "wrong_target": len(diff.wrong_target), "expected": len(e.log.expected)}


async def kill_daemon_runs(e: Env, mid: str, kills: int) -> int:
    """Start the daemon, SIGKILL it once it made progress, ``kills`` times; then run it to the end."""
    done = 0
    rng = random.Random(11)
    deadline = time.monotonic() + 240
    while done < kills and time.monotonic() < deadline:
        before = await copied(e.store, mid)
        proc = start_daemon(e.upstream, mid)
        try:
            while await copied(e.store, mid) == before and proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                done += 1
            proc.wait(10)
    last = start_daemon(e.upstream, mid)
    rc = await asyncio.to_thread(last.wait, 240)
    assert rc == 0, last.stderr.read() if last.stderr else rc
    return done


async def copied(store: StateStore, mid: str) -> int:
    return sum(int(x.data.get("copied") or 0) for x in await store.list("lease") if x.key.startswith(mid))


async def test_split_end_to_end_with_kills_and_both_protocols(env: Env) -> None:
    e = env
    m = await plan(e, "")
    m = await e.svc.transition(m.id, "start")
    assert m.phase == "dual_write"
    with Writers(e, seed=1) as writers:
        kills = await kill_daemon_runs(e, m.id, KILLS)
    assert kills >= KILLS
    assert e.log.ops.get("move", 0) > 0 and e.log.ops.get("delete_filter", 0) > 0, e.log.ops
    assert not writers.errors, writers.errors[:5]
    m = await e.svc.verify(m.id)
    assert m.phase == "verified", m.last_refusal
    with Writers(e, seed=5, seconds=20) as more:  # writes continue across the switches
        m = await e.svc.transition(m.id, "switch-reads")
        m = await e.svc.transition(m.id, "switch-writes")
    assert not more.errors, more.errors[:5]
    m = await e.svc.transition(m.id, "complete")
    assert m.phase == "complete"
    result = await check_final(e, m)
    assert result == {"lost": 0, "resurrected": 0, "stale": 0, "wrong_target": 0,
                      "expected": len(e.log.expected)}, result
    names = layout_of(m).collections
    held = {n: await split_level._all_points(e.client, n) for n in names}
    await e.svc.cleanup(m.id, yes=True)  # the source goes; the targets are what the log says
    assert not await e.client.collection_exists(e.source)
    assert {n: await split_level._all_points(e.client, n) for n in names} == held
    assert sum(len(p) for p in held.values()) == len(e.log.expected)


async def test_split_rollback_from_every_phase_before_complete(env: Env) -> None:
    e = env
    # every phase's way back, each walk under writers: cancel from planned, from dual_write, and
    # the last walk out of writes_switched, out of reads_switched, then cancel from verified (a
    # walk cancelling straight after verify, or after reads alone were switched and back, takes
    # no transition the last one does not, and cost a daemon run each)
    walks = (["cancel"], ["start", "cancel"],
             ["start", "verify", "switch-reads", "switch-writes", "switch-writes-back", "switch-reads-back",
              "cancel"])
    for k, walk in enumerate(walks):
        m = await plan(e, f"r{k}_")
        with Writers(e, seed=20 + k, seconds=30) as writers:
            for step in walk:
                if step == "verify":
                    await kill_daemon_runs(e, m.id, 0)
                    m = await e.svc.verify(m.id)
                    assert m.phase == "verified", m.last_refusal
                else:
                    m = await e.svc.transition(m.id, step)
        assert m.phase == "cancelled", (walk, m.phase)
        assert not writers.errors, writers.errors[:5]
        src = await split_level._all_points(e.client, e.source)
        assert {int(i) for i in src} == set(e.log.expected), walk  # nothing lost, nothing resurrected
        assert all(content_of(src[str(i)]) == content_of(p) for i, p in e.log.expected.items()), walk

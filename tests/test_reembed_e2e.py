"""Acceptance of the ``reembed`` kind (a new collection with model B) on real processes, as the
other kinds have it: the embedded upstream (``upstream_process``), a proxy process
(``keyed_proxy``), backfill daemons as subprocesses SIGKILLed and restarted
(``test_backfill_kill``), and the official qdrant-client over REST and gRPC writing through the
proxy for the whole migration: upserts (model A's raw vector, or an inference object the proxy
embeds; model B's raw vector once writes are switched), payload updates, deletes by id and by
filter.

- the whole migration (start, backfill with three kills, verify, switch reads, switch writes,
  complete, cleanup): the logical name then holds exactly the writer's log in model B (content,
  B's vector of the text, B's metadata): 0 lost, 0 resurrected, 0 stale;
- rollback from every phase before ``complete``: the source holds exactly the writer's log in
  model A, the writes taken by the target after ``switch-writes`` mirrored back included.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, models

from test_backfill_kill import copied, start as start_daemon
from test_named_vector_e2e import LogWriter, Stack, dump, embed, payload_of, start_writer
from test_named_vector_e2e import stack as stack  # noqa: F401 - the module's fixture: upstream and proxy processes
from switchyard.backfill.daemon import Daemon
from switchyard.backfill.settings import DaemonConfig
from switchyard.proxy import registry
from switchyard.proxy.intercept.planner import metadata_for
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_MODEL_ID, Binding
from switchyard.proxy.state.store import StateStore

pytestmark = pytest.mark.embedded_only  # it starts its own upstream process

A = ModelSpec(id="re-a", provider="hashing", model="re-a", dimensions=4)
B = ModelSpec(id="re-b", provider="hashing", model="re-b", dimensions=8)
FAST = DaemonConfig(batch_size=50, concurrency=1, lease_ttl=3.0, refresh=0.2, int_partitions=2,
                    progress_interval=0.5, idle_poll=0.1)
KILLS = 3


async def seed(stack: Stack, name: str, n: int) -> tuple[str, StateStore, MigrationService, AsyncQdrantClient]:
    """Collection ``<name>_v1`` (unnamed vector, model A, bound) under alias ``<name>``."""
    client = stack.admin()
    store = StateStore(client)
    source = f"{name}_v1"
    await client.create_collection(source, vectors_config=A.vector_params())
    await client.update_collection_aliases(change_aliases_operations=[models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=name))])
    for spec in (A, B):
        await registry.register_model(store, spec, replace=True)
    await registry.bind(store, client, Binding(name, A.id))
    payloads = [payload_of(i, 0) for i in range(n)]
    vectors = embed(A, [p["text"] for p in payloads])
    stamp = metadata_for(A)  # as if written through the proxy
    for k in range(0, n, 500):
        await client.upsert(source, [models.PointStruct(id=i, vector=vectors[i].tolist(), payload={**payloads[i], **stamp})
                                     for i in range(k, min(n, k + 500))], wait=True)
    svc = MigrationService(store, client, ServiceConfig(ack_timeout=20.0, max_active=1000))
    return source, store, svc, client


async def plan(svc: MigrationService, name: str, throttle: float | None = None) -> tuple[str, str]:
    report = await svc.plan(PlanRequest(name, B.id, throttle=throttle))
    assert report["ok"], report["reasons"]
    m = report["migration"]
    assert m["kind"] == "reembed"
    return str(m["id"]), str(m["target"])


@dataclass
class Writer(LogWriter):
    """The reembed kind's writer. ``model`` is the model whose raw vectors the application
    sends: A until writes are switched, B from then on (the proxy embeds the other model's
    vector for the mirrored side); some upserts send a document the proxy embeds."""

    model: ModelSpec = A
    retries: ClassVar[int] = 30

    def points_for(self, ids: list[int], payloads: dict[int, dict[str, Any]]) -> Callable[[], list[models.PointStruct]]:
        inference = self.rng.random() < 0.3

        def points() -> list[models.PointStruct]:  # built at every attempt: the model may have switched
            model = self.model
            return [models.PointStruct(
                id=i, payload=payloads[i],
                vector=models.Document(text=payloads[i]["text"], model=model.id) if inference  # type: ignore[arg-type]
                else embed(model, [payloads[i]["text"]])[0].tolist()) for i in ids]
        return points


async def differences(client: AsyncQdrantClient, collection: str, expected: dict[int, dict[str, Any]],
                      spec: ModelSpec) -> dict[str, list[int]]:
    """lost / resurrected / stale ids of ``collection`` against the writer's log: a point is
    stale when its content, its vector (``spec``'s embedding of its text) or its model
    metadata differ."""
    got = await dump(client, collection)
    out: dict[str, list[int]] = {"lost": sorted(set(expected) - set(got)),
                                 "resurrected": sorted(set(got) - set(expected)), "stale": []}
    common = sorted(set(got) & set(expected))
    wants = embed(spec, [expected[i]["text"] for i in common]) if common else []
    for i, want in zip(common, wants):
        payload = got[i].payload or {}
        content = {k: v for k, v in payload.items() if k in ("text", "doc_id", "v", "slot")}
        vector = got[i].vector
        ok = (content == expected[i] and payload.get(META_MODEL_ID) == spec.id
              and isinstance(vector, list) and np.allclose(np.asarray(vector), want, atol=1e-5))
        if not ok:
            out["stale"].append(i)
    return out


async def test_whole_migration_under_writer_with_daemon_kills(stack: Stack, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    n = 1500
    name = f"re_{uuid.uuid4().hex[:6]}"
    source, store, svc, client = await seed(stack, name, n)
    writer = Writer(stack, name, ids=n + 300, expected={i: payload_of(i, 0) for i in range(n)})
    thread: threading.Thread | None = None
    try:
        mid, target = await plan(svc, name, throttle=150)
        assert (await client.get_collection(target)).config.params.vectors.size == B.dimensions  # type: ignore[union-attr]
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

        m = await svc.verify(mid)
        assert m.phase == "verified", m.last_refusal
        await svc.transition(mid, "switch-reads")
        await svc.transition(mid, "switch-writes")
        writer.model = B  # clients now send model B's vectors; the proxy mirrors A's to the source
        await asyncio.sleep(3.0)
        await svc.transition(mid, "complete")
        await asyncio.sleep(1.0)  # the writer keeps writing to the target alone
        writer.stop.set()
        await asyncio.to_thread(thread.join, 60)
        assert writer.error is None, repr(writer.error)
        assert all(writer.ops.get(k, 0) > 0 for k in ("upsert", "set_payload", "delete_ids", "delete_filter")), \
            writer.ops
        aliases = {a.alias_name: a.collection_name for a in (await client.get_aliases()).aliases}
        assert aliases[name] == target
        diff = await differences(client, target, writer.expected, B)
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}

        await svc.cleanup(mid, yes=True)
        assert not await client.collection_exists(source)
        diff = await differences(client, name, writer.expected, B)
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}
        print(f"writer ops {writer.ops}, kills {kills}, points {len(writer.expected)}")
    finally:
        writer.stop.set()
        if thread is not None:
            thread.join(60)
        writer.close()
        await client.close()


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
    name = f"rer_{uuid.uuid4().hex[:6]}"
    source, store, svc, client = await seed(stack, name, n)
    writer = Writer(stack, name, ids=n + 50, seed=sum(map(ord, phase)),
                    expected={i: payload_of(i, 0) for i in range(n)})
    try:
        mid, _ = await plan(svc, name)
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
                writer.model = B
        for _ in range(15):
            writer.step()
        for step in [*BACK.get(phase, []), "cancel"]:
            await svc.transition(mid, step)
            if step == "switch-writes-back":
                writer.model = A  # the source is the write primary again
            for _ in range(5):
                writer.step()
        assert (await svc.get(mid)).phase == "cancelled"
        aliases = {a.alias_name: a.collection_name for a in (await client.get_aliases()).aliases}
        assert aliases[name] == source
        assert writer.ops.get("upsert", 0) > 0, writer.ops
        diff = await differences(client, source, writer.expected, A)
        assert diff == {"lost": [], "resurrected": [], "stale": []}, {k: v[:10] for k, v in diff.items()}
    finally:
        writer.close()
        await client.close()

"""Issue 13's end-to-end chain on real processes (an upstream process, a proxy, the official
client writing through the proxy, ``switchyard schema`` subprocesses):

1. create a collection with payload indexes, bound to model A; 2. add a named vector for model
B and fill it (an online migration of kind ``named-vector``: dual write, backfill, verify,
switch, complete); 3. change HNSW and quantization, plus a ``run_python`` data fix; 4. drop the
old vector (snapshot first). ``schema upgrade head`` runs while a
writer updates payloads and deletes points through the proxy; status then shows every step,
no drift and nothing pending, and the writer's log matches the collection (0 lost, 0
resurrected, 0 stale). ``schema downgrade 1`` restores the layout and the dropped vector's
values from the snapshot: the collection answers the same queries as before the upgrade.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from typing import Any

from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))
from schema_fixtures import Chain, chain, stack  # noqa: E402,F401

from switchyard.proxy.modelspec import ModelSpec  # noqa: E402

N, POOL_A = 200, 150  # ids < POOL_A get payload updates; the rest may be deleted
QUERIES = [[1.0, 0.2, 0.0, 0.1], [0.0, 1.0, 0.5, 0.0], [0.3, 0.3, 0.9, 0.2], [0.1, 0.0, 0.2, 1.0]]


def vec(i: int) -> list[float]:
    r = random.Random(i)
    return [r.uniform(-1, 1) for _ in range(4)]


FIX = '''
def fix(ctx):
    """a data fix: mark every point as checked (idempotent)"""
    c = ctx.client()
    c.set_payload(P + "docs", {"checked": True}, points=__import__("qdrant_client").models.Filter(), wait=True)
'''

A = ModelSpec(id="accept-a", provider="hashing", model="accept-a", dimensions=4)
B = ModelSpec(id="accept-b", provider="hashing", model="accept-b", dimensions=6)


def register_models(url: str) -> None:
    import asyncio

    from switchyard.proxy.registry import register_model
    from switchyard.proxy.state.store import StateStore

    async def go() -> None:
        store = StateStore.connect(url)
        try:
            for spec in (A, B):
                if await store.get("model", spec.id) is None:
                    await register_model(store, spec)
        finally:
            await store.close()
    asyncio.run(go())


def write_chain(chain: Chain) -> None:
    chain.write("1", None, """
        op.create_collection(P + "docs", {"old": {"size": 4, "distance": "Cosine"}},
                             hnsw_config={"m": 16, "ef_construct": 100},
                             indexes={"doc": "integer", "tag": "keyword"})
        op.bind_model(P + "docs", "accept-a", vector="old")
    """, 'op.drop_collection(P + "docs")', message="create docs with payload indexes")
    chain.write("2", "1", """
        op.add_named_vector(P + "docs", "new", size=6, distance="Cosine", model="accept-b", text_field="text")
    """, 'op.bind_model(P + "docs", "accept-a", vector="old")\nop.drop_named_vector(P + "docs", "new")',
                message="add the new model's vector and fill it (online)")
    chain.write("3", "2", """
        op.change_hnsw(P + "docs", m=32, ef_construct=200)
        op.change_quantization(P + "docs", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}})
        op.run_python(fix, P + "docs")
    """, 'op.change_hnsw(P + "docs", m=16, ef_construct=100)\nop.change_quantization(P + "docs", None)',
                message="tune HNSW and quantization")
    path = chain.folder / "3.py"
    path.write_text(FIX + path.read_text())
    chain.write("4", "3", 'op.drop_named_vector(P + "docs", "old")',
                'op.add_named_vector(P + "docs", "old", size=4, distance="Cosine")',
                message="drop the old vector")


class Writer(threading.Thread):
    """Payload updates and deletes through the proxy; logs only what was acknowledged."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(daemon=True)
        self.client = QdrantClient(url=url, check_compatibility=False, timeout=60)
        self.name, self.stop = name, threading.Event()
        self.value: dict[int, int] = {}
        self.deleted: set[int] = set()
        self.errors: list[str] = []
        self.ops = 0

    def run(self) -> None:
        rng = random.Random(7)
        for k in range(1, 20000):  # bounded
            if self.stop.is_set():
                return
            try:
                if rng.random() < 0.85:
                    i = rng.randrange(POOL_A)
                    self.client.set_payload(self.name, {"v": k}, points=[i], wait=True)
                    self.value[i] = k
                else:
                    i = rng.randrange(POOL_A, N)
                    self.client.delete(self.name, models.PointIdsList(points=[i]), wait=True)
                    self.deleted.add(i)
                self.ops += 1
            except Exception as exc:  # a refused write is not logged as applied
                self.errors.append(repr(exc))
            self.stop.wait(0.01)


def check_log(w: Writer, client: QdrantClient, name: str) -> tuple[int, int, int]:
    points = {p.id: p.payload for p in client.scroll(name, limit=1000)[0]}
    lost = sum(1 for i in range(N) if i not in w.deleted and i not in points)
    resurrected = sum(1 for i in w.deleted if i in points)
    stale = sum(1 for i, v in w.value.items() if (points.get(i) or {}).get("v") != v)
    return lost, resurrected, stale


def answers(client: QdrantClient, name: str) -> list[list[tuple[Any, float]]]:
    flt = models.Filter(must=[models.FieldCondition(key="doc", range=models.Range(lt=POOL_A))])
    return [[(p.id, round(p.score, 4)) for p in client.query_points(
        name, query=q, using="old", query_filter=flt, limit=10,
        search_params=models.SearchParams(exact=True)).points] for q in QUERIES]


def test_four_revisions_online_then_downgrade_from_snapshot(chain: Chain) -> None:
    register_models(chain.stack.upstream_url)
    write_chain(chain)
    name = chain.prefix + "docs"
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    first = chain.run("upgrade", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    direct.upsert(name, [models.PointStruct(id=i, vector={"old": vec(i)}, payload={"doc": i, "tag": f"t{i % 5}",
                                                                                "text": f"document {i}"})
                         for i in range(N)], wait=True)
    before = answers(direct, name)
    indexes_at_1 = set(direct.get_collection(name).payload_schema or {})
    assert {"doc", "tag"} <= indexes_at_1  # plus the binding's metadata indexes
    dry = chain.run("upgrade", "head", "--dry-run")
    assert dry.returncode == 0 and "DELETE /collections/" + name + "/vectors/old" in dry.stdout
    assert chain.status()["revision"] == "1"

    writer = Writer(chain.stack.proxy_url, name)
    writer.start()
    try:
        up = chain.run("upgrade", "head")
    finally:
        writer.stop.set()
        writer.join(60)
    assert up.returncode == 0, up.stdout + up.stderr
    assert writer.ops > 0 and writer.errors == []
    assert check_log(writer, direct, name) == (0, 0, 0)

    st = chain.status()
    assert st["revision"] == "4" and st["pending"] == [] and st["run"] is None
    (coll,) = st["collections"]
    assert coll["drift"] == []
    steps = {h["step"] for h in coll["history"] if "step" in h}
    assert {"1:00:create_collection", "1:01:create_index", "1:02:create_index", "1:03:bind_model",
            "2:00:add_named_vector", "3:00:change_hnsw", "3:01:change_quantization",
            "3:02:run_python", "4:s0:snapshot", "4:00:drop_named_vector"} <= steps
    (rev2,) = [h for h in coll["history"] if h.get("revision") == "2" and h.get("direction") == "upgrade"]
    assert len(rev2["migrations"]) == 1 and st["migrations"] == []
    assert coll["config"]["model"] == "accept-b"
    assert [s["revision"] for s in coll["snapshots"]] == ["4"]
    info = direct.get_collection(name)
    assert set(info.config.params.vectors) == {"new"}  # type: ignore[arg-type]
    assert info.config.hnsw_config.m == 32 and info.config.quantization_config is not None
    alive = direct.scroll(name, limit=1000, with_vectors=True)[0]
    assert alive and all(len((p.vector or {}).get("new", [])) == 6 and (p.payload or {}).get("checked")
                         for p in alive)

    down = chain.run("downgrade", "1")
    assert down.returncode == 0, down.stdout + down.stderr
    st = chain.status()
    assert st["revision"] == "1" and st["pending"] == ["2", "3", "4"]
    assert st["collections"][0]["drift"] == []
    info = direct.get_collection(name)
    assert set(info.config.params.vectors) == {"old"}  # type: ignore[arg-type]
    assert info.config.hnsw_config.m == 16 and not info.config.quantization_config
    assert set(info.payload_schema or {}) == indexes_at_1
    assert st["collections"][0]["config"]["model"] == "accept-a"
    assert answers(direct, name) == before  # the old vector's values came back from the snapshot
    assert check_log(writer, direct, name) == (0, 0, 0)

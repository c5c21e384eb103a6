"""Issue 13's end-to-end chain on real processes (an upstream process, a proxy, the official
client writing through the proxy, ``switchyard schema`` subprocesses):

1. create a collection with payload indexes; 2. add a named vector and fill it; 3. change HNSW
and quantization; 4. drop the old vector (snapshot first). ``schema upgrade head`` runs while a
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

N, POOL_A = 200, 150  # ids < POOL_A get payload updates; the rest may be deleted
QUERIES = [[1.0, 0.2, 0.0, 0.1], [0.0, 1.0, 0.5, 0.0], [0.3, 0.3, 0.9, 0.2], [0.1, 0.0, 0.2, 1.0]]


def vec(i: int) -> list[float]:
    r = random.Random(i)
    return [r.uniform(-1, 1) for _ in range(4)]


FILL = '''
def fill(ctx):
    """copies each point's old vector, reversed, into "new" (idempotent)"""
    c = ctx.client()
    offset = None
    while True:
        points, offset = c.scroll(P + "docs", limit=128, offset=offset, with_vectors=["old"])
        from qdrant_client import models
        c.update_vectors(P + "docs", [models.PointVectors(id=p.id, vector={"new": list(reversed(p.vector["old"]))})
                                      for p in points if "old" in (p.vector or {})], wait=True)
        if offset is None:
            return
'''


def write_chain(chain: Chain) -> None:
    chain.write("1", None, """
        op.create_collection(P + "docs", {"old": {"size": 4, "distance": "Cosine"}},
                             hnsw_config={"m": 16, "ef_construct": 100},
                             indexes={"doc": "integer", "tag": "keyword"})
    """, 'op.drop_collection(P + "docs")', message="create docs with payload indexes")
    chain.write("2", "1", """
        op.add_named_vector(P + "docs", "new", size=4, distance="Cosine")
        op.run_python(fill, P + "docs")
    """, 'op.drop_named_vector(P + "docs", "new")', message="add and fill the new vector")
    path = chain.folder / "2.py"
    path.write_text(FILL + path.read_text())
    chain.write("3", "2", """
        op.change_hnsw(P + "docs", m=32, ef_construct=200)
        op.change_quantization(P + "docs", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}})
    """, 'op.change_hnsw(P + "docs", m=16, ef_construct=100)\nop.change_quantization(P + "docs", None)',
                message="tune HNSW and quantization")
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
    write_chain(chain)
    name = chain.prefix + "docs"
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    first = chain.run("upgrade", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    direct.upsert(name, [models.PointStruct(id=i, vector={"old": vec(i)}, payload={"doc": i, "tag": f"t{i % 5}"})
                         for i in range(N)], wait=True)
    before = answers(direct, name)
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
    assert {"1:00:create_collection", "1:01:create_index", "1:02:create_index",
            "2:00:add_named_vector", "2:01:run_python", "3:00:change_hnsw",
            "3:01:change_quantization", "4:s0:snapshot", "4:00:drop_named_vector"} <= steps
    assert [s["revision"] for s in coll["snapshots"]] == ["4"]
    info = direct.get_collection(name)
    assert set(info.config.params.vectors) == {"new"}  # type: ignore[arg-type]
    assert info.config.hnsw_config.m == 32 and info.config.quantization_config is not None
    got = direct.retrieve(name, [0], with_vectors=True)[0].vector
    assert got is not None and [round(x, 4) for x in got["new"]] == [round(x, 4) for x in reversed(
        direct_norm(vec(0)))]

    down = chain.run("downgrade", "1")
    assert down.returncode == 0, down.stdout + down.stderr
    st = chain.status()
    assert st["revision"] == "1" and st["pending"] == ["2", "3", "4"]
    assert st["collections"][0]["drift"] == []
    info = direct.get_collection(name)
    assert set(info.config.params.vectors) == {"old"}  # type: ignore[arg-type]
    assert info.config.hnsw_config.m == 16 and not info.config.quantization_config
    assert set(info.payload_schema or {}) == {"doc", "tag"}
    assert answers(direct, name) == before  # the old vector's values came back from the snapshot
    assert check_log(writer, direct, name) == (0, 0, 0)


def direct_norm(v: list[float]) -> list[float]:
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]

"""A revision whose operation runs as an online migration: ``bind_model`` (direct, a state-store
record) then ``add_named_vector(..., model=B)``, which plans a migration of kind
``named-vector`` through the proxy's admin API and drives it to ``complete`` (start, backfill in
the ``schema upgrade`` process, verify, switch reads, switch writes, complete). The migration id
is in the collection's history; every point ends with B's vector; the binding follows to B."""

from __future__ import annotations

import os
import sys

from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))
from schema_fixtures import Chain, chain, stack  # noqa: E402,F401

from switchyard.proxy.modelspec import ModelSpec  # noqa: E402

A = ModelSpec(id="schema-a", provider="hashing", model="schema-a", dimensions=4)
B = ModelSpec(id="schema-b", provider="hashing", model="schema-b", dimensions=8)


def _register(url: str) -> None:
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


def test_add_named_vector_with_a_model_runs_as_a_named_vector_migration(chain: Chain) -> None:
    _register(chain.stack.upstream_url)
    name = chain.prefix + "docs"
    chain.write("1", None, f"""
        op.create_collection({name!r}, {{"a": {{"size": 4, "distance": "Cosine"}}}}, indexes={{"doc_id": "keyword"}})
        op.bind_model({name!r}, "schema-a", vector="a")
    """, f'op.drop_collection({name!r})')
    chain.write("2", "1", f'op.add_named_vector({name!r}, "b", size=8, distance="Cosine", model="schema-b", text_field="text")',
                f'op.drop_named_vector({name!r}, "b")')
    assert (r := chain.run("upgrade", "1")).returncode == 0, r.stdout + r.stderr
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    direct.upsert(name, [models.PointStruct(id=i, vector={"a": [1.0, float(i), 0.0, 1.0]},
                                            payload={"text": f"document {i}", "doc_id": f"d{i}"})
                         for i in range(30)], wait=True)
    plan = chain.run("upgrade", "head", "--plan-json")
    assert '"kind": "named-vector"' in plan.stdout
    up = chain.run("upgrade", "head", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    st = chain.status()
    assert st["revision"] == "2" and st["pending"] == [] and st["migrations"] == []
    (coll,) = st["collections"]
    assert coll["drift"] == []
    (event,) = [h for h in coll["history"] if h.get("revision") == "2" and h.get("direction") == "upgrade"]
    assert len(event["migrations"]) == 1
    points = direct.scroll(name, limit=100, with_vectors=True)[0]
    assert len(points) == 30 and all(len((p.vector or {}).get("b", [])) == 8 for p in points)
    assert coll["config"]["model"] == "schema-b"


def test_through_reads_switched_stops_then_downgrade_rolls_the_migration_back(chain: Chain) -> None:
    _register(chain.stack.upstream_url)
    name = chain.prefix + "docs"
    chain.write("1", None, f"""
        op.create_collection({name!r}, {{"a": {{"size": 4, "distance": "Cosine"}}}}, indexes={{"doc_id": "keyword"}})
        op.bind_model({name!r}, "schema-a", vector="a")
    """, f'op.drop_collection({name!r})')
    chain.write("2", "1", f'op.add_named_vector({name!r}, "b", size=8, distance="Cosine", model="schema-b", text_field="text")',
                f'op.bind_model({name!r}, "schema-a", vector="a")\nop.drop_named_vector({name!r}, "b")')
    assert (r := chain.run("upgrade", "1")).returncode == 0, r.stdout + r.stderr
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    direct.upsert(name, [models.PointStruct(id=i, vector={"a": [1.0, float(i), 0.0, 1.0]},
                                            payload={"text": f"document {i}", "doc_id": f"d{i}"})
                         for i in range(10)], wait=True)
    paused = chain.run("upgrade", "head", "--through", "reads-switched", timeout=600)
    assert paused.returncode == 1 and "reads_switched (--through reads-switched)" in paused.stderr
    st = chain.status()
    assert st["revision"] == "1" and [m["phase"] for m in st["migrations"]] == ["reads_switched"]
    assert st["run"]["current"]["step"] == "2:00:add_named_vector"

    down = chain.run("downgrade", "1", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "rolling back (switch_reads_back)" in down.stdout and "cancelled" in down.stdout
    st = chain.status()
    assert st["revision"] == "1" and st["run"] is None and st["migrations"] == []
    assert st["collections"][0]["drift"] == [] and st["collections"][0]["config"]["model"] == "schema-a"
    vectors = direct.get_collection(name).config.params.vectors
    assert isinstance(vectors, dict) and set(vectors) == {"a"}

"""A revision whose operation runs as an online migration: ``bind_model`` (direct, a state-store
record) then ``add_named_vector(..., model=B)``, which plans a migration of kind
``named-vector`` through the proxy's admin API and drives it to ``complete`` (start, backfill in
the ``schema upgrade`` process, verify, switch reads, switch writes, complete). The migration id
is in the collection's history; every point ends with B's vector; the binding follows to B.
``change_model`` runs as a re-embedding migration into a new collection (the alias follows at
complete) and ``split_collection`` as a split, one target per value."""

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


def test_change_model_runs_as_a_reembed_migration_and_the_alias_follows(chain: Chain) -> None:
    _register(chain.stack.upstream_url)
    alias, v1, v2 = chain.prefix + "kb", chain.prefix + "kb_v1", chain.prefix + "kb_v2"
    chain.write("1", None, f"""
        op.create_collection({v1!r}, {{"size": 4, "distance": "Cosine"}}, indexes={{"doc_id": "keyword"}})
        op.rename_via_alias({alias!r}, {v1!r})
        op.bind_model({alias!r}, "schema-a")
    """, f'op.drop_collection({v1!r})')
    chain.write("2", "1", f'op.change_model({alias!r}, "schema-b", target={v2!r}, text_field="text")',
                f'op.change_model({alias!r}, "schema-a", target={v1 + "_back"!r}, text_field="text")')
    assert (r := chain.run("upgrade", "1")).returncode == 0, r.stdout + r.stderr
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    direct.upsert(v1, [models.PointStruct(id=i, vector=[1.0, float(i), 0.0, 1.0],
                                          payload={"text": f"document {i}", "doc_id": f"d{i}"})
                       for i in range(25)], wait=True)
    plan = chain.run("upgrade", "head", "--plan-json")
    assert '"to_model": "schema-b"' in plan.stdout and '"mode": "migration"' in plan.stdout, plan.stdout
    up = chain.run("upgrade", "head", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    st = chain.status()
    assert st["revision"] == "2" and st["pending"] == [] and st["migrations"] == []
    (event,) = [h for c in st["collections"] for h in c["history"]
                if h.get("revision") == "2" and h.get("direction") == "upgrade"]
    assert len(event["migrations"]) == 1
    # complete swapped the alias to the new collection, which holds every point with B's vectors
    (bound,) = [a.collection_name for a in direct.get_aliases().aliases if a.alias_name == alias]
    assert bound == v2
    points = direct.scroll(v2, limit=100, with_vectors=True, with_payload=True)[0]
    assert sorted(int(p.id) for p in points) == list(range(25))
    assert all(len(p.vector or []) == 8 and (p.payload or {}).get("doc_id") == f"d{p.id}" for p in points)


def test_split_collection_runs_as_a_split_migration(chain: Chain) -> None:
    _register(chain.stack.upstream_url)
    name = chain.prefix + "shared"
    chain.write("1", None, f"""
        op.create_collection({name!r}, {{"size": 4, "distance": "Cosine"}}, indexes={{"kind": "keyword"}})
        op.bind_model({name!r}, "schema-a")
    """, f'op.drop_collection({name!r})')
    chain.write("2", "1", f'op.split_collection({name!r}, by="kind", template="{chain.prefix}{{kind}}")')
    assert (r := chain.run("upgrade", "1")).returncode == 0, r.stdout + r.stderr
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    direct.upsert(name, [models.PointStruct(id=i, vector=[1.0, float(i), 0.0, 1.0],
                                            payload={"text": f"doc {i}", "kind": "faq" if i % 2 else "guide"})
                         for i in range(20)], wait=True)
    plan = chain.run("upgrade", "head", "--plan-json")
    assert '"kind": "split"' in plan.stdout, plan.stdout
    up = chain.run("upgrade", "head", timeout=600)
    st = chain.status()
    assert up.returncode == 0, up.stdout + up.stderr
    assert st["revision"] == "2" and st["pending"] == [] and st["migrations"] == []
    # one target per value of `kind`, each holding exactly that value's points
    for kind, parity in (("faq", 1), ("guide", 0)):
        points = direct.scroll(chain.prefix + kind, limit=100, with_payload=True)[0]
        assert sorted(int(p.id) for p in points) == [i for i in range(20) if i % 2 == parity], kind
        assert "kind" in (direct.get_collection(chain.prefix + kind).payload_schema or {})

"""``switchyard schema`` on real processes: drift refuses an upgrade until stamped or undone;
SIGKILL of ``schema upgrade`` at random moments, rerun, ends at head with nothing applied
twice; downgrade undoes revisions."""

from __future__ import annotations

import os
import random
import signal
import time
import sys
from typing import Any

from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))
from schema_fixtures import Chain, chain, stack  # noqa: E402,F401


def client(chain: Chain) -> QdrantClient:
    return QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)


def test_drift_is_reported_and_refuses_upgrade_until_stamped_or_undone(chain: Chain) -> None:
    chain.write("1", None, """
        op.create_collection(P + "docs", {"v": {"size": 4, "distance": "Cosine"}},
                             hnsw_config={"m": 16, "ef_construct": 100}, indexes={"kind": "keyword"})
    """, 'op.drop_collection(P + "docs")')
    done = chain.run("upgrade", "head")
    assert done.returncode == 0, done.stdout + done.stderr
    st = chain.status()
    assert st["revision"] == "1" and st["pending"] == []
    assert [c["drift"] for c in st["collections"]] == [[]]

    c = client(chain)
    name = chain.prefix + "docs"
    c.update_collection(name, hnsw_config=models.HnswConfigDiff(m=8))  # by hand, on the upstream
    st = chain.status()
    assert st["collections"][0]["drift"] == ["hnsw.m: 16 -> 8"]
    human = chain.run("status")
    assert "drift:" in human.stdout and "hnsw.m: 16 -> 8" in human.stdout

    chain.write("2", "1", 'op.create_index(P + "docs", "n", "integer")', 'op.drop_index(P + "docs", "n")')
    refused = chain.run("upgrade", "head")
    assert refused.returncode == 1
    assert "drift" in refused.stderr and "hnsw.m: 16 -> 8" in refused.stderr
    assert "n" not in (c.get_collection(name).payload_schema or {})  # nothing applied
    assert chain.status()["revision"] == "1"

    c.update_collection(name, hnsw_config=models.HnswConfigDiff(m=16))  # undone by hand
    assert chain.status()["collections"][0]["drift"] == []
    c.update_collection(name, hnsw_config=models.HnswConfigDiff(m=8))  # and again: stamp it
    stamped = chain.run("stamp")
    assert stamped.returncode == 0, stamped.stderr
    assert chain.status()["collections"][0]["drift"] == []
    done = chain.run("upgrade", "head")
    assert done.returncode == 0, done.stdout + done.stderr
    st = chain.status()
    assert st["revision"] == "2" and st["pending"] == [] and st["collections"][0]["drift"] == []
    assert "n" in (c.get_collection(name).payload_schema or {})
    assert c.get_collection(name).config.hnsw_config.m == 8  # the accepted value stays


FIELDS = [f"f{i}" for i in range(8)]


def _kill_chain(chain: Chain) -> None:
    idx = "\n".join(f'op.create_index(P + "docs", "{f}", "keyword")' for f in FIELDS)
    chain.write("1", None, f'op.create_collection(P + "docs", {{"v": {{"size": 4, "distance": "Cosine"}}}})\n{idx}',
                'op.drop_collection(P + "docs")')
    chain.write("2", "1", """
        op.add_named_vector(P + "docs", "w", size=4, distance="Dot")
        op.create_index(P + "docs", "g0", "integer")
        op.create_index(P + "docs", "g1", "integer")
    """, 'op.drop_index(P + "docs", "g1")\nop.drop_index(P + "docs", "g0")')
    chain.write("3", "2", """
        op.change_hnsw(P + "docs", m=24, ef_construct=128)
        op.change_quantization(P + "docs", {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}})
    """, 'op.change_hnsw(P + "docs", m=16, ef_construct=100)\nop.change_quantization(P + "docs", None)')
    drops = "\n".join(f'op.drop_index(P + "docs", "{f}")' for f in FIELDS[:4])
    chain.write("4", "3", f'{drops}\nop.rename_via_alias(P + "live", P + "docs")',
                "\n".join(f'op.create_index(P + "docs", "{f}", "keyword")' for f in FIELDS[:4]))


def test_sigkill_at_random_moments_then_rerun_ends_at_head_nothing_applied_twice(chain: Chain) -> None:
    _kill_chain(chain)
    rng = random.Random(int(os.environ.get("SWITCHYARD_SCHEMA_KILL_SEED", "13")))
    kills = 0
    for _attempt in range(12):  # bounded: each attempt kills at a random moment of a random step
        proc = chain.popen("upgrade", "head")
        assert proc.stdout is not None
        wanted = rng.randint(1, 4)
        seen = 0
        for line in proc.stdout:
            if line.startswith("  ") and "[" in line:  # a step is starting
                seen += 1
                if seen == wanted:
                    # a random wall-clock moment from the step's start on: inside its calls to the
                    # upstream or the state store, between them, or in a later step
                    time.sleep(rng.uniform(0.0, 0.04))  # steps take tens of ms here
                    os.killpg(proc.pid, signal.SIGKILL)
                    kills += 1
                    break
        rc = proc.wait(60)
        proc.stdout.close()
        if seen < wanted:
            assert rc == 0  # ran to the end before the chosen moment
            break
        assert rc == -signal.SIGKILL
        if kills >= 6:
            break
    assert kills >= 5
    done = chain.run("upgrade", "head")
    assert done.returncode == 0, done.stdout + done.stderr
    st = chain.status()
    assert st["revision"] == "4" and st["pending"] == [] and st["run"] is None
    assert [c["drift"] for c in st["collections"]] == [[]]
    last = st["runs"][-1]
    assert len(last["done"]) == len(set(last["done"])) == 1 + len(FIELDS) + 3 + 2 + 5
    # a step whose call reached the upstream is never sent again: the history records each
    # step as sent at most once, and a second create / add / drop would have failed the run
    hist = st["collections"][0]["history"]
    sent: dict[str, int] = {}
    for event in hist:
        if event.get("sent"):
            sent[event["step"]] = sent.get(event["step"], 0) + 1
    assert sent and max(sent.values()) == 1, sent
    info = client(chain).get_collection(chain.prefix + "docs")
    assert set(info.payload_schema or {}) == {*FIELDS[4:], "g0", "g1"}
    assert info.config.hnsw_config.m == 24
    assert isinstance(info.config.params.vectors, dict) and set(info.config.params.vectors) == {"v", "w"}
    aliases = {a.alias_name: a.collection_name for a in client(chain).get_aliases().aliases}
    assert aliases[chain.prefix + "live"] == chain.prefix + "docs"


def test_downgrade_runs_downgrade_functions_back_to_a_revision(chain: Chain) -> None:
    _kill_chain(chain)
    chain.write("4", "3", 'op.rename_via_alias(P + "live", P + "docs")', "pass")
    up = chain.run("upgrade", "head")
    assert up.returncode == 0, up.stdout + up.stderr
    plan = chain.run("downgrade", "1", "--plan-json")
    assert plan.returncode == 0
    import json
    calls: list[dict[str, Any]] = [c for r in json.loads(plan.stdout) for s in r["steps"] for c in s["calls"]]
    assert {"method": "PATCH", "path": f"/collections/{chain.prefix}docs",
            "body": {"hnsw_config": {"m": 16, "ef_construct": 100}}} in calls
    assert chain.status()["revision"] == "4"  # --plan-json changed nothing
    down = chain.run("downgrade", "2")
    assert down.returncode == 0, down.stdout + down.stderr
    st = chain.status()
    assert st["revision"] == "2" and st["pending"] == ["3", "4"]
    info = client(chain).get_collection(chain.prefix + "docs")
    assert info.config.hnsw_config.m == 16 and not info.config.quantization_config

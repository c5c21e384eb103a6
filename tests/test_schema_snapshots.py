"""Snapshots of ``switchyard schema`` on real processes: ``--snapshot`` records one per
touched collection with the revision, ``status`` lists it with its age, ``restore REV``
recovers the collection from it and records the revision before, ``prune-snapshots`` removes
it from Qdrant and the records."""

from __future__ import annotations

import os
import sys

from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))
from schema_fixtures import Chain, chain, stack  # noqa: E402,F401


def test_snapshot_on_request_restore_and_prune(chain: Chain) -> None:
    name = chain.prefix + "docs"
    chain.write("1", None, f'op.create_collection({name!r}, {{"v": {{"size": 4, "distance": "Dot"}}}})',
                f'op.drop_collection({name!r})')
    chain.write("2", "1", f'op.create_index({name!r}, "tag", "keyword")', f'op.drop_index({name!r}, "tag")')
    assert chain.run("upgrade", "1").returncode == 0
    direct = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    direct.upsert(name, [models.PointStruct(id=i, vector={"v": [float(i), 1, 0, 0]}, payload={"tag": f"t{i}"})
                         for i in range(20)], wait=True)
    up = chain.run("upgrade", "head", "--snapshot")
    assert up.returncode == 0, up.stdout + up.stderr
    st = chain.status()
    (snap,) = st["collections"][0]["snapshots"]
    assert snap["revision"] == "2" and snap["age"] >= 0
    assert snap["name"] in {s.name for s in direct.list_snapshots(name)}
    assert f"snapshot {snap['name']} (revision 2," in chain.run("status").stdout

    direct.delete(name, models.PointIdsList(points=list(range(10))), wait=True)  # data lost by hand
    assert direct.count(name).count == 10
    restored = chain.run("restore", "2")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert direct.count(name).count == 20
    assert "tag" not in (direct.get_collection(name).payload_schema or {})  # the state before 2
    st = chain.status()
    assert st["revision"] == "1" and st["pending"] == ["2"] and st["collections"][0]["drift"] == []

    pruned = chain.run("prune-snapshots", "--keep", "0")
    assert pruned.returncode == 0 and "removed 1 snapshots" in pruned.stdout
    assert direct.list_snapshots(name) == []
    assert chain.status()["collections"][0]["snapshots"] == []
